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
    model: Any
    params: Any  # latent float weights
    quant: gq_jax.QuantState
    quantizer: gq_jax.Quantizer
    gq_config: gq_jax.GQConfig

    def hardened(self) -> Any:
        """The shippable tree: QuantizedArray leaves where the rules match (float run: params)."""
        return self.quantizer.harden(self.params, self.quant, self.gq_config)


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
    gq_config = config_lib.gq_config(config.quant)
    quantizer = config_lib.quantizer_for(config.quant.method, model, config.features.num_mel_bins)
    params = state_lib.random_params(model, config)  # the structure the checkpoint fills
    quant = quantizer.init(params, gq_config)
    target = state_lib.create(params, quant, state_lib.make_optimizer(config), config.seed)
    state, _ = checkpoints.restore(mngr, target, step)
    return Run(config, int(state.step), tokenizer, model, state.params, state.quant, quantizer, gq_config)
