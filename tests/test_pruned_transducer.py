"""The pruned RNN-T loss (models.transducer.rnnt_loss_pruned) against the exact full-lattice loss,
its band starts (prune_ranges) against the constraints that keep a path, and the Transducer with
`prune_range` > 0."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import transducer
from models.rnnt import make_rnnt

B, T, U, J, V = 3, 6, 4, 5, 7


def lattice(seed: int = 0):
    keys = jax.random.split(jax.random.key(seed), 6)
    enc, pred = jax.random.normal(keys[0], (B, T, J)), jax.random.normal(keys[1], (B, U + 1, J))
    kernel = jax.random.normal(keys[2], (J, V))
    am, lm = jax.random.normal(keys[3], (B, T, V)), jax.random.normal(keys[4], (B, U + 1, V))
    labels = jax.random.randint(keys[5], (B, U), 1, V)
    return enc, pred, kernel, am, lm, labels, jnp.array([6, 4, 5]), jnp.array([4, 2, 0])


def joint(kernel):
    return lambda enc, pred: jnp.tanh(enc + pred) @ kernel


def full_nll(enc, pred, kernel, labels, frames, label_lengths):
    return transducer.rnnt_loss(joint(kernel)(enc[:, :, None], pred[:, None]), labels, frames, label_lengths)


def test_a_band_as_wide_as_the_lattice_gives_the_exact_loss_and_gradients():
    enc, pred, kernel, am, lm, labels, frames, label_lengths = lattice()
    pruned = lambda e, p, k: transducer.rnnt_loss_pruned(e, p, joint(k), am, lm, labels, frames, label_lengths,
                                                         prune_range=U + 1)[0]
    np.testing.assert_allclose(pruned(enc, pred, kernel), full_nll(enc, pred, kernel, labels, frames, label_lengths),
                               rtol=1e-5)
    exact = jax.grad(lambda *a: full_nll(*a, labels, frames, label_lengths).sum(), argnums=(0, 1, 2))
    banded = jax.grad(lambda *a: pruned(*a).sum(), argnums=(0, 1, 2))
    for a, b in zip(exact(enc, pred, kernel), banded(enc, pred, kernel)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("prune_range", [2, 3])
def test_a_narrower_band_keeps_a_path_and_only_removes_probability(seed, prune_range):
    enc, pred, kernel, am, lm, labels, frames, label_lengths = lattice(seed)
    pruned, _ = jax.jit(transducer.rnnt_loss_pruned, static_argnums=(2, 8))(
        enc, pred, joint(kernel), am, lm, labels, frames, label_lengths, prune_range)
    exact = full_nll(enc, pred, kernel, labels, frames, label_lengths)
    assert np.all(np.isfinite(pruned)) and np.all(pruned < 1e4)  # a path survives: no 1e30
    assert np.all(np.asarray(pruned) >= np.asarray(exact) - 1e-4)  # a subset of the paths
    np.testing.assert_allclose(pruned[2], exact[2], rtol=1e-5)  # no labels: the one path is kept


def test_the_simple_nll_is_the_exact_loss_of_the_trivial_joiner():
    enc, pred, kernel, am, lm, labels, frames, label_lengths = lattice()
    simple = lambda a, l: transducer.rnnt_loss_pruned(enc, pred, joint(kernel), a, l, labels, frames,
                                                      label_lengths, prune_range=2)[1]
    reference = lambda a, l: transducer.rnnt_loss(a[:, :, None] + l[:, None], labels, frames, label_lengths)
    np.testing.assert_allclose(simple(am, lm), reference(am, lm), rtol=1e-5)
    weights = jnp.array([0.5, 2.0, -1.0])  # a cotangent per utterance: the backward scales by it
    for a, b in zip(jax.grad(lambda *x: simple(*x) @ weights, (0, 1))(am, lm),
                    jax.grad(lambda *x: reference(*x) @ weights, (0, 1))(am, lm)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_an_utterance_with_more_labels_than_the_bands_can_emit_falls_back_to_the_simple_nll():
    enc, pred, kernel, am, lm, labels, _, _ = lattice()
    frames, label_lengths = jnp.array([1, 6, 2]), jnp.array([4, 4, 1])  # 4 > 1 frame x (2 - 1)
    pruned, simple = transducer.rnnt_loss_pruned(enc, pred, joint(kernel), am, lm, labels, frames, label_lengths, 2)
    assert float(pruned[0]) == float(simple[0]) and np.all(np.isfinite(pruned))
    assert float(pruned[1]) != float(simple[1])


def test_band_starts_keep_the_start_and_final_nodes_and_consecutive_bands_overlap():
    rng = np.random.default_rng(0)
    for trial in range(200):
        frames_max, labels_max, width = rng.integers(1, 12), rng.integers(0, 15), int(rng.integers(2, 6))
        frames = rng.integers(1, frames_max + 1, size=4)
        label_lengths = np.minimum(rng.integers(0, labels_max + 1, size=4), frames * (width - 1))
        occupancy = rng.random((4, frames_max, labels_max + 1)) ** 8  # peaky, anywhere
        starts = np.asarray(transducer.prune_ranges(jnp.asarray(occupancy), jnp.asarray(frames),
                                                    jnp.asarray(label_lengths), width))
        for s, t_b, u_b in zip(starts, frames, label_lengths):
            s = s[:t_b]
            assert s[0] == 0, (trial, s)
            assert s[-1] <= u_b <= s[-1] + width - 1, (trial, s, u_b)  # the final node is in the last band
            assert np.all(s >= 0) and np.all(s <= max(u_b + 1 - width, 0)), (trial, s)
            assert np.all(np.diff(s) >= 0) and np.all(np.diff(s) <= width - 1), (trial, s)


def test_band_starts_follow_the_occupancy_where_the_constraints_allow():
    occupancy = np.zeros((1, 5, 9))
    for t, u in enumerate([0, 2, 4, 6, 8]):  # a diagonal path, two labels per frame
        occupancy[0, t, u] = 1.0
    starts = transducer.prune_ranges(jnp.asarray(occupancy), jnp.array([5]), jnp.array([8]), 3)
    assert starts.tolist() == [[0, 0, 2, 4, 6]]  # band [s, s + 3) holds u at every frame; s_0 = 0


def test_bad_arguments_are_errors_naming_them():
    enc, pred, kernel, am, lm, labels, frames, label_lengths = lattice()
    with pytest.raises(ValueError, match="prune_range must be >= 2"):
        transducer.rnnt_loss_pruned(enc, pred, joint(kernel), am, lm, labels, frames, label_lengths, 1)
    with pytest.raises(ValueError, match="simple_lm must be"):
        transducer.rnnt_loss_pruned(enc, pred, joint(kernel), am, lm[:, :-1], labels, frames, label_lengths, 2)


def rnnt(**head):
    return make_rnnt(V, encoder_layers=1, encoder_hidden_size=8, frame_stack=1, predictor_embed_dim=4,
                     predictor_hidden_size=8, joint_dim=J, **head)


def test_a_transducer_with_a_full_width_band_and_no_simple_term_has_the_full_models_loss():
    feats, lengths = jax.random.normal(jax.random.key(1), (B, T, 80)), jnp.array([6, 4, 5])
    labels, label_lengths = jax.random.randint(jax.random.key(2), (B, U), 1, V), jnp.array([4, 2, 0])
    pruned_model, full_model = rnnt(prune_range=U + 1, simple_loss_scale=0.0), rnnt()
    params = pruned_model.init(jax.random.key(0), feats, lengths, labels, label_lengths)["params"]
    assert {"simple_am", "simple_lm"} <= set(params) and "simple_am" not in full_model.init(
        jax.random.key(0), feats, lengths, labels, label_lengths)["params"]
    shared = {k: v for k, v in params.items() if not k.startswith("simple_")}
    np.testing.assert_allclose(pruned_model.apply({"params": params}, feats, lengths, labels, label_lengths),
                               full_model.apply({"params": shared}, feats, lengths, labels, label_lengths), rtol=1e-5)


def test_a_transducer_with_a_narrow_band_trains_every_part_including_the_trivial_joiner():
    feats, lengths = jax.random.normal(jax.random.key(1), (B, T, 80)), jnp.array([6, 4, 5])
    labels, label_lengths = jax.random.randint(jax.random.key(2), (B, U), 1, V), jnp.array([4, 2, 0])
    model = rnnt(prune_range=2)
    params = model.init(jax.random.key(0), feats, lengths, labels, label_lengths)["params"]
    grads = jax.grad(lambda p: model.apply({"params": p}, feats, lengths, labels, label_lengths).sum())(params)
    norms = {k: float(jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree_util.tree_leaves(v)))) for k, v in grads.items()}
    assert all(np.isfinite(n) and n > 0 for n in norms.values()), norms
    with pytest.raises(ValueError, match="prune_range=1"):
        rnnt(prune_range=1).init(jax.random.key(0), feats, lengths, labels, label_lengths)
