"""Training metrics: JSON-lines and TensorBoard writers, and the fraction of weights that changed centroid."""

from __future__ import annotations

import json
import logging
import math
import os
import pathlib
from typing import Any, Protocol

import numpy as np

from gq_jax.artifact import is_quantized
from gq_jax.config import leaves_with_paths

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class Writer(Protocol):
    def write(self, step: int, metrics: dict[str, Any]) -> None: ...


class JsonlWriter:
    """Appends one JSON object per call to `workdir/metrics.jsonl` (flushed at once, so a killed
    run loses nothing already written). Non-finite floats are written as null."""

    def __init__(self, workdir: str | pathlib.Path):
        self.path = pathlib.Path(workdir) / METRICS_FILE

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")


class TensorBoardWriter:
    """Scalar metrics as TensorBoard events in `workdir/tensorboard` (`tf.summary`)."""

    def __init__(self, workdir: str | pathlib.Path):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorboard  # noqa: F401  (tf.summary needs it; ImportError when missing)
        import tensorflow as tf  # the `librispeech` extra installs tensorflow-cpu

        self._tf = tf
        self._writer = tf.summary.create_file_writer(str(pathlib.Path(workdir) / TENSORBOARD_DIR))

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        with self._writer.as_default(step=step):
            for name, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tf.summary.scalar(name, value)
        self._writer.flush()


def writers(workdir: str | pathlib.Path, tensorboard: bool) -> list[Writer]:
    """The JSON-lines writer, plus TensorBoard when asked for and TensorFlow and TensorBoard import."""
    chosen: list[Writer] = [JsonlWriter(workdir)]
    if tensorboard:
        try:
            chosen.append(TensorBoardWriter(workdir))
        except ImportError:
            logging.warning("config.tensorboard: TensorFlow or TensorBoard is not installed; "
                            "metrics go to %s only", METRICS_FILE)
    return chosen


def drop_after(workdir: str | pathlib.Path, step: int) -> None:
    """Removes records of steps after `step` (logged after the checkpoint a run resumes from)."""
    path = pathlib.Path(workdir) / METRICS_FILE
    if path.exists():
        kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in kept))


def read(workdir: str | pathlib.Path) -> list[dict[str, Any]]:
    path = pathlib.Path(workdir) / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assignment_indices(hardened: Any) -> dict[str, np.ndarray]:
    """{leaf path: centroid index per weight} of every QuantizedArray leaf of a hardened tree."""
    return {path: np.asarray(leaf.indices) for path, leaf in leaves_with_paths(hardened, is_leaf=is_quantized)
            if is_quantized(leaf)}


def changed_fraction(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> float | None:
    """Fraction of quantized weights whose centroid index differs between two assignments
    (None when nothing is quantized or there is no earlier assignment)."""
    common = [p for p in after if p in before]
    total = sum(after[p].size for p in common)
    if not total:
        return None
    return sum(int(np.count_nonzero(before[p] != after[p])) for p in common) / total
