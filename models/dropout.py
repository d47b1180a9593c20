"""Inverted dropout with byte-sized random draws: a quarter of `flax.linen.Dropout`'s random bits.

    keep_i = [u_i >= k],  out_i = keep_i · x_i · 256 / (256 - k),  k = round(256 · rate)

with `u_i` uniform on {0, ..., 255}: the four bytes of each 32-bit word of `jax.random.bits`, so
one threefry word serves four elements where `jax.random.bernoulli` spends one per element. An
element is dropped with probability k / 256 (the rate rounded to the nearest 1/256: 0.1 drops
26/256 = 10.16 %), and `E[out_i] = x_i` exactly. Threefry dominates dropout's cost on XLA's CPU
backend: `python benchmarks/dropout.py` times both on the Conformer recipe's shapes.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

LEVELS = 256  # values of one random byte


def drop_threshold(rate: float) -> int:
    """k = round(256 · rate), the bytes below which an element is dropped.

    Raises ValueError unless 0 <= rate < 1 and a positive rate is at least 1/512 (it would round
    to no dropout at all).
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"Dropout: rate must be in [0, 1), got {rate}")
    threshold = round(LEVELS * rate)
    if rate > 0 and threshold == 0:
        raise ValueError(f"Dropout: rate {rate} is below this dropout's resolution of 1/{LEVELS} "
                         f"(it would drop nothing); use 0 or at least {1 / (2 * LEVELS):.5f}")
    return min(threshold, LEVELS - 1)


def random_bytes(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Independent uniform uint8 values of `shape`: the bytes of ceil(n / 4) 32-bit random words."""
    size = math.prod(shape)
    words = jax.random.bits(key, (-(-size // 4),), jnp.uint32)
    return jax.lax.bitcast_convert_type(words, jnp.uint8).reshape(-1)[:size].reshape(shape)


class Dropout(nn.Module):
    """Drop-in for `nn.Dropout(rate)` (same `dropout` RNG stream, same auto-name `Dropout_<i>`):
    `x [...] -> [...]`, the identity when `deterministic` or the rate is 0."""

    rate: float
    rng_collection: str = "dropout"

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        threshold = drop_threshold(self.rate)
        if deterministic or threshold == 0:
            return x
        keep = random_bytes(self.make_rng(self.rng_collection), x.shape) >= threshold
        scale = jnp.asarray(LEVELS / (LEVELS - threshold), x.dtype)
        return jnp.where(keep, x * scale, jnp.zeros((), x.dtype))
