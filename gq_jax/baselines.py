"""Baseline quantizers as functions of (params, state, config), each producing the same
`QuantizedArray` artifact; `gq_jax.uniform_ste`, `ptq_round` and `ptq_kmeans` bind them into
`gq_jax.Quantizer`s.

- `uniform_ste`: uniform symmetric fake-quant with a straight-through estimator (the paper's
  "8-bit QAT", also at 4, 2 and 1 bits). Levels are k / L for k = −L..L, L = 2**(b−1) − 1 (1 bit:
  ±1), in units of s = max|W| per tensor or per output channel (the rule's granularity and
  channel axes, as for GQ); forward
  Ŵ = s · level(W / s), backward ∂Ŵ/∂W = 1.
- `ptq_round`: the same levels applied once after float training (round to nearest).
- `ptq_kmeans`: after float training, per tensor, the 2**b k-means centres of W / s as codebook.

All reuse GQ's machinery with µ = 0 (no companding) and a fixed codebook as the "centroids", so the
hard assignment, `harden`, `dequantize` and the packed format are shared, not re-implemented.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gq_jax.artifact import harden
from gq_jax.config import GQConfig, Rule
from gq_jax.kmeans import kmeans_1d
from gq_jax.quantizer import QuantState, leaf_companded, matched_leaves, quantize_params


def uniform_levels(bits: int) -> jax.Array:
    """Symmetric uniform levels in [-1, 1]: k / L for k = −L..L, L = 2**(bits−1) − 1; ±1 at 1 bit."""
    if bits == 1:
        return jnp.array([-1.0, 1.0], jnp.float32)
    half = 2 ** (bits - 1) - 1
    return jnp.arange(-half, half + 1, dtype=jnp.float32) / half


def _uncompanded(config: GQConfig) -> GQConfig:
    return dataclasses.replace(config, mu=0.0, mode="ste", strict=False)


def _codebooks(params: Any, config: GQConfig, codebook_fn) -> QuantState:
    """QuantState with codebook_fn(path, leaf, rule) as the "centroids" of every matched leaf."""
    return QuantState(
        {path: codebook_fn(path, leaf, rule) for path, leaf, rule in matched_leaves(params, config)}
    )


def uniform_init(params: Any, config: GQConfig) -> QuantState:
    """The fixed symmetric uniform levels of each matched leaf (nothing here is learnable)."""
    return _codebooks(params, config, lambda path, leaf, rule: uniform_levels(rule.bits))


def uniform_ste_quantize_params(
    params: Any, state: QuantState, config: GQConfig, alpha: jax.typing.ArrayLike = 0.0
) -> Any:
    """Fake-quant with a straight-through estimator: W + stop_gradient(Ŵ − W); `alpha` is unused."""
    hard = quantize_params(params, state, _uncompanded(config), 0.0, hard=True)
    return jax.tree_util.tree_map(lambda w, q: w + jax.lax.stop_gradient(q - w), params, hard)


def uniform_harden(params: Any, state: QuantState, config: GQConfig) -> Any:
    """Round-to-nearest symmetric uniform levels, as QuantizedArray leaves."""
    return harden(params, uniform_init(params, config), _uncompanded(config))


def kmeans_harden(params: Any, state: QuantState, config: GQConfig) -> Any:
    """Per-tensor 1-D k-means codebook of W / s (2**bits centres), as QuantizedArray leaves."""

    def codebook(path: str, leaf: Any, rule: Rule) -> jax.Array:
        u, _ = leaf_companded(path, leaf, rule, 0.0)
        return jnp.asarray(kmeans_1d(np.asarray(u), rule.num_centroids, config.kmeans_iters))

    uncompanded = _uncompanded(config)
    return harden(params, _codebooks(params, uncompanded, codebook), uncompanded)
