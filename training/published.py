"""Published models: a trained run as a small folder that decodes without its workdir.

    results/models/<run>/
        model.gqpk      the weights as `gq_jax.save_packed` writes them: quantized leaves as b-bit
                        indices + codebook + scale, every other leaf as an array of `float_dtype`
        config.json     the training config (model, features, tokenizer and data settings)
        tokenizer.json  the tokenizer (`corpora.tokenizer.load` reads it)
        card.json       where it came from: source workdir, checkpoint step(s) averaged, wall
                        seconds, steps and resumes of the run, parameter count, packed size report
        feature_stats.json  the corpus normalisation statistics, for a run trained with
                        data.feature_normalization = "global" (the streaming decoder needs them)

`publish(config, tokenizer, hardened, folder, card, feature_stats=...)` writes it (`eval.py --publish`); `load(folder)`
reads it back as the model, tokenizer, config
and float32 parameters that `eval.py --model folder` scores. What is scored is exactly what is
stored: a float model published as float16 is scored with float16 weights (cast to float32).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np

import gq_jax
from corpora import tokenizer as tokenizers
from corpora.files import write_text_atomic
from training import checkpoints, input_pipeline
from training import config as config_lib
from training import state as state_lib

MODEL_FILE = "model.gqpk"
CARD_FILE = "card.json"
FILES = (MODEL_FILE, checkpoints.CONFIG_FILE, input_pipeline.TOKENIZER_FILE, CARD_FILE)


@dataclasses.dataclass
class Published:
    config: ml_collections.ConfigDict
    tokenizer: Any
    model: Any  # the plain model, decoding with `params`
    params: Any  # float32 parameters: the stored ones, dequantized and cast
    sizes: gq_jax.SizeReport
    card: dict[str, Any]
    feature_stats: Any = None  # corpus normalisation statistics (data.feature_normalization="global")


def cast_float_leaves(hardened: Any, float_dtype: str) -> Any:
    """`hardened` with every non-quantized leaf cast to `float_dtype` (quantized leaves kept)."""
    quantized = lambda leaf: isinstance(leaf, gq_jax.QuantizedArray)
    return jax.tree_util.tree_map(
        lambda leaf: leaf if quantized(leaf) else np.asarray(leaf).astype(float_dtype), hardened,
        is_leaf=quantized)


def publish(config: ml_collections.ConfigDict, tokenizer: Any, hardened: Any, folder: str | pathlib.Path,
            card: dict[str, Any], float_dtype: str = "float16", feature_stats: Any = None) -> gq_jax.SizeReport:
    """Writes the published folder of a model (see the module docstring); returns its size report.

    `hardened` is an export's hardened tree (QuantizedArray leaves where the method quantizes);
    `card` is stored with the parameter count and the packed size added; `feature_stats`, the run's
    normalisation statistics (None: per-utterance normalisation, no file).
    """
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stored = cast_float_leaves(hardened, float_dtype)
    file_bytes = gq_jax.save_packed(folder / MODEL_FILE, stored)
    sizes = gq_jax.size_report(stored)
    checkpoints.save_config(config, folder)
    tokenizer.save(folder / input_pipeline.TOKENIZER_FILE)
    if feature_stats is not None:
        input_pipeline.save_feature_stats(feature_stats, folder)
    parameters = sum(leaf.num_weights for leaf in sizes.leaves)
    card = {**card, "float_dtype": float_dtype, "parameters": parameters, "file_bytes": file_bytes,
            "sizes": str(sizes)}
    write_text_atomic(folder / CARD_FILE, json.dumps(card, indent=2) + "\n")
    return sizes


def is_published(folder: str | pathlib.Path) -> bool:
    """Whether `folder` looks like a published model (it holds the model file and the card)."""
    return all((pathlib.Path(folder) / name).exists() for name in (MODEL_FILE, CARD_FILE))


def load_card(folder: str | pathlib.Path) -> dict[str, Any]:
    """The card of the published model in `folder` (what trained it: source, checkpoint, steps, wall time)."""
    return json.loads((pathlib.Path(folder) / CARD_FILE).read_text())


def load(folder: str | pathlib.Path) -> Published:
    """The published model in `folder`.

    Raises FileNotFoundError naming the missing file when `folder` is not a published model, and
    ValueError when its weights do not fit the model its config describes.
    """
    folder = pathlib.Path(folder)
    missing = [name for name in FILES if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a published model: no {', '.join(missing)} "
                                f"(expected {', '.join(FILES)}; write one with eval.py --publish)")
    config = checkpoints.load_config(folder)
    tokenizer = tokenizers.load(folder / input_pipeline.TOKENIZER_FILE)
    model = config_lib.model_from_config(config.model, tokenizer.vocab_size)
    hardened = gq_jax.load_packed(folder / MODEL_FILE)
    params = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), gq_jax.dequantize(hardened))
    expected = jax.eval_shape(lambda: state_lib.random_params(model, config))
    shapes = lambda tree: jax.tree_util.tree_map(lambda x: tuple(np.shape(x)), tree)
    if shapes(params) != shapes(expected):
        raise ValueError(f"{folder / MODEL_FILE} holds weights of another shape than the model of "
                         f"{folder / checkpoints.CONFIG_FILE}")
    return Published(config, tokenizer, model, params, gq_jax.size_report(hardened),
                     load_card(folder),
                     input_pipeline.load_feature_stats(config.data, folder))
