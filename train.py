"""Train a transducer, in float or quantization-aware (GQ and baselines), data parallel with pmap.

    python train.py --config configs/demo.py --workdir runs/demo-float
    python train.py --config configs/demo.py --workdir runs/demo-gq4 \
        --config.quant.method=gq --config.quant.init_from=runs/demo-float

One step, on every local device (`jax.pmap`, gradients averaged with `lax.pmean`), for the
`gq_jax.Quantizer` that `config.quant.method` names (training/config.py METHODS; train.py never
asks which it is):

    Ŵ = quantizer.apply(W, state, step)          # GQ: quantize_params at alpha(step); float: W
    loss = mean_b RNN-T NLL(model(Ŵ), batch_b)   # Qwix: the wrapped model fake-quantizes
    (W, state) <- optax.partition update   (weights: AdamW; quantizer state: its own optimizer)
    state, W = quantizer.update(state, W, step + 1)   # GQ: sort+clip centroids; every F steps W <- hard(W)

Rerunning the same command resumes from the latest checkpoint in the workdir (parameters,
centroids, optimizer state, step, data position, RNG) and ends with exactly the parameters of an
uninterrupted run; resuming with another batch plan (corpus, batch seconds, shapes, seed,
process count) is an error naming the field. Metrics go to `workdir/metrics.jsonl`, including
`data_wait_fraction` (the share of wall time the loop waited for the input pipeline) and
`skipped_utterances` (bad audio skipped so far, each also named in a log line), `wall_s` (wall
seconds of every process of the run so far, work lost to a crash included) and `resumes`, and
the gradient at the logged step (`gradient_metrics`): `grad_norm/<module>` per top-level module
(encoder, predictor, joint, ...), `grad_norm/quantizer` (GQ's centroids), `grad_norm` (all, before
clipping, which sees only the weights' part) and `grad_share`, the share of latent weights
receiving >= 10 % of their upstream gradient.

Input: batches are planned from durations and transcripts alone and decoded by grain worker
processes ahead of the step (`corpora.batching`); the number of batch shapes that compile is
printed at the start, and the step is compiled for every one of them before the first step, as
many at a time as the machine has cores (`compile_train_steps`; one process only).

Multi-host (several machines or processes): call `jax.distributed.initialize()` first (the
`--distributed` flag does, reading the coordinator address, process count and id from the
environment or from `--coordinator_address/--num_processes/--process_id`). Every process plans
the same global batches and decodes only its own rows of each, feeding them to its local devices;
the pmap spans all devices of all processes, so the result equals one process with that global
batch.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import math
import os
import pathlib
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

import gq_jax
from gq_jax.config import leaves_with_paths
from corpora import batching
from corpora.batching import Batch, split_for_devices
from training import checkpoints, evaluate, input_pipeline, metrics, pictures, published
from training import config as config_lib
from training import state as state_lib
from training.state import TrainState

def loss_fn(trainable: tuple[Any, Any], batch: Batch, key: jax.Array, step: jax.Array, *, model,
            quantizer: gq_jax.Quantizer, features_config: ml_collections.ConfigDict) -> jax.Array:
    """Mean transducer NLL over the real rows (`mask`) of a device's batch, with quantized weights."""
    params, quant = trainable
    return model_loss(quantizer.apply(params, quant, step), batch, key, model=model,
                      features_config=features_config)


def model_loss(quantized: Any, batch: Batch, key: jax.Array, *, model,
               features_config: ml_collections.ConfigDict, feature_stats: Any = None) -> jax.Array:
    """`loss_fn` after the quantizer: the loss of the weights Ŵ the network computes with
    (`feature_stats`: corpus normalisation statistics, None: per utterance)."""
    feature_key, dropout_key = jax.random.split(key)
    feats, lengths = input_pipeline.features(batch, features_config, feature_key, feature_stats)
    nll = model.apply({"params": quantized}, feats, lengths, batch["labels"], batch["label_lengths"],
                      train=True, rngs={"dropout": dropout_key})
    return jnp.sum(nll * batch["mask"]) / jnp.maximum(jnp.sum(batch["mask"]), 1.0)


def gradient_metrics(grads: tuple[Any, Any], upstream: Any, latent: Any) -> dict[str, jax.Array]:
    """Per-group gradient norms and the share of latent weights that receive gradient (in the step).

    Args:
      grads: (∂L/∂W, ∂L/∂state): the gradient of the latent weights and of the quantizer's state.
      upstream: ∂L/∂Ŵ, the gradient of the weights the network computes with (`params`' structure).
      latent: `params`' structure of bools: the leaves the quantizer changes.
    Returns:
      grad_norm/<top-level module> = ‖∂L/∂W‖ over that module's leaves, grad_norm/quantizer =
      ‖∂L/∂state‖, grad_norm = the global norm of both (before clipping; `optim.grad_clip_norm`
      clips the weights' part alone, the centroids have their own optimizer), and
      grad_share = the share of latent weights with |∂L/∂W| >= 0.1 |∂L/∂Ŵ| (1 when the quantizer
      changes no leaf: float training, or Qwix, which fake-quantizes inside the model).
    """
    param_grads, state_grads = grads
    squares: dict[str, jax.Array] = {}
    for path, g in leaves_with_paths(param_grads):
        group = f"grad_norm/{path.split('/')[0]}"
        squares[group] = squares.get(group, 0.0) + jnp.sum(jnp.square(g.astype(jnp.float32)))
    squares["grad_norm/quantizer"] = sum(jnp.sum(jnp.square(g.astype(jnp.float32)))
                                         for g in jax.tree_util.tree_leaves(state_grads))
    out = {name: jnp.sqrt(total) for name, total in squares.items()}
    out["grad_norm"] = jnp.sqrt(sum(squares.values()))
    pairs = [(jnp.abs(g.astype(jnp.float32)), jnp.abs(u.astype(jnp.float32)))
             for g, u, changed in zip(jax.tree_util.tree_leaves(param_grads), jax.tree_util.tree_leaves(upstream),
                                      jax.tree_util.tree_leaves(latent)) if changed]
    receiving = sum(jnp.sum(g >= 0.1 * u) for g, u in pairs)
    out["grad_share"] = (receiving / sum(g.size for g, _ in pairs)).astype(jnp.float32) if pairs else jnp.float32(1.0)
    return out


def train_step(state: TrainState, batch: Batch, *, loss: Callable, quantizer: gq_jax.Quantizer,
               optimizer: optax.GradientTransformation, alpha_fn: Callable,
               learning_rate_fn: Callable) -> tuple[TrainState, dict[str, jax.Array]]:
    """One update on every device (inside `pmap` over axis "batch"), then `quantizer.update`.

    `loss` is `model_loss` of the quantized weights Ŵ = quantizer.apply(W, state, step); the step
    takes ∂L/∂Ŵ, averages it over devices and pulls it back through the quantizer (the same
    gradient as differentiating `loss_fn`, and ∂L/∂Ŵ is there for `gradient_metrics`).
    """
    key = jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step),
                             jax.lax.axis_index("batch"))
    trainable = (state.params, state.quant)
    apply = lambda params, quant: quantizer.apply(params, quant, state.step)
    # Leaves the quantizer passes through come back as the same (traced) objects: a static fact.
    latent = jax.tree_util.tree_map(lambda q, p: q is not p, apply(*trainable), state.params)
    quantized, pullback = jax.vjp(apply, *trainable)
    value, upstream = jax.value_and_grad(loss)(quantized, batch, key)
    upstream = jax.lax.pmean(upstream, "batch")
    grads = pullback(upstream)
    updates, opt_state = optimizer.update(grads, state.opt_state, trainable)
    params, quant = optax.apply_updates(trainable, updates)
    quant, params = quantizer.update(quant, params, state.step + 1)
    metrics = {"loss": jax.lax.pmean(value, "batch"), "alpha": jnp.asarray(alpha_fn(state.step), jnp.float32),
               "learning_rate": learning_rate_fn(state.step), **gradient_metrics(grads, upstream, latent)}
    return state._replace(step=state.step + 1, params=params, quant=quant, opt_state=opt_state), metrics


def make_p_train_step(config: ml_collections.ConfigDict, model, quantizer: gq_jax.Quantizer,
                      optimizer: optax.GradientTransformation, feature_stats: Any = None) -> Callable:
    """`train_step` of `config` pmapped over the local devices (axis "batch"; donates the state);
    `model` is the module the loss applies (`Method.training_model`), `feature_stats` the corpus
    normalisation statistics (`input_pipeline.make_feature_stats`; None: per utterance)."""
    loss = functools.partial(model_loss, model=model, features_config=config.features,
                             feature_stats=feature_stats)
    step = functools.partial(
        train_step, loss=loss, quantizer=quantizer, optimizer=optimizer,
        alpha_fn=config_lib.alpha_schedule(config.quant.alpha),
        learning_rate_fn=state_lib.learning_rate_schedule(config.optim, config.num_train_steps))
    return jax.pmap(step, axis_name="batch", donate_argnums=(0,))


def batch_signature(batch: Batch) -> tuple:
    """The shapes of a device-split batch ({name: (shape)} as sorted pairs): what a step compiles for."""
    return tuple(sorted((name, tuple(np.shape(value))) for name, value in batch.items()))


def compile_train_steps(p_train_step: Callable, state: TrainState, plan: batching.BatchPlan,
                        threads: int) -> dict[tuple, Callable]:
    """The train step compiled for every used bucket of `plan` before the first step, `threads` shapes at
    a time: {`batch_signature`: compiled step}. XLA compiles one program on one core and releases
    the GIL, so on a 2-core machine two threads compile the buckets in a little over half the time
    of the first-use compiles they replace. `state` is the replicated state (lowered, not run); one
    process only."""
    def compile_bucket(bucket: batching.Bucket) -> tuple[tuple, Callable]:
        batch = split_for_devices(batching.pad_batch([], bucket, bucket.rows), jax.local_device_count())
        return batch_signature(batch), p_train_step.lower(state, batch).compile()

    # The buckets that fill a batch (with drop_remainder a bucket may hold fewer utterances than a
    # batch's rows); every epoch has the same ones.
    used = [plan.buckets[i] for i in sorted({int(plan.bucket_of[batch[0]]) for batch in plan.epoch(0)})]
    compiled = {}
    with (concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool,
          tqdm.tqdm(total=len(used), desc=f"compile, {threads} at a time", dynamic_ncols=True,
                    disable=jax.process_index() != 0) as bar):
        for future in concurrent.futures.as_completed([pool.submit(compile_bucket, b) for b in used]):
            signature, step = future.result()
            compiled[signature] = step
            bar.update(1)
    return compiled


def initial_params(model, config: ml_collections.ConfigDict) -> Any:
    """Random parameters, or those `config.quant.init_from` names: the weights of a published model
    folder (dequantized, float32) or the latest checkpoint of a run's workdir. A top-level module
    that config.model adds to the parent's (a CTC head, the pruned loss's `simple_am`/`simple_lm`)
    starts from random weights, and is printed; any other difference is a ValueError."""
    random = state_lib.random_params(model, config)
    init_from = config.quant.init_from
    if not init_from:
        return random
    params = (published.load(init_from).params if published.is_published(init_from)
              else checkpoints.restore_params(init_from))
    added = sorted(set(random) - set(params))
    expected = jax.tree_util.tree_map(lambda x: tuple(np.shape(x)), {k: v for k, v in random.items() if k in params})
    found = jax.tree_util.tree_map(lambda x: tuple(np.shape(x)), dict(params))
    if expected != found:
        raise ValueError(f"init_from={config.quant.init_from!r} holds parameters of another model "
                         f"shape than config.model: {found} vs {expected}")
    if added:
        print(f"init_from={init_from}: modules {', '.join(added)} are not in it and start from random "
              "weights", flush=True)
    return {**jax.tree_util.tree_map(jnp.asarray, dict(params)), **{k: random[k] for k in added}}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    """Trains `config` in `workdir` (resuming from its latest checkpoint) and returns the final state."""
    started = time.perf_counter()
    config_lib.check_fields(config)
    workdir_path = pathlib.Path(workdir)
    checkpoints.check_compatible(config, workdir_path)
    if config.quant.init_from and not published.is_published(config.quant.init_from):
        init_dir = pathlib.Path(config.quant.init_from) / "checkpoints"
        if not init_dir.exists():
            raise FileNotFoundError(f"config.quant.init_from={config.quant.init_from!r}: no checkpoints "
                                    f"in {init_dir} and no published model; train the float model there first")
    if not config.data.max_batch_seconds and config.batch_size % jax.device_count():
        raise ValueError(f"config.batch_size={config.batch_size} is not divisible by the "
                         f"{jax.device_count()} devices of all processes")

    is_chief = jax.process_index() == 0
    train_source = input_pipeline.source(config.data, config.data.train_split,
                                         config.data.max_train_examples)
    dev_source = input_pipeline.source(config.data, config.data.dev_split,
                                       config.data.max_dev_examples)
    workdir_path.mkdir(parents=True, exist_ok=True)
    tokenizer = input_pipeline.make_tokenizer(config.data, workdir_path, train_source,
                                              config.quant.init_from or None)
    feature_stats = input_pipeline.make_feature_stats(config, workdir_path, train_source)
    model = config_lib.model_from_config(config.model, tokenizer.vocab_size)
    method = config_lib.method_for(config.quant, model, config.features.num_mel_bins)
    quantizer = method.quantizer
    plan = input_pipeline.train_plan(config, train_source, tokenizer,
                                     input_pipeline.min_samples_for(config.model.name))
    if is_chief:
        print(f"input pipeline: {len(plan.buckets)} batch shape(s) compile (rows x samples x "
              f"labels): {plan.shapes()}; {plan.batches_per_epoch} batches per epoch of "
              f"{len(train_source)} utterances", flush=True)

    mngr = checkpoints.manager(workdir_path, keep=config.keep_checkpoints)
    resuming = mngr.latest_step() is not None
    wall_before, resumes = metrics.run_clock(workdir_path) if resuming else (0.0, 0)
    resumes += resuming
    # When resuming, the checkpoint overwrites everything: random params only give the structure.
    params = state_lib.random_params(model, config) if resuming else initial_params(model, config)
    optimizer = state_lib.make_optimizer(config)
    state = state_lib.create(params, quantizer.init(params), optimizer, config.seed)
    if resuming:
        state, data_state = checkpoints.restore(mngr, state)
        if batching.check_resumable(data_state, plan) != int(state.step):
            raise ValueError(f"checkpoint {int(state.step)} in {mngr.directory} records data "
                             f"position {data_state['next_batch']}, not its step")
        if jax.process_index() == 0:
            metrics.drop_after(workdir_path, int(state.step))
        print(f"resumed from step {int(state.step)} of {mngr.directory}", flush=True)
    checkpoints.save_config(config, workdir_path)

    # The loss applies `method.training_model` (Qwix: the wrapped model); decoding uses `model`
    # with the exported (dequantized) weights.
    p_train_step = make_p_train_step(config, method.training_model, quantizer, optimizer, feature_stats)

    metric_writers = metrics.writers(workdir_path, config.tensorboard) if is_chief else []
    start_export = gq_jax.export(quantizer, state.params, state.quant)
    quantized = start_export.sizes.quantized_weights > 0
    if quantized and int(state.step) == 0 and is_chief:
        pictures.weight_histograms(state.params, start_export.hardened, workdir_path / "weights_start.png",
                                   "start of fine-tuning")
    previous_indices = metrics.assignment_indices(start_export.hardened)
    start_step = int(state.step)
    state = state_lib.replicate(state)
    # Several processes: pmap's lowering sees the global state, its calls the local one; those
    # compile each shape at first use.
    compiled_steps = (compile_train_steps(p_train_step, state, plan, os.cpu_count() or 1)
                      if start_step < config.num_train_steps and jax.process_count() == 1 else {})
    losses, skipped, waited, since = [], 0, 0.0, time.perf_counter()
    stream = input_pipeline.train_stream(config, plan, train_source, tokenizer, start_step)
    bar = tqdm.tqdm(total=config.num_train_steps, initial=start_step, disable=not is_chief,
                    desc="train", dynamic_ncols=True)
    try:
        for step in range(start_step + 1, config.num_train_steps + 1):
            before = time.perf_counter()
            loaded = next(stream)
            waited += time.perf_counter() - before
            for reason in loaded.skipped:
                logging.warning("skipping %s", reason)
            skipped += len(loaded.skipped)
            batch = split_for_devices(loaded.batch, jax.local_device_count())
            state, step_metrics = compiled_steps.get(batch_signature(batch), p_train_step)(state, batch)
            step_metrics = jax.device_get(state_lib.unreplicate(step_metrics))
            loss_value = float(step_metrics["loss"])
            if not math.isfinite(loss_value):
                mngr.wait_until_finished()  # the checkpoint named below is complete on disk
                last = mngr.latest_step()
                raise FloatingPointError(
                    f"loss is {loss_value} at step {step}; stopped. Last good checkpoint: "
                    + (f"step {last} in {mngr.directory}" if last is not None else "none"))
            losses.append(loss_value)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}")
            log_now = step % config.log_every_steps == 0 or step == config.num_train_steps
            eval_now = step % config.eval_every_steps == 0 or step == config.num_train_steps
            if is_chief and (log_now or eval_now):
                host = state_lib.unreplicate(state)
                exported = gq_jax.export(quantizer, host.params, host.quant)
                indices = metrics.assignment_indices(exported.hardened)
                record = {"loss": float(np.mean(losses)), "alpha": float(step_metrics["alpha"]),
                          "learning_rate": float(step_metrics["learning_rate"]),
                          "changed_centroid_fraction": metrics.changed_fraction(previous_indices, indices),
                          "data_wait_fraction": waited / (time.perf_counter() - since),
                          "skipped_utterances": skipped,
                          "wall_s": wall_before + time.perf_counter() - started, "resumes": resumes,
                          **{k: float(v) for k, v in step_metrics.items() if k.startswith("grad_")}}
                if eval_now:
                    refs, hyps = evaluate.transcribe(model, exported.params, dev_source, tokenizer,
                                                     config.features, config.eval_batch_size,
                                                     feature_stats=feature_stats)
                    record["dev_wer"] = evaluate.scores(refs, hyps)["wer"]
                for writer in metric_writers:
                    writer.write(step, record)
                bar.write(f"step {step}: " + ", ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
                previous_indices, losses, waited, since = indices, [], 0.0, time.perf_counter()
            if step % config.checkpoint_every_steps == 0 or step == config.num_train_steps:
                checkpoints.save(mngr, state_lib.unreplicate(state), plan.state(step))
    finally:
        stream.close()
        bar.close()
    mngr.wait_until_finished()
    final = state_lib.unreplicate(state)
    if quantized and is_chief:
        pictures.weight_histograms(final.params, gq_jax.export(quantizer, final.params, final.quant).hardened,
                                   workdir_path / "weights_end.png", f"end of fine-tuning (step {int(final.step)})")
    return final


FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command-line flags (defined only when run as a script, so the module imports cleanly)."""
    config_flags.DEFINE_config_file("config", None, "Training config file (configs/*.py).", lock_config=True)
    flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics and pictures.")
    flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-host runs).")
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (with --distributed).")
    flags.DEFINE_integer("num_processes", None, "Number of processes (with --distributed).")
    flags.DEFINE_integer("process_id", None, "This process's id (with --distributed).")
    flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
    if FLAGS.distributed:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU only; GPU/TPU unaffected
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    try:
        train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
        sys.exit(f"train.py: error: {e}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
