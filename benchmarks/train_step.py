"""Training-step efficiency of the recipes: audio-seconds per wall-second, the flop count of
loss+grad over the step time as a share of a float32 matmul's rate measured in the same run, and
where the time goes.

    python benchmarks/train_step.py --corpus data/synth-en-large [--configs rnnt_synth_cpu,...]
        [--steps 8] [--set FIELD=VALUE ...]

For each config (default: the compact `*_synth_cpu` and the `*_synth_large` recipes), on batches
planned from `--corpus` with the config's own batch settings and random weights:

  step      median wall time of the real pmapped train step (`train.make_p_train_step`) on a batch
            of the plan's most common shape
  audio-s/s real (unpadded) audio per batch / step
  GFLOP     XLA's cost analysis of value_and_grad of the float loss (it counts a loop's body
            once, so it leaves out all but one step of every LSTM recurrence)
  % peak    (GFLOP / step) / the float32 2048^3 matmul GFLOP/s measured first
  mm GFLOP  the matmuls and convolutions of the same function counted on its jaxpr with every
            scan body once per iteration (benchmarks/flops.py), and its % peak: the count that
            the recurrent models' rows are judged by
  breakdown median ms of each part alone, jitted: front end (log-mel + normalisation),
            encoder forward+backward, prediction + joint + loss forward+backward (from the encoder
            output), optimizer update, host (loading one batch in-process and copying it to the
            device)

`--set` overrides a config field (e.g. `model.subsampling_channels=128`): of every config, or, when
some names in `--configs` end in "+", of those only, to time a variant against the recipe in the
same run (`--configs conformer_synth_large,conformer_synth_large+`; a "+" row has the overrides,
and its step time is printed as a ratio to the plain row's).

A "?" after the second % peak marks a row with while loops of unknown trip count (counted once).
Run it on an otherwise idle machine: every figure is a time.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time
from typing import Any, Callable, Sequence

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import train  # noqa: E402
from corpora import batching  # noqa: E402
from benchmarks.flops import matmul_flops, xla_flops  # noqa: E402
from benchmarks.recipe import load_recipe, most_common_batch  # noqa: E402
from experiments import run  # noqa: E402
from training import config as config_lib  # noqa: E402
from training import input_pipeline  # noqa: E402
from training import state as state_lib  # noqa: E402

DEFAULT_CONFIGS = ("rnnt_synth_cpu", "conformer_synth_cpu", "rnnt_synth_large", "conformer_synth_large")


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall seconds of `fn()` (blocked until its result is ready) after `warmup` calls."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    return 2 * n ** 3 / median_seconds(lambda: matmul(a, b), repeats) / 1e9


def real_train_step(config: Any, model: Any, params: Any, batch: dict[str, np.ndarray]
                    ) -> Callable[[], Any]:
    """A function running one step of `train.make_p_train_step` (the config's method, optimizer and
    pmap) on `batch` and returning its outputs; each call moves the training state on."""
    method = config_lib.method_for(config.quant, model, config.features.num_mel_bins)
    optimizer = state_lib.make_optimizer(config)
    step_fn = train.make_p_train_step(config, method.training_model, method.quantizer, optimizer)
    state = state_lib.replicate(state_lib.create(params, method.quantizer.init(params), optimizer, config.seed))
    device_batch = batching.split_for_devices(batch, jax.local_device_count())

    def one_step():
        nonlocal state
        state, step_metrics = step_fn(state, device_batch)
        return state, step_metrics

    return one_step


def measure(name: str, corpus: pathlib.Path, steps: int, overrides: Sequence[tuple[str, Any]] = ()
            ) -> dict[str, float]:
    recipe = load_recipe(name, corpus, overrides)
    config, model = recipe.config, recipe.model
    load_batch, bucket = most_common_batch(recipe)
    batch = load_batch()
    audio_s = float(batch["audio_lengths"].sum()) / batching.SAMPLE_RATE_HZ
    params = state_lib.random_params(model, config)
    key = jax.random.key(0)

    feats_fn = jax.jit(lambda b: input_pipeline.features(b, config.features, key))
    feats, lengths = feats_fn(batch)

    def loss(p, b):
        f, n = input_pipeline.features(b, config.features, key)
        nll = model.apply({"params": p}, f, n, b["labels"], b["label_lengths"], train=True,
                          rngs={"dropout": key})
        return jnp.sum(nll * b["mask"]) / jnp.maximum(jnp.sum(b["mask"]), 1.0)

    flops = xla_flops(jax.value_and_grad(loss), params, batch)
    loop_aware = matmul_flops(jax.value_and_grad(loss), params, batch)

    encode = lambda p: model.apply({"params": p}, feats, lengths, train=True, rngs={"dropout": key},
                                   method=lambda m, f, n, train: m.encoder(f, n, train=train))
    enc_out, enc_lengths = encode(params)
    encoder_fn = jax.jit(lambda p: jax.vjp(lambda q: encode(q)[0], p)[1](jnp.ones_like(enc_out)))
    decoder_fn = jax.jit(jax.grad(lambda p, e: model.apply(
        {"params": p}, e, enc_lengths, batch["labels"], batch["label_lengths"],
        method=model.loss_from_encoder).sum(), argnums=(0, 1)))
    method = config_lib.method_for(config.quant, model, config.features.num_mel_bins)
    optimizer = state_lib.make_optimizer(config)
    trainable = (params, method.quantizer.init(params))
    opt_state = optimizer.init(trainable)
    optimizer_fn = jax.jit(lambda g, s, t: optimizer.update(g, s, t))
    host_fn = lambda: jax.device_put(load_batch())

    step_s = median_seconds(real_train_step(config, model, params, batch), steps)
    parts = {"front end": median_seconds(lambda: feats_fn(batch), steps),
             "encoder": median_seconds(lambda: encoder_fn(params), steps),
             "pred+joint+loss": median_seconds(lambda: decoder_fn(params, enc_out), steps),
             "optimizer": median_seconds(lambda: optimizer_fn(trainable, opt_state, trainable), steps),
             "host": median_seconds(host_fn, steps)}
    return {"step_s": step_s, "audio_s": audio_s, "gflop": flops / 1e9, "shape": bucket,
            "mm_gflop": loop_aware.flops / 1e9, "uncounted_loops": loop_aware.uncounted_loops,
            "parameters": sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params)), **parts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=pathlib.Path, required=True, help="a synth-en (manifest) folder")
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS), help="names under configs/")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="config override of every config; a config named NAME+ runs with them, "
                             "NAME without (default: all configs with them)")
    args = parser.parse_args()
    overrides = [run.parse_override(text) for text in args.set]
    if overrides:
        print("overrides: " + ", ".join(f"{field}={value!r}" for field, value in overrides))
    peak = matmul_gflops()
    print(f"float32 2048^3 matmul: {peak:.1f} GFLOP/s on {jax.devices()[0].platform} "
          f"({jax.device_count()} device(s))")
    header = (f"{'config':<22} {'params':>10} {'batch RxSxU':>16} {'step ms':>8} {'audio-s/s':>9} {'GFLOP':>7} "
              f"{'% peak':>7} {'mm GFLOP':>8} {'% peak':>7} | {'front':>6} {'encoder':>8} {'pred+jnt':>8} {'optim':>6} {'host':>6}")
    print(header)
    step_s = {}
    for entry in args.configs.split(","):
        name, with_overrides = entry.rstrip("+"), entry.endswith("+") or "+" not in args.configs
        r = measure(name, args.corpus, args.steps, overrides if with_overrides else ())
        shape = r["shape"]
        label = name + ("+" if with_overrides and overrides else "")
        print(f"{label:<22} {r['parameters']:>10,} {shape.rows:>4}x{shape.max_samples:>6}x{shape.max_labels:<4} "
              f"{1000 * r['step_s']:>8.0f} {r['audio_s'] / r['step_s']:>9.0f} {r['gflop']:>7.2f} "
              f"{100 * r['gflop'] / r['step_s'] / peak:>6.1f}% {r['mm_gflop']:>8.2f} "
              f"{100 * r['mm_gflop'] / r['step_s'] / peak:>6.1f}%{'?' if r['uncounted_loops'] else ' '}| "
              + " ".join(f"{1000 * r[p]:>{w}.0f}" for p, w in (("front end", 6), ("encoder", 8),
                                                               ("pred+joint+loss", 8), ("optimizer", 6),
                                                               ("host", 6))), flush=True)
        step_s[label] = r["step_s"]
    for label in step_s:
        if label.endswith("+") and label[:-1] in step_s:
            print(f"{label} step / {label[:-1]} step: {step_s[label] / step_s[label[:-1]]:.3f}")


if __name__ == "__main__":
    main()
