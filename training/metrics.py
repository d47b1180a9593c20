"""Training metrics: a JSON-lines writer and the fraction of weights that changed centroid."""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

import numpy as np

from gq_jax.artifact import is_quantized
from gq_jax.config import leaves_with_paths

METRICS_FILE = "metrics.jsonl"


class JsonlWriter:
    """Appends one JSON object per call to `workdir/metrics.jsonl` (flushed at once, so a killed
    run loses nothing already written). Non-finite floats are written as null."""

    def __init__(self, workdir: str | pathlib.Path):
        self.path = pathlib.Path(workdir) / METRICS_FILE

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")


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
