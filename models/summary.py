"""Parameter counts per module of a parameter pytree (e.g. `encoder`, `predictor`, `joint`)."""

from __future__ import annotations

from collections import Counter

import jax
import numpy as np


def parameter_counts(params, depth: int = 1) -> dict[str, int]:
    """Number of scalars per module path prefix of `depth` names (`depth=2`: `encoder/lstm_0`).

    Accepts `params` or the full `variables` dict (its `params` collection is used). Keys keep the
    pytree's order; a leaf shallower than `depth` counts under its full path.
    """
    if depth < 1:
        raise ValueError(f"parameter_counts: depth must be >= 1, got {depth}")
    params = params.get("params", params) if hasattr(params, "get") else params
    counts: Counter[str] = Counter()
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        names = [str(getattr(key, "key", getattr(key, "name", key))) for key in path]
        counts["/".join(names[:depth])] += int(np.size(leaf))
    return dict(counts)


def format_parameter_counts(params, depth: int = 1) -> str:
    """A table of `parameter_counts` with each module's share and the total."""
    counts = parameter_counts(params, depth)
    total = sum(counts.values())
    width = max([len(name) for name in counts] + [len("total")])
    lines = [f"{name:<{width}}  {count:>12,}  {100 * count / max(total, 1):5.1f}%"
             for name, count in counts.items()]
    return "\n".join(lines + [f"{'total':<{width}}  {total:>12,}  100.0%"])
