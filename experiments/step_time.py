"""Training step time of a config, and its ratio to float training of the same model, same machine.

    python -m experiments.step_time --scale recipe [--steps 5]

prints, per model of the scale, seconds per float and per GQ 4-bit training step on this machine
and the training hours every run of the scale would take here (the float run plus each fine-tune
at the GQ step time): how long a scale's results cost before starting them.

Both are measured back to back in one process with train.py's own `loss_fn` and `train_step`
(pmap over the local devices) on the same batches of the training split, after `warmup_steps`
untimed steps that compile: seconds per step = median over `steps` timed steps.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import tempfile
import time

import jax
import ml_collections

import train
from corpora import batching
from corpora.batching import split_for_devices
from experiments import registry
from training import config as config_lib
from training import input_pipeline
from training import state as state_lib


def seconds_per_step(config: ml_collections.ConfigDict, steps: int = 10, warmup_steps: int = 2) -> float:
    """Median wall seconds of one training step of `config` (random weights; shapes are what count)."""
    examples = input_pipeline.source(config.data, config.data.train_split,
                                     config.batch_size * (steps + warmup_steps))
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = input_pipeline.make_tokenizer(config.data, pathlib.Path(scratch), examples)
    model = config_lib.model_from_config(config.model, tokenizer.vocab_size)
    method = config_lib.method_for(config.quant, model, config.features.num_mel_bins)
    params = state_lib.random_params(model, config)
    optimizer = state_lib.make_optimizer(config)
    state = state_lib.replicate(state_lib.create(params, method.quantizer.init(params), optimizer, config.seed))
    step_fn = train.make_p_train_step(config, method.training_model, method.quantizer, optimizer)
    plan = batching.make_plan(examples.metadata, tokenizer, batch_size=config.batch_size, num_buckets=1,
                              seed=config.seed)
    batches = batching.stream(plan, batching.BatchLoader(examples, tokenizer, plan), 0,
                              warmup_steps + steps)
    timings = []
    for index, loaded in enumerate(batches):
        batch = split_for_devices(loaded.batch, jax.local_device_count())
        start = time.perf_counter()
        state, metrics = step_fn(state, batch)
        jax.block_until_ready((state, metrics))
        if index >= warmup_steps:
            timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def float_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The same config trained in float (the step-time baseline)."""
    baseline = ml_collections.ConfigDict(config.to_dict())
    baseline.quant.method = config_lib.FLOAT
    baseline.quant.init_from = ""
    return baseline


def step_time_ratio(config: ml_collections.ConfigDict, steps: int = 10, warmup_steps: int = 2) -> dict[str, float]:
    """{"step_time_s", "float_step_time_s", "step_time_ratio"}, measured back to back."""
    baseline = float_config(config)
    float_s = seconds_per_step(baseline, steps, warmup_steps)
    is_baseline = baseline.quant.method == config.quant.method  # a float run: measured once
    this_s = float_s if is_baseline else seconds_per_step(config, steps, warmup_steps)
    return {"step_time_s": this_s, "float_step_time_s": float_s, "step_time_ratio": this_s / float_s}


def training_hours(scale: registry.Scale, model: str, float_s: float, quantized_s: float) -> float:
    """Hours of training every run of `model` at `scale`: float steps at `float_s` s/step plus each
    fine-tune's budget at `quantized_s` s/step (post-training runs train nothing)."""
    float_steps = registry.build_config(registry.get(f"{model}_float"), scale, "").num_train_steps
    finetunes = sum(e.model == model and e.kind == "finetune" for e in registry.EXPERIMENTS.values())
    return (float_steps * float_s + finetunes * scale.finetune_steps[model] * quantized_s) / 3600


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="seconds per training step and hours per scale")
    parser.add_argument("--scale", default="recipe", choices=sorted(registry.SCALES))
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    args = parser.parse_args(argv)
    scale = registry.get_scale(args.scale)
    for model in registry.MODELS:
        float_s = seconds_per_step(registry.build_config(registry.get(f"{model}_float"), scale, ""), args.steps)
        gq_config = registry.build_config(registry.get(f"{model}_gq_4"), scale, "")
        gq_s = seconds_per_step(gq_config, args.steps)
        print(f"{scale.name} {model}: float {float_s:.3f} s/step, GQ 4-bit {gq_s:.3f} s/step; all its runs: "
              f"{training_hours(scale, model, float_s, gq_s):.1f} h of training on this machine", flush=True)


if __name__ == "__main__":
    main()
