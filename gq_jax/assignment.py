"""Soft and hard assignment of companded weights v to sorted centroids c, and its custom VJP.

For a flat vector v: [N] and sorted centroids c: [K] in the µ-law space, with spacing
Δ = 2 / (K − 1) (so that α means the same at every bit depth; Δ = 2 for K = 1, 2):

    x_k = (v − c_k) / Δ,   a_k = softmax_k(−α d(x_k)),   ṽ = Σ_k a_k c_k     (soft value)
    v̂ = c_{argmin_k |v − c_k|}                                                (hard value)

`assign` returns û = expand(v̂) ("ste" forward) or û = expand(ṽ) ("soft" forward), in the
normalised-weight space u. Its backward is the Jacobian of the soft value at a sharpness α',

    t_k   = g' a_k (c_k − ṽ) (α' / Δ) d'(x_k)         with g' = g · expand'(forward v)
    ∂/∂v  = −Σ_k t_k
    ∂/∂c_k = Σ_n (g'_n a_nk + t_nk)                     (a segment-sum over windows)

(a_k, ṽ, x_k taken at α' too), with one of three gradient estimators (`gq_jax.config.ESTIMATORS`):

    "soft_jacobian"     α' = α, both gradients as above (the exact gradient of the "soft" forward).
    "straight_through"  ∂/∂v = g · expand'(v): the identity for the latent weights (∂û/∂u = 1, so
                        ∂L/∂W = ∂L/∂Ŵ exactly), and ∂/∂c_k as above at α' = α.
    "capped_alpha"      α' = min(α, α_b), both gradients as above: the forward may be as hard as it
                        likes while the backward stays as smooth as α_b.

Why the choice matters: for d = x² the soft Jacobian in v is ∂ṽ/∂v = (2α/Δ²) Var_a(c), the
variance of the centroids under the assignment a. Between two neighbours (a, 1 − a) it is
2α a (1 − a): α/2 on the decision boundary, and about 2α exp(−α(1 − 2|x|)) at distance x·Δ from
the nearest centroid, so as α grows it spikes at the boundaries and vanishes everywhere else
(`benchmarks/gq_gradient.py`: at 4 bits and α = 500, 2 % of the weights get 10 % of the
upstream gradient).

Memory: the dense form (window=None) materialises [N, K] arrays. The windowed form takes only the
J = min(2w, K) centroids around v's position in the sorted codebook (found with `searchsorted`),
one [N] column at a time (a `fori_loop` with an online softmax), so its memory is a few times N
whatever K; it equals the dense form when 2w >= K and otherwise drops terms of weight below
exp(−α d(w − 1)). Its centroid gradient is a segment-sum per column.
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


def window_width(num_centroids: int, window: int | None) -> int | None:
    """J = min(2w, K) candidates per weight, or None for the dense form (window=None)."""
    return None if window is None else min(2 * window, num_centroids)


def window_start(v: jax.Array, centroids: jax.Array, width: int) -> jax.Array:
    """[N] int32 first codebook position of each v's window of `width` sorted centroids.

    The window is centred on v's insertion point i (c[i−1] < v <= c[i]) and shifted to stay inside
    the codebook: start = clip(i − width/2, 0, K − width).
    """
    insertion = jnp.searchsorted(centroids, v, side="left", method="scan")
    return jnp.clip(insertion - width // 2, 0, centroids.shape[0] - width).astype(jnp.int32)


def _distance(x: jax.Array, distance: str) -> jax.Array:
    return x * x if distance == "sq" else jnp.abs(x)


def _distance_slope(x: jax.Array, distance: str) -> jax.Array:
    return 2.0 * x if distance == "sq" else jnp.sign(x)


def _logits(v, cand, alpha, delta, distance):
    """−α d((v − cand) / Δ), for broadcastable v and cand."""
    return -alpha * _distance((v - cand) / delta, distance)


def _vjp_terms(g, a, cand, v_soft, v, alpha, delta, distance):
    """Per candidate: (t, ∂/∂cand) with t = g a (cand − ṽ)(α/Δ) d'((v − cand)/Δ), ∂/∂cand = g a + t."""
    t = g * a * (cand - v_soft) * (alpha / delta) * _distance_slope((v - cand) / delta, distance)
    return t, g * a + t


def _dense_soft(v, centroids, alpha, distance):
    """(a: [N, K], ṽ: [N]) over the whole codebook."""
    delta = centroid_spacing(centroids.shape[0])
    a = jax.nn.softmax(_logits(v[:, None], centroids[None, :], alpha, delta, distance), axis=-1)
    return a, jnp.sum(a * centroids[None, :], axis=-1)


class WindowedSoftmax(NamedTuple):
    """Softmax statistics of the windowed form, all [N]: a_j = exp(logit_j − top) / total."""

    start: jax.Array
    top: jax.Array
    total: jax.Array
    v_soft: jax.Array


def _windowed_soft(v, centroids, alpha, distance, width) -> WindowedSoftmax:
    """One online-softmax pass over the `width` window columns (a `fori_loop`: memory O(N))."""
    delta = centroid_spacing(centroids.shape[0])
    start = window_start(v, centroids, width)

    def accumulate(j, carry):
        top, total, weighted = carry
        cand = centroids[start + j]
        logit = _logits(v, cand, alpha, delta, distance)
        new_top = jnp.maximum(top, logit)
        decay, e = jnp.exp(top - new_top), jnp.exp(logit - new_top)
        return new_top, total * decay + e, weighted * decay + e * cand

    init = (jnp.full_like(v, -jnp.inf), jnp.zeros_like(v), jnp.zeros_like(v))
    top, total, weighted = jax.lax.fori_loop(0, width, accumulate, init)
    return WindowedSoftmax(start, top, total, weighted / total)


def soft_value(
    v: jax.Array,
    centroids: jax.Array,
    alpha: jax.Array,
    *,
    distance: str = "sq",
    window: int | None = None,
) -> jax.Array:
    """ṽ: [N] = Σ_k a_k c_k, a plain differentiable function (the reference for the custom VJP)."""
    width = window_width(centroids.shape[0], window)
    if width is None:
        return _dense_soft(v, centroids, alpha, distance)[1]
    return _windowed_soft(v, centroids, alpha, distance, width).v_soft


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6, 7, 8))
def assign(
    v: jax.Array,
    centroids: jax.Array,
    alpha: jax.Array,
    hard_forward: bool,
    distance: str,
    window: int | None,
    mu: float,
    estimator: str = "soft_jacobian",
    backward_alpha: float = 5.0,
) -> jax.Array:
    """û = expand(v̂) or expand(ṽ): [N], with the VJP of the chosen gradient `estimator`.

    Args:
      v: [N] companded weights in [-1, 1].
      centroids: [K] sorted centroids in [-1, 1].
      alpha: scalar sharpness α (traced; no gradient).
      hard_forward: forward v̂ ("ste") instead of ṽ ("soft").
      distance: "sq" or "abs".
      window: centroids on each side for the windowed form, or None (dense).
      mu: µ of the compander.
      estimator: "soft_jacobian" (the soft assignment's Jacobian at α for v and c),
        "straight_through" (identity in u for v, soft Jacobian at α for c) or "capped_alpha" (soft
        Jacobian at min(α, backward_alpha) for v and c); see the module docstring.
      backward_alpha: α_b of "capped_alpha" (ignored by the other estimators).
    """
    if hard_forward:
        return expand(centroids, mu)[nearest_index(v, centroids)]
    return expand(soft_value(v, centroids, alpha, distance=distance, window=window), mu)


def _assign_fwd(v, centroids, alpha, hard_forward, distance, window, mu, estimator, backward_alpha):
    out = assign(v, centroids, alpha, hard_forward, distance, window, mu, estimator, backward_alpha)
    return out, (v, centroids, alpha)


def _expand_slope(x, mu):
    """expand'(x), elementwise."""
    return jax.jvp(lambda y: expand(y, mu), (x,), (jnp.ones_like(x),))[1]


def _assign_bwd(hard_forward, distance, window, mu, estimator, backward_alpha, residuals, g):
    v, centroids, alpha = residuals
    num = centroids.shape[0]
    delta = centroid_spacing(num)
    width = window_width(num, window)
    alpha_b = jnp.minimum(alpha, backward_alpha) if estimator == "capped_alpha" else alpha
    if width is None:
        a, v_soft = _dense_soft(v, centroids, alpha_b, distance)
    else:
        soft = _windowed_soft(v, centroids, alpha_b, distance, width)
        v_soft = soft.v_soft
    # Chain through expand at the forward point: v̂ ("ste") or ṽ at the forward α ("soft").
    if hard_forward:
        forward_v = centroids[nearest_index(v, centroids)]
    elif estimator == "capped_alpha":
        forward_v = soft_value(v, centroids, alpha, distance=distance, window=window)
    else:
        forward_v = v_soft
    g_u = g
    g = g * _expand_slope(forward_v, mu)
    if width is None:
        t, per_centroid = _vjp_terms(
            g[:, None], a, centroids[None, :], v_soft[:, None], v[:, None], alpha_b, delta, distance
        )
        grad_v, grad_c = -jnp.sum(t, axis=-1), jnp.sum(per_centroid, axis=0)
    else:

        def accumulate(j, carry):
            grad_v, grad_c = carry
            cand = centroids[soft.start + j]
            a = jnp.exp(_logits(v, cand, alpha_b, delta, distance) - soft.top) / soft.total
            t, per_centroid = _vjp_terms(g, a, cand, v_soft, v, alpha_b, delta, distance)
            segment = jax.ops.segment_sum(per_centroid, soft.start + j, num_segments=num)
            return grad_v - t, grad_c + segment

        init = (jnp.zeros_like(v), jnp.zeros_like(centroids))
        grad_v, grad_c = jax.lax.fori_loop(0, width, accumulate, init)
    if estimator == "straight_through":
        grad_v = g_u * _expand_slope(v, mu)  # û = expand(v) to first order: ∂û/∂u = 1
    return grad_v, grad_c.astype(centroids.dtype), jnp.zeros_like(alpha)


assign.defvjp(_assign_fwd, _assign_bwd)
