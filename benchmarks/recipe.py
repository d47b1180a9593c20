"""A recipe config set up on a corpus for a benchmark: the pieces a training run builds before its
first step (tokenizer, model, batch plan), with nothing written to disk."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import pathlib
import statistics
import tempfile
import time
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np

from corpora import batching, sources
from corpora import tokenizer as tokenizers
from corpora.batching import BatchPlan
from experiments import registry, run
from training import config as config_lib
from training import input_pipeline


@dataclasses.dataclass(frozen=True)
class Recipe:
    config: ml_collections.ConfigDict
    train_split: sources.Source
    tokenizer: tokenizers.Tokenizer
    model: Any
    plan: BatchPlan


def load_recipe(name: str, corpus: pathlib.Path, overrides: Sequence[tuple[str, Any]] = ()) -> Recipe:
    """`configs/NAME.py` reading `corpus`, with the `overrides` (dotted field, value) applied: its
    tokenizer (the `quant.init_from` model's when it names one, as training inherits it), model and
    training batch plan (the config's own batch settings)."""
    config = importlib.import_module(f"configs.{name}").get_config()
    config.data.path = str(corpus)
    for field, value in overrides:
        registry.set_field(config, field, value)
    train_split = input_pipeline.source(config.data, config.data.train_split)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = input_pipeline.make_tokenizer(config.data, pathlib.Path(scratch), train_split,
                                                  config.quant.init_from or None)
    model = config_lib.model_from_config(config.model, tokenizer.vocab_size)
    plan = input_pipeline.train_plan(config, train_split, tokenizer, input_pipeline.min_samples_for(config.model.name))
    return Recipe(config, train_split, tokenizer, model, plan)


def most_common_batch(recipe: Recipe) -> tuple[Callable[[], dict[str, np.ndarray]], batching.Bucket]:
    """(a function loading the first training batch of the plan's most common bucket from the corpus,
    that bucket): one shape on which every part of a step is timed."""
    planned = batching.PlannedBatches(recipe.plan, 0, recipe.plan.batches_per_epoch)
    buckets = [planned[k].bucket for k in range(len(planned))]
    bucket = int(np.bincount(buckets).argmax())
    loader = batching.BatchLoader(recipe.train_split, recipe.tokenizer, recipe.plan)
    first = planned[buckets.index(bucket)]
    return lambda: loader(first).batch, recipe.plan.buckets[bucket]


def timed_rounds(steps: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Wall seconds of each step, `repeats` rounds of one call of each in turn (after one warm-up round)."""
    seconds = {label: [] for label in steps}
    for round_index in range(repeats + 1):
        for label, step in steps.items():
            start = time.perf_counter()
            jax.block_until_ready(step())
            if round_index:
                seconds[label].append(time.perf_counter() - start)
    return seconds


def print_ratios(seconds: dict[str, list[float]], baseline: str, header: str, short: str) -> None:
    """One row per step of `timed_rounds`' `seconds`: its median step time and, round by round, its
    ratio to the `baseline` step's time (median and range over the rounds); `short` names the
    baseline in the column header."""
    print(f"{header:<24} {'step ms':>8} {'/ ' + short + ' median':>13} {'range':>15}")
    for label, times in seconds.items():
        ratios = [t / b for t, b in zip(times, seconds[baseline])]
        print(f"{label:<24} {1000 * statistics.median(times):>8.0f} {statistics.median(ratios):>13.3f} "
              f"{f'[{min(ratios):.3f}, {max(ratios):.3f}]':>15}", flush=True)


def parse_step_ratio_args(doc: str, default_config: str) -> tuple[argparse.Namespace, list[tuple[str, Any]]]:
    """The command line of a benchmark that times variants of one recipe's train step in turn
    (`--corpus`, `--config`, `--repeats`, `--set FIELD=VALUE ...`; `doc`: its module docstring):
    (arguments, the parsed `--set` overrides)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--corpus", type=pathlib.Path, required=True, help="a synth-en (manifest) folder")
    parser.add_argument("--config", default=default_config, help="a name under configs/")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="config override")
    args = parser.parse_args()
    return args, [run.parse_override(text) for text in args.set]
