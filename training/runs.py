"""A trained run read back from its workdir: config, tokenizer, model, parameters and quantizer."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np

import gq_jax
from corpora import tokenizer as tokenizers
from training import checkpoints, input_pipeline
from training import config as config_lib
from training import state as state_lib


@dataclasses.dataclass
class Run:
    config: ml_collections.ConfigDict
    step: int
    tokenizer: Any
    model: Any  # the plain model: what decodes, with float or dequantized params
    params: Any  # latent float weights
    quant: Any  # the quantizer's state
    quantizer: gq_jax.Quantizer
    averaged_steps: tuple[int, ...] = ()  # checkpoints whose mean `params` is (`average`); () for one
    feature_stats: Any = None  # corpus normalisation statistics (data.feature_normalization="global")

    def export(self) -> gq_jax.Export:
        """(hardened tree, dequantized params, size report) of the run's weights: QuantizedArray
        leaves where its method quantizes (a float run: its params)."""
        return gq_jax.export(self.quantizer, self.params, self.quant)


def load(workdir: str | pathlib.Path, step: int | None = None) -> Run:
    """The run in `workdir` at checkpoint `step` (default: latest).

    Raises FileNotFoundError when the workdir has no config or no checkpoint (naming the steps
    present when `step` is missing).
    """
    workdir = pathlib.Path(workdir)
    config = checkpoints.load_config(workdir)
    mngr = checkpoints.manager(workdir, create=False)
    if mngr.latest_step() is None:
        raise FileNotFoundError(f"{workdir} has no checkpoint; train it first with train.py")
    tokenizer = tokenizers.load(workdir / input_pipeline.TOKENIZER_FILE)
    model = config_lib.model_from_config(config.model, tokenizer.vocab_size)
    quantizer = config_lib.method_for(config.quant, model, config.features.num_mel_bins).quantizer
    params = state_lib.random_params(model, config)  # the structure the checkpoint fills
    target = state_lib.create(params, quantizer.init(params), state_lib.make_optimizer(config), config.seed)
    state, _ = checkpoints.restore(mngr, target, step)
    return Run(config, int(state.step), tokenizer, model, state.params, state.quant, quantizer,
               feature_stats=input_pipeline.load_feature_stats(config.data, workdir))


def average(workdir: str | pathlib.Path, count: int, step: int | None = None) -> Run:
    """The run at checkpoint `step` (default: latest) with its latent weights replaced by the mean
    over its `count` latest checkpoints up to `step` (checkpoint averaging); the quantizer state is
    that of `step`. `count` = 1 is `load`.

    Raises ValueError when fewer than `count` checkpoints are kept up to `step` (naming them).
    """
    if count < 1:
        raise ValueError(f"average of {count} checkpoints; expected >= 1")
    latest = load(workdir, step)
    steps = [s for s in checkpoints.manager(workdir, create=False).all_steps() if s <= latest.step]
    if len(steps) < count:
        raise ValueError(f"{workdir} keeps {len(steps)} checkpoint(s) up to step {latest.step} "
                         f"({sorted(steps)}); cannot average {count}")
    chosen = sorted(steps)[-count:]
    trees = [latest.params if s == latest.step else load(workdir, s).params for s in chosen]
    mean = jax.tree_util.tree_map(lambda *leaves: np.mean(np.stack(leaves), axis=0), *trees)
    return dataclasses.replace(latest, params=mean, averaged_steps=tuple(chosen))
