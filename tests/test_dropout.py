"""models.dropout: byte-sized random draws, the rate rounded to 1/256, unbiased scaling."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.dropout import Dropout, drop_threshold, random_bytes


def _apply(rate, x, deterministic=False, seed=0):
    return Dropout(rate).apply({}, x, deterministic, rngs={"dropout": jax.random.key(seed)})


def test_the_rate_rounds_to_the_nearest_256th():
    assert drop_threshold(0.1) == 26
    assert drop_threshold(0.5) == 128
    assert drop_threshold(0.0) == 0


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, 0.001])
def test_a_rate_it_cannot_realise_is_an_error_naming_it(rate):
    with pytest.raises(ValueError, match=f"rate.*{rate}"):
        drop_threshold(rate)


def test_random_bytes_are_uniform_and_independent_within_a_word():
    u = np.asarray(random_bytes(jax.random.key(0), (400_003,))).astype(np.int64)
    assert u.shape == (400_003,) and u.min() == 0 and u.max() == 255
    counts = np.bincount(u, minlength=256)
    expected = u.size / 256
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 255 + 5 * np.sqrt(2 * 255)  # 255 degrees of freedom, 5 sigma
    # The four bytes of one word: neighbours uncorrelated.
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01


def test_it_drops_k_over_256_and_scales_the_rest_to_keep_the_mean():
    x = jnp.full((1000, 1001), 2.0)
    out = np.asarray(_apply(0.1, x))
    dropped = out == 0
    assert abs(dropped.mean() - 26 / 256) < 0.002
    np.testing.assert_allclose(out[~dropped], 2.0 * 256 / 230, rtol=1e-6)
    assert abs(out.mean() - 2.0) < 0.01


def test_identity_when_deterministic_or_the_rate_is_zero():
    x = jax.random.normal(jax.random.key(1), (3, 5, 7))
    np.testing.assert_array_equal(_apply(0.3, x, deterministic=True), x)
    np.testing.assert_array_equal(_apply(0.0, x), x)


def test_masks_differ_across_keys_and_calls_and_the_gradient_is_the_mask():
    x = jnp.ones((64, 33))
    a, b = _apply(0.5, x, seed=0), _apply(0.5, x, seed=1)
    assert not np.array_equal(a == 0, b == 0)

    class Twice(nn.Module):
        @nn.compact
        def __call__(self, x, deterministic):
            layer = Dropout(0.5)
            return layer(x, deterministic), layer(x, deterministic)

    first, second = Twice().apply({}, x, False, rngs={"dropout": jax.random.key(2)})
    assert not np.array_equal(first == 0, second == 0)

    grad = jax.grad(lambda x: _apply(0.25, x, seed=3).sum())(x)
    np.testing.assert_allclose(grad, np.where(np.asarray(_apply(0.25, x, seed=3)) == 0, 0.0, 256 / 192))
