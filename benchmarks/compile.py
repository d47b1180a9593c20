"""Start-up compile time of a training run: every batch shape's train step compiled one at a time
(what first use does) against `train.compile_train_steps` with several threads, in one run.

    python benchmarks/compile.py --corpus data/synth-en-large [--configs demo_gq,conformer_synth_large]
        [--threads 2]

For each config, on the batch plan of `--corpus` with the config's own batch settings (its buckets)
and random weights (or its `quant.init_from` model's), a fresh pmapped train step
(`train.make_p_train_step`) is compiled for every bucket with 1 thread, then another fresh one with
`--threads`: wall seconds of each and their ratio (JAX's persistent compilation cache is off).
Run it on an otherwise idle machine: both are times.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

import train  # noqa: E402
from benchmarks.recipe import load_recipe  # noqa: E402
from training import config as config_lib  # noqa: E402
from training import state as state_lib  # noqa: E402


def compile_seconds(name: str, corpus: pathlib.Path, thread_counts: tuple[int, ...]) -> tuple[int, list[float]]:
    """(number of shapes compiled, [wall seconds to compile every used bucket's step with each thread
    count])."""
    recipe = load_recipe(name, corpus)
    config, model, plan = recipe.config, recipe.model, recipe.plan
    method = config_lib.method_for(config.quant, model, config.features.num_mel_bins)
    params = train.initial_params(model, config)
    optimizer = state_lib.make_optimizer(config)
    state = state_lib.replicate(state_lib.create(params, method.quantizer.init(params), optimizer, config.seed))
    seconds, shapes = [], 0
    for threads in thread_counts:
        step = train.make_p_train_step(config, method.training_model, method.quantizer, optimizer)
        start = time.perf_counter()
        shapes = len(train.compile_train_steps(step, state, plan, threads))
        seconds.append(time.perf_counter() - start)
    return shapes, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=pathlib.Path, required=True, help="a synth-en (manifest) folder")
    parser.add_argument("--configs", default="demo_gq,conformer_synth_large", help="names under configs/")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    jax.config.update("jax_enable_compilation_cache", False)  # a persistent cache hit would time nothing
    print(f"{'config':<24} {'buckets':>7} {'1 thread s':>10} {f'{args.threads} threads s':>11} {'ratio':>6}")
    for name in args.configs.split(","):
        buckets, (serial, parallel) = compile_seconds(name, args.corpus, (1, args.threads))
        print(f"{name:<24} {buckets:>7} {serial:>10.1f} {parallel:>11.1f} {parallel / serial:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
