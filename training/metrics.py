"""Training metrics: JSON-lines and TensorBoard writers, and the fraction of weights that changed centroid."""

from __future__ import annotations

import json
import logging
import math
import numbers
import pathlib
import time
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
    """Scalar metrics as TensorBoard events in `workdir/tensorboard` through tensorboardX (a core
    dependency; no TensorFlow): one event per call holding every numeric, non-boolean metric, written
    and flushed at once, like `JsonlWriter` (tensorboardX's synchronous `EventsWriter`; its
    `SummaryWriter` writes from a background thread, so a killed run, or a reader right after
    `write`, could miss the last events)."""

    def __init__(self, workdir: str | pathlib.Path):
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto import event_pb2, summary_pb2

        self._event, self._summary = event_pb2.Event, summary_pb2.Summary
        directory = pathlib.Path(workdir) / TENSORBOARD_DIR
        directory.mkdir(parents=True, exist_ok=True)
        self._writer = EventsWriter(str(directory / "events"))  # events.out.tfevents.<time>.<host>

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        values = [self._summary.Value(tag=name, simple_value=float(value)) for name, value in metrics.items()
                  if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))]
        self._writer.write_event(self._event(wall_time=time.time(), step=step,
                                             summary=self._summary(value=values)))
        self._writer.flush()


def writers(workdir: str | pathlib.Path, tensorboard: bool) -> list[Writer]:
    """The JSON-lines writer, plus TensorBoard when `tensorboard` is set (and tensorboardX imports)."""
    chosen: list[Writer] = [JsonlWriter(workdir)]
    if tensorboard:
        try:
            chosen.append(TensorBoardWriter(workdir))
        except ImportError:
            logging.warning("config.tensorboard: tensorboardX is not installed; metrics go to %s only",
                            METRICS_FILE)
    return chosen


def drop_after(workdir: str | pathlib.Path, step: int) -> None:
    """Removes records of steps after `step` (logged after the checkpoint a run resumes from)."""
    path = pathlib.Path(workdir) / METRICS_FILE
    if path.exists():
        kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in kept))


def run_clock(workdir: str | pathlib.Path) -> tuple[float, int]:
    """(wall seconds, resumes) of a run so far: the `wall_s` and `resumes` of its last record, read
    before a resume drops the records past its checkpoint (so work lost in a crash still counts);
    (0.0, 0) when nothing was recorded."""
    path = pathlib.Path(workdir) / METRICS_FILE
    records = read(workdir) if path.exists() else []
    last = next((r for r in reversed(records) if "wall_s" in r), {})
    return float(last.get("wall_s", 0.0)), int(last.get("resumes", 0))


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
