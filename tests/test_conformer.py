"""Conformer: relative attention against a per-pair loop, padding invariance, streaming mask."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import conformer
from models.conformer import (ConformerEncoder, RelativeMultiHeadAttention, attention_mask,
                              make_conformer, subsampled_lengths)

SMALL = dict(num_layers=2, model_dim=16, num_heads=2, ff_multiplier=2, conv_kernel_size=5,
             subsampling_channels=4)


def _sinusoid(distance, dim):
    return np.array([np.sin(distance / 10000 ** (2 * (k // 2) / dim)) if k % 2 == 0
                     else np.cos(distance / 10000 ** (2 * (k // 2) / dim)) for k in range(dim)])


def test_relative_attention_matches_a_per_pair_loop():
    batch, frames, dim, heads = 1, 5, 8, 2
    x = jax.random.normal(jax.random.key(0), (batch, frames, dim))
    mask = attention_mask(jnp.array([4]), frames)
    layer = RelativeMultiHeadAttention(heads)
    params = layer.init(jax.random.key(1), x, mask)["params"]
    params = jax.tree_util.tree_map(lambda p: p + 0.1, params)  # non-zero u, v biases
    actual, _ = layer.apply({"params": params}, x, mask)
    p = jax.tree_util.tree_map(np.asarray, params)
    xs = np.asarray(x[0], np.float64)
    proj = lambda name: np.einsum("td,dhk->thk", xs, p[name]["kernel"]) + p[name]["bias"]
    q, k, v = proj("query"), proj("key"), proj("value")
    head_dim = dim // heads
    context = np.zeros((frames, heads, head_dim))
    for i in range(frames):
        for h in range(heads):
            scores = np.full(frames, -np.inf)
            for j in range(4):  # valid keys only
                pos = _sinusoid(i - j, dim) @ p["position"]["kernel"][:, h]
                scores[j] = ((q[i, h] + p["pos_bias_u"][h]) @ k[j, h]
                             + (q[i, h] + p["pos_bias_v"][h]) @ pos) / np.sqrt(head_dim)
            weights = np.exp(scores - scores.max())
            context[i, h] = (weights / weights.sum()) @ v[:, h]
    expected = np.einsum("thk,hkd->td", context, p["output"]["kernel"]) + p["output"]["bias"]
    np.testing.assert_allclose(actual[0], expected, atol=1e-4)


def test_attention_with_remembered_keys_and_values_equals_attention_over_the_whole_sequence():
    frames, before, heads = 7, 4, 2
    x = jax.random.normal(jax.random.key(0), (1, frames, 8))
    layer = RelativeMultiHeadAttention(heads)
    mask = attention_mask(jnp.array([frames]), frames, chunk_size=before)  # chunks [0, 4) and [4, 7)
    params = jax.tree_util.tree_map(lambda p: p + 0.1, layer.init(jax.random.key(1), x, mask)["params"])
    whole, _ = layer.apply({"params": params}, x, mask)
    _, memory = layer.apply({"params": params}, x[:, :before], mask[:, :before, :before])
    last, own = layer.apply({"params": params}, x[:, before:], mask[:, before:], memory=memory)
    np.testing.assert_allclose(last, whole[:, before:], atol=1e-5)
    assert own.key.shape == (1, frames - before, heads, 4)


def test_chunked_attention_mask_allows_own_and_left_chunks_only():
    mask = np.asarray(attention_mask(jnp.array([6]), 6, chunk_size=2, left_chunks=1)[0])
    chunk = np.arange(6) // 2
    expected = (chunk[None, :] <= chunk[:, None]) & (chunk[None, :] >= chunk[:, None] - 1)
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(attention_mask(jnp.array([4]), 6)[0],
                                  np.broadcast_to(np.arange(6) < 4, (6, 6)))


def _encode(encoder, features, lengths):
    variables = jax.jit(encoder.init)(jax.random.key(1), features, lengths)
    return jax.jit(lambda f, l: encoder.apply(variables, f, l))


def test_valid_outputs_do_not_depend_on_padding():
    encoder = ConformerEncoder(**SMALL)
    features = jax.random.normal(jax.random.key(0), (1, 40, 12))
    run = _encode(encoder, features, jnp.array([40]))
    alone, alone_lengths = run(features, jnp.array([27]))
    junk = jax.random.normal(jax.random.key(2), features.shape) * 5
    padded = jnp.where(jnp.arange(40)[None, :, None] < 27, features, junk)
    batched, batched_lengths = run(padded, jnp.array([27]))
    n = int(subsampled_lengths(jnp.array(27)))
    assert int(alone_lengths[0]) == int(batched_lengths[0]) == n == 6
    np.testing.assert_allclose(batched[0, :n], alone[0, :n], atol=1e-5)
    assert np.all(np.asarray(batched[0, n:]) == 0.0)


@pytest.mark.parametrize("streaming", [True, False])
def test_streaming_mask_makes_chunks_independent_of_later_input(streaming):
    chunk = 3
    options = dict(attention_chunk_size=chunk, causal_convolution=True) if streaming else {}
    encoder = ConformerEncoder(**SMALL, **options)
    features = jax.random.normal(jax.random.key(0), (1, 40, 12))
    lengths = jnp.array([40])
    run = _encode(encoder, features, lengths)
    first_future_input = 4 * chunk + 3  # subsampled frame i reads input frames 4i .. 4i + 6
    changed = features.at[:, first_future_input:].add(1.0)
    before, after = run(features, lengths)[0], run(changed, lengths)[0]
    same = np.allclose(before[:, :chunk], after[:, :chunk], atol=1e-5)
    assert same == streaming
    assert not np.allclose(before[:, chunk:], after[:, chunk:], atol=1e-5)


@pytest.mark.slow  # compiles the encoder, loss and their gradient: ~10-25 s on 2 cores
def test_conformer_transducer_loss_and_gradient_are_finite():
    model = make_conformer(6, encoder_layers=1, model_dim=16, num_heads=2, ff_multiplier=2,
                           conv_kernel_size=5, subsampling_channels=4, predictor_hidden_size=16,
                           joint_dim=16, dropout_rate=0.1)
    features = jax.random.normal(jax.random.key(0), (2, 30, 12))
    batch = (features, jnp.array([30, 21]), jnp.array([[1, 2], [3, -1]]), jnp.array([2, 1]))
    variables = jax.jit(model.init)(jax.random.key(1), *batch)
    loss_fn = lambda p, key: model.apply({"params": p}, *batch, train=True,
                                         rngs={"dropout": key}).sum()
    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(variables["params"], jax.random.key(2))
    assert np.isfinite(loss) and loss > 0
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))


def test_too_few_frames_for_the_subsampling_are_rejected():
    encoder = ConformerEncoder(**SMALL)
    with pytest.raises(ValueError, match="at least 7 input frames"):
        encoder.init(jax.random.key(0), jnp.zeros((1, 6, 12)), jnp.array([6]))


@pytest.mark.parametrize("frames, memory", [(1, 0), (2, 0), (5, 0), (16, 0), (1, 3), (5, 3)])
def test_relative_shift_equals_the_gather_by_distance(frames, memory):
    from models.conformer import relative_shift

    x = jax.random.normal(jax.random.key(frames), (2, 3, frames, memory + 2 * frames - 1))
    t, keys = np.arange(frames), np.arange(memory + frames)  # query i sits at key memory + i
    column = frames - 1 - t[:, None] + keys[None, :]  # the row of distance memory + i - j
    gathered = np.asarray(x)[:, :, t[:, None], column]
    np.testing.assert_array_equal(relative_shift(x), gathered)
    cotangent = jax.random.normal(jax.random.key(0), (2, 3, frames, memory + frames))
    grad = jax.vjp(relative_shift, x)[1](cotangent)[0]
    expected = np.zeros(x.shape, np.float32)
    np.add.at(expected, (slice(None), slice(None), t[:, None], column), np.asarray(cotangent))
    np.testing.assert_allclose(grad, expected)


@pytest.mark.parametrize("padding", [(7, 7), (14, 0), (0, 0)], ids=["same", "causal", "history"])
def test_the_depthwise_convolution_is_the_grouped_convolution_it_replaces(padding):
    """Same parameters from the same key, same outputs (to float rounding) as nn.Conv with
    feature_group_count = D, so checkpoints of either load in the other."""
    x = jax.random.normal(jax.random.key(0), (3, 20, 8))
    grouped = nn.Conv(8, (15,), padding=[padding], feature_group_count=8)
    params = grouped.init(jax.random.key(1), x)
    depthwise = conformer.DepthwiseConv1D(15, padding)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, params, depthwise.init(jax.random.key(1), x)))
    np.testing.assert_allclose(depthwise.apply(params, x), grouped.apply(params, x), atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 9, 7, 1), (3, 12, 80, 4)])
def test_the_strided_convolution_is_the_convolution_it_replaces(shape):
    """Same parameters from the same key, same outputs (to float rounding) and gradients as nn.Conv
    3x3 stride 2 VALID, so checkpoints of either load in the other."""
    x = jax.random.normal(jax.random.key(0), shape)
    conv = nn.Conv(5, (3, 3), strides=(2, 2), padding="VALID")
    params = conv.init(jax.random.key(1), x)
    strided = conformer.StridedConv2D(5)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, params, strided.init(jax.random.key(1), x)))
    np.testing.assert_allclose(strided.apply(params, x), conv.apply(params, x), atol=1e-5)
    grads = [jax.grad(lambda p, m=m: jnp.sum(jnp.sin(m.apply(p, x))))(params) for m in (strided, conv)]
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), *grads)
