"""Matplotlib PNGs: latent-weight histograms with the learned centroids, and WER against bits."""

from __future__ import annotations

import math
import pathlib
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gq_jax.artifact import is_quantized  # noqa: E402
from gq_jax.config import leaves_with_paths  # noqa: E402


def weight_histograms(params: Any, hardened: Any, path: str | pathlib.Path, title: str) -> list[str]:
    """One panel per quantized leaf: histogram of its latent weights W / s (s the leaf's
    per-tensor or per-channel scale) with the codebook (centroids in weight space, units of s)
    as vertical lines. Returns the leaf paths drawn; writes nothing when none is quantized."""
    latent = dict(leaves_with_paths(params))
    leaves = [(p, q) for p, q in leaves_with_paths(hardened, is_leaf=is_quantized) if is_quantized(q)]
    if not leaves:
        return []
    cols = min(3, len(leaves))
    rows = math.ceil(len(leaves) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, (leaf_path, q) in zip(axes.ravel(), leaves):
        w = np.asarray(latent[leaf_path], np.float32)
        scale = np.asarray(q.scale, np.float32)
        u = w / np.where(scale > 0, scale, 1.0)
        ax.hist(u.ravel(), bins=80, range=(-1.05, 1.05), color="0.6")
        for c in np.asarray(q.codebook).ravel():
            ax.axvline(float(c), color="tab:red", linewidth=0.8)
        ax.set_title(f"{leaf_path} ({q.bits} bit)", fontsize=8)
        ax.set_xlabel("W / s  (red: centroids)", fontsize=8)
    for ax in axes.ravel()[len(leaves):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return [p for p, _ in leaves]


def wer_against_bits(runs: Mapping[str, Sequence[tuple[float, float]]], path: str | pathlib.Path,
                     title: str = "WER against bits per weight", baselines: Sequence[tuple[str, float]] = ()
                     ) -> None:
    """One line per method: `runs[method]` = [(average bits per weight, WER), ...]; each of
    `baselines` = (name, WER), e.g. the float model under each decoder, is a horizontal line across
    them (dashed, dotted, ...)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method, points in runs.items():
        bits, wer = zip(*sorted(points))
        ax.plot(bits, [100 * w for w in wer], marker="o", label=method)
    for (name, wer), style in zip(baselines, ("--", ":", "-.")):
        ax.axhline(100 * wer, color="black", linestyle=style, linewidth=1, label=name)
    ax.set_xlabel("bits per weight")
    ax.set_ylabel("WER (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
