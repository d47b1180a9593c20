"""A trained run read back from its workdir: config, tokenizer, model, parameters and quantizer."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import ml_collections

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
    return Run(config, int(state.step), tokenizer, model, state.params, state.quant, quantizer)
