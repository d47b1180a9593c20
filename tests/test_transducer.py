"""Properties of the RNN-T loss: oracles (brute force, finite differences, naive reference),
padding and batching invariance, the chunked form, long sequences, input validation."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.transducer_loss import joint, naive_rnnt_loss
from models.transducer import rnnt_loss, rnnt_loss_chunked


def random_batch(seed, batch, frames, labels_max, vocab, blank_id=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(batch, frames, labels_max + 1, vocab)).astype(np.float32)
    non_blank = np.array([v for v in range(vocab) if v != blank_id])
    labels = rng.choice(non_blank, size=(batch, labels_max)).astype(np.int32)
    logit_lengths = rng.integers(1, frames + 1, size=batch).astype(np.int32)
    label_lengths = rng.integers(0, labels_max + 1, size=batch).astype(np.int32)
    logit_lengths[0], label_lengths[0] = frames, labels_max
    return logits, labels, logit_lengths, label_lengths


def brute_force_nll(logits, labels, blank_id):
    """-log of the sum over every alignment of its probability; logits [T, U+1, V], labels [U]."""
    frames, nodes, _ = logits.shape
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    probs = np.exp(log_probs.astype(np.float64))
    total = 0.0
    moves = frames - 1 + nodes - 1  # T-1 blanks and U labels before the final blank
    for emit_steps in itertools.combinations(range(moves), nodes - 1):
        t = u = 0
        prob = 1.0
        for step in range(moves):
            if step in emit_steps:
                prob *= probs[t, u, labels[u]]
                u += 1
            else:
                prob *= probs[t, u, blank_id]
                t += 1
        total += prob * probs[t, u, blank_id]
    return -np.log(total)


@pytest.mark.parametrize("frames,labels_max,vocab,blank_id", [
    (1, 0, 2, 0), (1, 3, 4, 0), (4, 0, 3, 2), (3, 2, 3, 0), (4, 3, 4, 0), (4, 3, 4, 3),
])
def test_equals_brute_force_sum_over_alignments(frames, labels_max, vocab, blank_id):
    logits, labels, _, _ = random_batch(frames * 10 + labels_max, 3, frames, labels_max, vocab,
                                        blank_id)
    full = np.full(3, frames, np.int32), np.full(3, labels_max, np.int32)
    losses = rnnt_loss(logits, labels, *full, blank_id=blank_id)
    expected = [brute_force_nll(logits[b], labels[b], blank_id) for b in range(3)]
    np.testing.assert_allclose(losses, expected, rtol=1e-5, atol=1e-5)


def test_gradient_matches_finite_differences():
    logits, labels, logit_lengths, label_lengths = random_batch(1, 3, 4, 3, 4)
    with jax.enable_x64(True):
        logits64 = jnp.asarray(logits, jnp.float64)
        loss = jax.jit(lambda x: jnp.sum(rnnt_loss(x, labels, logit_lengths, label_lengths)))
        grad = jax.grad(loss)(logits64)
        assert grad.dtype == jnp.float64
        eps = 1e-6
        for seed in range(3):
            direction = jnp.asarray(np.random.default_rng(seed).normal(size=logits.shape))
            step = eps * direction
            numeric = (loss(logits64 + step) - loss(logits64 - step)) / (2 * eps)
            np.testing.assert_allclose(jnp.vdot(grad, direction), numeric, rtol=1e-6)


def test_equals_naive_full_tensor_reference():
    logits, *rest = map(jnp.asarray, random_batch(3, 4, 6, 4, 5))
    np.testing.assert_allclose(rnnt_loss(logits, *rest), jax.jit(naive_rnnt_loss)(logits, *rest),
                               rtol=1e-5)
    grad = jax.grad(lambda x: jnp.sum(rnnt_loss(x, *rest)))(logits)
    naive_grad = jax.jit(jax.grad(lambda x: jnp.sum(naive_rnnt_loss(x, *rest))))(logits)
    np.testing.assert_allclose(grad, naive_grad, atol=1e-5)


def test_padding_frames_and_labels_leaves_loss_unchanged_and_gets_no_gradient():
    logits, labels, logit_lengths, label_lengths = random_batch(4, 2, 5, 3, 6)
    rng = np.random.default_rng(5)
    padded_logits = rng.normal(size=(2, 9, 7, 6)).astype(np.float32) * 10
    padded_logits[:, :5, :4] = logits
    padded_labels = np.full((2, 6), 5, np.int32)  # padding ids are arbitrary, even out of range
    padded_labels[:, :3] = labels
    padded_labels[:, 3:] = [[-1, 6, 99], [0, 0, 0]]
    for b in range(2):
        padded_labels[b, label_lengths[b]:3] = 0
    loss_fn = lambda x, y: jnp.sum(rnnt_loss(x, y, logit_lengths, label_lengths))  # noqa: E731
    np.testing.assert_allclose(loss_fn(padded_logits, padded_labels), loss_fn(logits, labels),
                               rtol=1e-6)
    grad = np.array(jax.grad(loss_fn)(padded_logits, padded_labels))
    for b in range(2):
        grad[b, : logit_lengths[b], : label_lengths[b] + 1] = 0
    assert not np.any(grad)


def test_jitted_batch_equals_examples_one_by_one():
    logits, labels, logit_lengths, label_lengths = random_batch(6, 6, 7, 4, 5)
    batch_losses = jax.jit(rnnt_loss)(logits, labels, logit_lengths, label_lengths)
    for b in range(6):
        t, u = logit_lengths[b], label_lengths[b]
        alone = rnnt_loss(logits[b:b + 1, :t, :u + 1], labels[b:b + 1, :u], [t], [u])
        np.testing.assert_allclose(batch_losses[b], alone[0], rtol=1e-6)


def test_long_sequence_loss_is_exact_and_gradient_finite():
    """T=1000, U=300. With all-zero logits every alignment has probability V^-(T+U) and there are
    C(T-1+U, U) of them, so the loss is (T+U) log V - log C(T-1+U, U); random logits stay finite."""
    frames, labels_max, vocab = 1000, 300, 4
    logits, labels, logit_lengths, label_lengths = random_batch(7, 2, frames, labels_max, vocab)
    log_paths = (jax.scipy.special.gammaln(frames + labels_max) - jax.scipy.special.gammaln(frames)
                 - jax.scipy.special.gammaln(labels_max + 1))
    uniform = rnnt_loss(np.zeros_like(logits[:1]), labels[:1], [frames], [labels_max])
    np.testing.assert_allclose(uniform[0], (frames + labels_max) * np.log(vocab) - log_paths,
                               rtol=1e-5)
    loss_fn = lambda x: jnp.sum(rnnt_loss(x, labels, logit_lengths, label_lengths))  # noqa: E731
    loss, grad = jax.jit(jax.value_and_grad(loss_fn))(logits)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    # d loss / d logits = softmax - expected one-hot counts: sums to zero over V at every node.
    np.testing.assert_allclose(grad.sum(-1), 0.0, atol=1e-4)


def joint_params(seed, enc_dim, pred_dim, hidden, vocab):
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    return {
        "w_enc": jax.random.normal(keys[0], (enc_dim, hidden)) / np.sqrt(enc_dim),
        "w_pred": jax.random.normal(keys[1], (pred_dim, hidden)) / np.sqrt(pred_dim),
        "w_out": jax.random.normal(keys[2], (hidden, vocab)),
        "b_out": jax.random.normal(keys[3], (vocab,)),
    }


@pytest.mark.parametrize("chunk_size", [3, 4, 11, 64])
def test_chunked_equals_full_in_loss_and_gradients(chunk_size):
    _, labels, logit_lengths, label_lengths = random_batch(8, 3, 11, 5, 9)
    params = joint_params(0, enc_dim=6, pred_dim=5, hidden=8, vocab=9)
    rng = np.random.default_rng(9)
    enc = rng.normal(size=(3, 11, 6)).astype(np.float32)
    pred = rng.normal(size=(3, 6, 5)).astype(np.float32)

    def full(params, enc, pred):
        return jnp.sum(rnnt_loss(joint(params, enc, pred), labels, logit_lengths, label_lengths))

    def chunked(params, enc, pred):
        joint_fn = lambda e, p: joint(params, e, p)  # noqa: E731
        return jnp.sum(rnnt_loss_chunked(enc, pred, joint_fn, labels, logit_lengths, label_lengths,
                                         chunk_size=chunk_size))

    full_loss, full_grads = jax.jit(jax.value_and_grad(full, (0, 1, 2)))(params, enc, pred)
    loss, grads = jax.jit(jax.value_and_grad(chunked, (0, 1, 2)))(params, enc, pred)
    np.testing.assert_allclose(loss, full_loss, rtol=1e-5)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(full_grads)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_bad_shapes_raise_value_error_naming_the_argument():
    logits, labels, logit_lengths, label_lengths = random_batch(10, 2, 4, 3, 5)
    with pytest.raises(ValueError, match="logits"):
        rnnt_loss(logits[0], labels, logit_lengths, label_lengths)
    with pytest.raises(ValueError, match="labels"):
        rnnt_loss(logits, labels[:, :2], logit_lengths, label_lengths)
    with pytest.raises(ValueError, match="logit_lengths"):
        rnnt_loss(logits, labels, logit_lengths[:1], label_lengths)
    with pytest.raises(ValueError, match="label_lengths"):
        rnnt_loss(logits, labels, logit_lengths, label_lengths.astype(np.float32))
    enc, pred = np.zeros((2, 4, 3), np.float32), np.zeros((2, 4, 3), np.float32)
    joint_fn = lambda e, p: jnp.zeros(e.shape[:2] + (p.shape[1], 5))  # noqa: E731
    with pytest.raises(ValueError, match="predictor_out"):
        rnnt_loss_chunked(enc, pred[:1], joint_fn, labels, logit_lengths, label_lengths)
    with pytest.raises(ValueError, match="joint_fn"):
        rnnt_loss_chunked(enc, pred, lambda e, p: e, labels, logit_lengths, label_lengths)


@pytest.mark.parametrize("bad_label,match", [(5, "labels"), (0, "blank_id=0"), (-1, "labels")])
def test_invalid_label_ids_raise_value_error(bad_label, match):
    logits, labels, logit_lengths, label_lengths = random_batch(11, 2, 4, 3, 5)
    labels[0, 1] = bad_label
    with pytest.raises(ValueError, match=match):
        rnnt_loss(logits, labels, logit_lengths, label_lengths)


def test_out_of_range_lengths_raise_value_error():
    logits, labels, logit_lengths, label_lengths = random_batch(12, 2, 4, 3, 5)
    with pytest.raises(ValueError, match="logit_lengths"):
        rnnt_loss(logits, labels, [0, 4], label_lengths)
    with pytest.raises(ValueError, match="label_lengths"):
        rnnt_loss(logits, labels, logit_lengths, [4, 1])
