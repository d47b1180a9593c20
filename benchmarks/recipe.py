"""A recipe config set up on a corpus for a benchmark: the pieces a training run builds before its
first step (tokenizer, model, batch plan), with nothing written to disk."""

from __future__ import annotations

import dataclasses
import importlib
import pathlib
import tempfile
from typing import Any, Callable, Sequence

import ml_collections
import numpy as np

from corpora import batching, sources
from corpora import tokenizer as tokenizers
from corpora.batching import BatchPlan
from experiments import registry
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
