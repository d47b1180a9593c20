"""µ-law companding between normalised weights u ∈ [-1, 1] and the centroid space v ∈ [-1, 1].

    compress:  v = sign(u) · ln(1 + µ|u|) / ln(1 + µ)
    expand:    u = sign(v) · ((1 + µ)^|v| − 1) / µ

µ = 0 is the identity (the uniform quantizer). Both maps have hand-written JVPs so the derivative
at 0 is the true slope (µ / ln(1 + µ) for compress) rather than the 0 that autodiff of
sign(u) · f(|u|) gives there.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def compress(u: jax.Array, mu: float) -> jax.Array:
    """µ-law compress u ∈ [-1, 1] (any shape) to v ∈ [-1, 1]; `mu` is a static float."""
    if mu == 0.0:
        return u
    return jnp.sign(u) * jnp.log1p(mu * jnp.abs(u)) / jnp.log1p(mu)


@compress.defjvp
def _compress_jvp(mu, primals, tangents):
    (u,), (du,) = primals, tangents
    if mu == 0.0:
        return u, du
    slope = mu / ((1.0 + mu * jnp.abs(u)) * jnp.log1p(mu))
    return compress(u, mu), slope * du


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def expand(v: jax.Array, mu: float) -> jax.Array:
    """Inverse of `compress`: v ∈ [-1, 1] (any shape) back to u ∈ [-1, 1]."""
    if mu == 0.0:
        return v
    return jnp.sign(v) * jnp.expm1(jnp.abs(v) * jnp.log1p(mu)) / mu


@expand.defjvp
def _expand_jvp(mu, primals, tangents):
    (v,), (dv,) = primals, tangents
    if mu == 0.0:
        return v, dv
    log1p_mu = jnp.log1p(mu)
    slope = log1p_mu * jnp.exp(jnp.abs(v) * log1p_mu) / mu
    return expand(v, mu), slope * dv
