"""Soft and hard assignment of companded weights v to sorted centroids c, and its custom VJP.

For a flat vector v: [N] and sorted centroids c: [K] in the µ-law space, with spacing
Δ = 2 / (K − 1) (so that α means the same at every bit depth; Δ = 2 for K = 1, 2):

    x_k = (v − c_k) / Δ,   a_k = softmax_k(−α d(x_k)),   ṽ = Σ_k a_k c_k     (soft value)
    v̂ = c_{argmin_k |v − c_k|}                                                (hard value)

`assign` returns û = expand(v̂) ("ste" forward) or û = expand(ṽ) ("soft" forward), in the
normalised-weight space u, and its backward is always the Jacobian of the soft value:

    t_k   = g' a_k (c_k − ṽ) (α / Δ) d'(x_k)          with g' = g · expand'(forward v)
    ∂/∂v  = −Σ_k t_k
    ∂/∂c_k = Σ_n (g'_n a_nk + t_nk)                     (a segment-sum over windows)

Memory: the dense form materialises [N, K]. The windowed form gathers only the 2w centroids around
v's position in the sorted codebook (found with `searchsorted`) and costs [N, 2w]; it equals the
dense form when 2w >= K and otherwise drops terms of weight below exp(−α d(w − 1)).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gq_jax.companding import expand


def centroid_spacing(num_centroids: int) -> float:
    """Δ = 2 / (K − 1), the spacing of a uniform grid of K points over [-1, 1] (2 when K <= 2)."""
    return 2.0 / max(num_centroids - 1, 1)


def nearest_index(v: jax.Array, centroids: jax.Array) -> jax.Array:
    """argmin_k |v − c_k| for sorted c, ties to the lower index, in O(N log K) memory O(N).

    Args:
      v: [N] values.
      centroids: [K] sorted ascending.
    Returns:
      [N] int32 indices into `centroids`.
    """
    num = centroids.shape[0]
    upper = jnp.clip(jnp.searchsorted(centroids, v, side="left", method="scan"), 0, num - 1)
    lower = jnp.clip(upper - 1, 0, num - 1)
    take_upper = jnp.abs(centroids[upper] - v) < jnp.abs(v - centroids[lower])
    return jnp.where(take_upper, upper, lower).astype(jnp.int32)


class Candidates(NamedTuple):
    """The centroids each weight is softly assigned to.

    values: [N, J] candidate centroids (J = K dense, 2w windowed; dense is broadcast from [1, K]).
    index: [N, J] int32 positions in the codebook (windowed), or None (dense: position = column).
    """

    values: jax.Array
    index: jax.Array | None


def is_dense(num_centroids: int, window: int | None) -> bool:
    """Whether the dense [N, K] form is used: no window, or a window covering every centroid."""
    return window is None or 2 * window >= num_centroids


def candidates(v: jax.Array, centroids: jax.Array, window: int | None) -> Candidates:
    """The dense codebook, or the 2w centroids around each v's insertion point in sorted c."""
    num = centroids.shape[0]
    if is_dense(num, window):
        return Candidates(centroids[None, :], None)
    insertion = jnp.searchsorted(centroids, v, side="left", method="scan")
    start = jnp.clip(insertion - window, 0, num - 2 * window)
    index = start[:, None] + jnp.arange(2 * window, dtype=start.dtype)[None, :]
    return Candidates(centroids[index], index.astype(jnp.int32))


def _distance(x: jax.Array, distance: str) -> jax.Array:
    return x * x if distance == "sq" else jnp.abs(x)


def _distance_slope(x: jax.Array, distance: str) -> jax.Array:
    return 2.0 * x if distance == "sq" else jnp.sign(x)


def soft_weights(
    v: jax.Array, cand: jax.Array, alpha: jax.Array, delta: float, distance: str
) -> jax.Array:
    """a: [N, J] = softmax_j(−α d((v − cand_j) / Δ)) for v: [N], cand: [N or 1, J]."""
    return jax.nn.softmax(-alpha * _distance((v[:, None] - cand) / delta, distance), axis=-1)


def soft_value(
    v: jax.Array,
    centroids: jax.Array,
    alpha: jax.Array,
    *,
    distance: str = "sq",
    window: int | None = None,
) -> jax.Array:
    """ṽ: [N] = Σ_k a_k c_k, a plain differentiable function (the reference for the custom VJP)."""
    delta = centroid_spacing(centroids.shape[0])
    cand = candidates(v, centroids, window)
    return jnp.sum(soft_weights(v, cand.values, alpha, delta, distance) * cand.values, axis=-1)


def _forward_value(v, centroids, alpha, hard_forward, distance, window) -> jax.Array:
    """v̂ (hard) or ṽ (soft): [N], the point at which the backward takes expand's slope."""
    if hard_forward:
        return centroids[nearest_index(v, centroids)]
    return soft_value(v, centroids, alpha, distance=distance, window=window)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def assign(
    v: jax.Array,
    centroids: jax.Array,
    alpha: jax.Array,
    hard_forward: bool,
    distance: str,
    window: int | None,
    mu: float,
) -> jax.Array:
    """û = expand(v̂) or expand(ṽ): [N], with the soft-assignment Jacobian as its VJP.

    Args:
      v: [N] companded weights in [-1, 1].
      centroids: [K] sorted centroids in [-1, 1].
      alpha: scalar sharpness α (traced; no gradient).
      hard_forward: forward v̂ ("ste") instead of ṽ ("soft").
      distance: "sq" or "abs".
      window: centroids on each side for the windowed form, or None (dense).
      mu: µ of the compander.
    """
    if hard_forward:
        return expand(centroids, mu)[nearest_index(v, centroids)]
    return expand(soft_value(v, centroids, alpha, distance=distance, window=window), mu)


def _assign_fwd(v, centroids, alpha, hard_forward, distance, window, mu):
    out = assign(v, centroids, alpha, hard_forward, distance, window, mu)
    return out, (v, centroids, alpha)


def _assign_bwd(hard_forward, distance, window, mu, residuals, g):
    v, centroids, alpha = residuals
    num = centroids.shape[0]
    delta = centroid_spacing(num)
    forward_v = _forward_value(v, centroids, alpha, hard_forward, distance, window)
    _, expand_slope = jax.jvp(lambda x: expand(x, mu), (forward_v,), (jnp.ones_like(forward_v),))
    g = g * expand_slope
    cand = candidates(v, centroids, window)
    x = (v[:, None] - cand.values) / delta
    a = jax.nn.softmax(-alpha * _distance(x, distance), axis=-1)
    v_soft = jnp.sum(a * cand.values, axis=-1, keepdims=True)
    t = g[:, None] * a * (cand.values - v_soft) * (alpha / delta) * _distance_slope(x, distance)
    grad_v = -jnp.sum(t, axis=-1)
    per_candidate = g[:, None] * a + t
    if cand.index is None:
        grad_c = jnp.sum(per_candidate, axis=0)
    else:
        grad_c = jax.ops.segment_sum(per_candidate.ravel(), cand.index.ravel(), num_segments=num)
    return grad_v, grad_c.astype(centroids.dtype), jnp.zeros_like(alpha)


assign.defvjp(_assign_fwd, _assign_bwd)
