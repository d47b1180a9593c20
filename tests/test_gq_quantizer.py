"""Properties of the GQ quantizer: hard values, soft-to-hard limit, custom VJP, learning, memory form."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gq_jax
from gq_jax.assignment import assign, soft_value


def _params(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "encoder": {
            "lstm_0": {"kernel": jnp.asarray(rng.normal(size=(24, 16)), jnp.float32)},
            "lstm_1": {"kernel": jnp.asarray(rng.normal(size=(16, 16)), jnp.float32)},
            "bias": jnp.asarray(rng.normal(size=(16,)), jnp.float32),
        },
        "embed": {"embedding": jnp.asarray(rng.normal(size=(10, 8)), jnp.bfloat16)},
    }


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_hard_output_lies_in_the_codebook(bits, granularity):
    params = _params()
    config = gq_jax.GQConfig([gq_jax.Rule(".*kernel", bits, granularity)], mu=255.0)
    state = gq_jax.init(params, config)
    quantized = gq_jax.quantize_params(params, state, config, alpha=3.0)
    for name in ("lstm_0", "lstm_1"):
        w = params["encoder"][name]["kernel"]
        q = np.asarray(quantized["encoder"][name]["kernel"])
        c = state.centroids[f"encoder/{name}/kernel"]
        columns = q.T if granularity == "channel" else q.reshape(1, -1)
        scales = np.abs(np.asarray(w)).max(axis=0) if granularity == "channel" else [np.abs(w).max()]
        for column, s in zip(columns, scales):
            allowed = np.asarray(gq_jax.expand(c, 255.0)) * s
            assert len(np.unique(column)) <= 2**bits
            assert np.all(np.min(np.abs(column[:, None] - allowed[None, :]), axis=1) <= 1e-6 * s)
    assert quantized["encoder"]["bias"] is params["encoder"]["bias"]


def test_structure_shapes_and_dtypes_are_preserved():
    params = _params()
    config = gq_jax.GQConfig([gq_jax.Rule(".*(kernel|embedding)", 4)])
    quantized = gq_jax.quantize_params(params, gq_jax.init(params, config), config, 1.0)
    assert jax.tree.structure(quantized) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(quantized)):
        assert a.shape == b.shape and a.dtype == b.dtype


def test_hard_value_is_the_nearest_centroid():
    rng = np.random.default_rng(1)
    v = jnp.asarray(rng.uniform(-1, 1, size=500), jnp.float32)
    c = jnp.sort(jnp.asarray(rng.uniform(-1, 1, size=16), jnp.float32))
    hard = assign(v, c, jnp.float32(1.0), True, "sq", None, 0.0)
    brute = np.asarray(c)[np.argmin(np.abs(np.asarray(v)[:, None] - np.asarray(c)[None]), axis=1)]
    np.testing.assert_array_equal(np.asarray(hard), brute)


@pytest.mark.parametrize("distance", ["sq", "abs"])
def test_soft_value_tends_to_the_hard_value_as_alpha_grows(distance):
    rng = np.random.default_rng(2)
    v = jnp.asarray(rng.uniform(-1, 1, size=400), jnp.float32)
    c = jnp.linspace(-1, 1, 8)
    hard = assign(v, c, jnp.float32(0.0), True, distance, None, 0.0)
    errors = [
        float(jnp.max(jnp.abs(soft_value(v, c, jnp.float32(a), distance=distance) - hard)))
        for a in (1.0, 10.0, 100.0, 1000.0)
    ]
    assert errors == sorted(errors, reverse=True)
    # At alpha = 1000 only weights within ~1e-3 spacing of a midpoint are still undecided.
    distances_to_mid = np.abs(np.asarray(v)[:, None] - ((np.asarray(c)[1:] + np.asarray(c)[:-1]) / 2))
    decided = distances_to_mid.min(axis=1) > 0.02
    final = np.abs(np.asarray(soft_value(v, c, jnp.float32(1000.0), distance=distance) - hard))
    assert final[decided].max() < 1e-5


@pytest.mark.parametrize("distance", ["sq", "abs"])
@pytest.mark.parametrize("window", [None, 2])
def test_custom_vjp_equals_autodiff_of_the_soft_function(distance, window):
    rng = np.random.default_rng(3)
    v = jnp.asarray(rng.uniform(-1, 1, size=300), jnp.float32)
    c = jnp.sort(jnp.asarray(rng.uniform(-1, 1, size=16), jnp.float32))
    cotangent = jnp.asarray(rng.normal(size=300), jnp.float32)
    alpha = jnp.float32(4.0)
    mu = 255.0

    def custom(v, c):
        return jnp.vdot(assign(v, c, alpha, False, distance, window, mu), cotangent)

    def reference(v, c):
        out = gq_jax.expand(soft_value(v, c, alpha, distance=distance, window=window), mu)
        return jnp.vdot(out, cotangent)

    got, want = jax.grad(custom, (0, 1))(v, c), jax.grad(reference, (0, 1))(v, c)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=2e-4, atol=2e-4)


def test_ste_backward_is_the_soft_jacobian_at_the_hard_point():
    rng = np.random.default_rng(4)
    v = jnp.asarray(rng.uniform(-1, 1, size=200), jnp.float32)
    c = jnp.linspace(-1, 1, 4)
    alpha = jnp.float32(2.0)
    g_ste = jax.grad(lambda v: jnp.sum(assign(v, c, alpha, True, "sq", None, 0.0)))(v)
    g_soft = jax.grad(lambda v: jnp.sum(soft_value(v, c, alpha)))(v)
    np.testing.assert_allclose(np.asarray(g_ste), np.asarray(g_soft), rtol=1e-5, atol=1e-6)


def test_custom_vjp_matches_finite_differences():
    with jax.enable_x64(True):
        rng = np.random.default_rng(5)
        v = jnp.asarray(rng.uniform(-0.9, 0.9, size=12), jnp.float64)
        c = jnp.sort(jnp.asarray(rng.uniform(-1, 1, size=4), jnp.float64))
        alpha = jnp.float64(3.0)
        f = lambda v, c: jnp.sum(jnp.sin(3.0 * assign(v, c, alpha, False, "sq", None, 10.0)))
        grad_v, grad_c = jax.grad(f, (0, 1))(v, c)
        eps = 1e-6
        for i in range(4):
            e = jnp.zeros_like(c).at[i].set(eps)
            fd = (f(v, c + e) - f(v, c - e)) / (2 * eps)
            np.testing.assert_allclose(float(grad_c[i]), float(fd), rtol=1e-5, atol=1e-8)
        for i in range(0, 12, 3):
            e = jnp.zeros_like(v).at[i].set(eps)
            fd = (f(v + e, c) - f(v - e, c)) / (2 * eps)
            np.testing.assert_allclose(float(grad_v[i]), float(fd), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("bits", [3, 4, 6, 8])
def test_windowed_equals_dense_when_the_window_covers_all_centroids(bits):
    rng = np.random.default_rng(6)
    k = 2**bits
    v = jnp.asarray(rng.uniform(-1, 1, size=1000), jnp.float32)
    c = jnp.sort(jnp.asarray(rng.uniform(-1, 1, size=k), jnp.float32))
    alpha = jnp.float32(1.0)
    dense = soft_value(v, c, alpha, window=None)
    covering = soft_value(v, c, alpha, window=k // 2)
    np.testing.assert_allclose(np.asarray(covering), np.asarray(dense), rtol=0, atol=1e-6)


@pytest.mark.parametrize("alpha", [1.0, 10.0])
def test_windowed_error_is_bounded_by_the_dropped_softmax_mass(alpha):
    rng = np.random.default_rng(7)
    k, window = 256, 4
    v = jnp.asarray(rng.uniform(-1, 1, size=5000), jnp.float32)
    c = jnp.linspace(-1, 1, k)
    dense = soft_value(v, c, jnp.float32(alpha), window=None)
    windowed = soft_value(v, c, jnp.float32(alpha), window=window)
    # Every dropped centroid is at least (window - 1) spacings away, so its unnormalised weight is
    # at most exp(-alpha (window-1)^2) against at least exp(-alpha) for the nearest one; the value
    # moves by at most 2 (the codebook's diameter) times the dropped mass.
    dropped_mass = k * np.exp(-alpha * (window - 1) ** 2) / np.exp(-alpha)
    error = float(jnp.max(jnp.abs(windowed - dense)))
    assert error <= 2 * dropped_mass + 1e-6  # plus float32 rounding
    assert error < 1e-2


def test_windowed_gradients_match_dense_when_the_window_covers_all_centroids():
    rng = np.random.default_rng(8)
    v = jnp.asarray(rng.uniform(-1, 1, size=256), jnp.float32)
    c = jnp.sort(jnp.asarray(rng.uniform(-1, 1, size=16), jnp.float32))
    f = lambda v, c, w: jnp.sum(assign(v, c, jnp.float32(2.0), True, "sq", w, 255.0) ** 2)
    dense = jax.grad(f, (0, 1))(v, c, None)
    # window=7 is the windowed code path (2w = 14 < 16) and must agree to the dropped mass.
    windowed = jax.grad(f, (0, 1))(v, c, 7)
    for a, b in zip(dense, windowed):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-4)


def test_gradients_reach_weights_and_centroids_and_training_moves_the_centroids():
    """Fine-tune a float-optimal linear regression at 2 bits: QAT beats its own starting point."""
    rng = np.random.default_rng(9)
    x = jnp.asarray(rng.normal(size=(256, 16)), jnp.float32)
    float_w = jnp.asarray(rng.normal(size=(16, 1)), jnp.float32)
    y = x @ float_w
    params = {"dense": {"kernel": float_w}}
    config = gq_jax.GQConfig([gq_jax.Rule(".*kernel", 2)], mu=255.0, mode="ste", init="uniform")
    state = gq_jax.init(params, config)
    optimizer = optax.adam(1e-2)

    def loss(trainable, hard=False):
        p, s = trainable
        q = gq_jax.quantize_params(p, s, config, alpha=5.0, hard=hard)
        return jnp.mean((x @ q["dense"]["kernel"] - y) ** 2)

    @jax.jit
    def step(trainable, opt_state):
        grads = jax.grad(loss)(trainable)
        updates, opt_state = optimizer.update(grads, opt_state)
        p, s = optax.apply_updates(trainable, updates)
        return (p, gq_jax.project_centroids(s)), opt_state, grads

    trainable, opt_state = (params, state), optimizer.init((params, state))
    start_loss = float(loss(trainable, hard=True))
    for i in range(300):
        trainable, opt_state, grads = step(trainable, opt_state)
        if i == 0:
            assert float(jnp.abs(grads[0]["dense"]["kernel"]).sum()) > 0
            assert float(jnp.abs(grads[1].centroids["dense/kernel"]).sum()) > 0
    before = np.asarray(state.centroids["dense/kernel"])
    after = np.asarray(trainable[1].centroids["dense/kernel"])
    assert np.abs(after - before).max() > 0.05
    assert np.all(np.diff(after) >= 0) and np.all(np.abs(after) <= 1.0)
    assert float(loss(trainable, hard=True)) < 0.5 * start_loss


def test_one_bit_uses_two_learned_centroids():
    params = _params()
    config = gq_jax.GQConfig([gq_jax.Rule(".*kernel", 1)], init="kmeans", mu=0.0)
    state = gq_jax.init(params, config)
    c = np.asarray(state.centroids["encoder/lstm_0/kernel"])
    assert c.shape == (2,) and c[0] < 0 < c[1]
    q = np.asarray(gq_jax.quantize_params(params, state, config, 1.0)["encoder"]["lstm_0"]["kernel"])
    assert len(np.unique(q)) == 2
    w = np.asarray(params["encoder"]["lstm_0"]["kernel"])
    np.testing.assert_array_equal(np.sign(q), np.sign(w))


def test_kmeans_init_centroids_are_the_cluster_means():
    params = _params()
    config = gq_jax.GQConfig([gq_jax.Rule("encoder/lstm_0/kernel", 2)], init="kmeans", mu=0.0)
    c = np.asarray(gq_jax.init(params, config).centroids["encoder/lstm_0/kernel"])
    u = np.asarray(params["encoder"]["lstm_0"]["kernel"]).ravel()
    u = u / np.abs(u).max()
    labels = np.argmin(np.abs(u[:, None] - c[None]), axis=1)
    np.testing.assert_allclose(c, [u[labels == k].mean() for k in range(4)], atol=1e-5)


@pytest.mark.parametrize("mu", [0.0, 5.0, 255.0])
def test_mu_law_round_trip(mu):
    u = jnp.linspace(-1, 1, 1001)
    v = gq_jax.compress(u, mu)
    assert float(jnp.max(jnp.abs(v))) <= 1.0 + 1e-6
    np.testing.assert_allclose(np.asarray(gq_jax.expand(v, mu)), np.asarray(u), atol=2e-6)
    slope_at_zero = jax.grad(lambda x: gq_jax.compress(x, mu))(0.0)
    expected = 1.0 if mu == 0 else mu / np.log1p(mu)
    np.testing.assert_allclose(float(slope_at_zero), expected, rtol=1e-5)


def test_snap_sets_latent_weights_to_their_hard_values_except_each_scales_max_weight():
    params = _params()
    config = gq_jax.GQConfig([gq_jax.Rule(".*kernel", 3)], mode="soft")
    state = gq_jax.init(params, config)
    snapped = gq_jax.snap(params, state, config)
    hard = gq_jax.quantize_params(params, state, config, 1.0, hard=True)
    soft = gq_jax.quantize_params(params, state, config, 1.0)
    get = lambda t: np.asarray(t["encoder"]["lstm_0"]["kernel"])
    sets_scale = np.abs(get(params)) == np.abs(get(params)).max()
    assert sets_scale.sum() == 1
    np.testing.assert_array_equal(get(snapped)[~sets_scale], get(hard)[~sets_scale])
    np.testing.assert_array_equal(get(snapped)[sets_scale], get(params)[sets_scale])
    assert not np.array_equal(get(soft), get(hard))
    np.testing.assert_array_equal(snapped["encoder"]["bias"], params["encoder"]["bias"])


@pytest.mark.parametrize("granularity", ["tensor", "channel"])
@pytest.mark.parametrize("bits", [1, 2, 4])
def test_a_snap_leaves_the_hard_forward_unchanged_and_a_second_snap_changes_nothing(bits, granularity):
    """k-means centroids stay inside ±1, where snapping the scale-setting weights too would shrink
    every scale and move weights to other centroids."""
    params = _params()
    config = gq_jax.GQConfig([gq_jax.Rule(".*(kernel|embedding)", bits, granularity)], init="kmeans")
    state = gq_jax.init(params, config)
    assert max(float(jnp.max(jnp.abs(c))) for c in state.centroids.values()) < 1.0
    hard = lambda tree: gq_jax.quantize_params(tree, state, config, 1.0, hard=True)
    snapped = gq_jax.snap(params, state, config)
    for before, after in zip(jax.tree.leaves(hard(params)), jax.tree.leaves(hard(snapped))):
        np.testing.assert_allclose(np.asarray(after, np.float32), np.asarray(before, np.float32), rtol=1e-5)
    for once, twice in zip(jax.tree.leaves(snapped), jax.tree.leaves(gq_jax.snap(snapped, state, config))):
        np.testing.assert_allclose(np.asarray(twice, np.float32), np.asarray(once, np.float32), rtol=1e-5)


def test_project_centroids_sorts_and_clips():
    state = gq_jax.QuantState({"a": jnp.array([0.5, -2.0, 3.0, 0.1])})
    np.testing.assert_allclose(
        np.asarray(gq_jax.project_centroids(state).centroids["a"]), [-1.0, 0.1, 0.5, 1.0], rtol=1e-6
    )


def test_works_under_jit_vmap_and_pmap():
    params = _params()
    config = gq_jax.GQConfig([gq_jax.Rule(".*kernel", 4)])
    state = gq_jax.init(params, config)
    eager = gq_jax.quantize_params(params, state, config, 2.0)
    jitted = jax.jit(gq_jax.quantize_params, static_argnums=2)(params, state, config, 2.0)
    kernel = lambda t: np.asarray(t["encoder"]["lstm_0"]["kernel"])
    np.testing.assert_allclose(kernel(jitted), kernel(eager), rtol=1e-6)
    stacked = jax.tree.map(lambda x: jnp.stack([x, 2 * x]), params)
    vmapped = jax.vmap(lambda p: gq_jax.quantize_params(p, state, config, 2.0))(stacked)
    np.testing.assert_allclose(kernel(vmapped)[0], kernel(eager), rtol=1e-6)
    np.testing.assert_allclose(kernel(vmapped)[1], 2 * kernel(eager), rtol=1e-6)
    n = jax.local_device_count()
    replicated = jax.tree.map(lambda x: jnp.stack([x] * n), (params, state))
    pmapped = jax.pmap(
        lambda p, s: jax.grad(
            lambda p: jnp.sum(gq_jax.quantize_params(p, s, config, 2.0)["encoder"]["lstm_0"]["kernel"])
        )(p)
    )(*replicated)
    assert np.isfinite(np.asarray(pmapped["encoder"]["lstm_0"]["kernel"])).all()


def test_alpha_is_traced_so_a_schedule_does_not_recompile():
    params = _params()
    config = gq_jax.GQConfig([gq_jax.Rule(".*kernel", 2)], mode="soft")
    state = gq_jax.init(params, config)
    schedule = gq_jax.schedules.exponential(1.0, 500.0, 0, 100)
    traces = []

    @jax.jit
    def f(params, step):
        traces.append(1)
        return gq_jax.quantize_params(params, state, config, schedule(step))

    for step in (0, 50, 100):
        f(params, step)
    assert len(traces) == 1


def test_schedules_hit_their_end_points_and_are_monotonic():
    for schedule in (
        gq_jax.schedules.linear(1.0, 100.0, 10, 20),
        gq_jax.schedules.exponential(1.0, 100.0, 10, 20),
    ):
        values = [float(schedule(t)) for t in range(0, 30)]
        assert values[0] == pytest.approx(1.0) and values[-1] == pytest.approx(100.0)
        assert values == sorted(values)
    assert float(gq_jax.schedules.exponential(1.0, 100.0, 0, 2)(1)) == pytest.approx(10.0)
    assert float(gq_jax.schedules.constant(7.0)(123)) == 7.0
    with pytest.raises(ValueError, match="end_step"):
        gq_jax.schedules.linear(1.0, 2.0, 5, 5)


def test_schedules_are_the_optax_schedules_they_name_and_any_optax_schedule_composes():
    steps = jnp.arange(0, 40)
    values = lambda schedule: np.asarray(jax.vmap(schedule)(steps))
    np.testing.assert_array_equal(
        values(gq_jax.schedules.exponential(1.0, 100.0, 10, 20)),
        values(optax.exponential_decay(1.0, 10, 100.0, transition_begin=10, end_value=100.0)))
    np.testing.assert_array_equal(values(gq_jax.schedules.linear(1.0, 100.0, 10, 20)),
                                  values(optax.linear_schedule(1.0, 100.0, 10, transition_begin=10)))
    p = np.clip((np.arange(0, 40) - 10) / 10, 0, 1)  # the closed forms, in float64
    np.testing.assert_allclose(values(gq_jax.schedules.exponential(1.0, 100.0, 10, 20)), 100.0**p, rtol=1e-6)
    np.testing.assert_allclose(values(gq_jax.schedules.linear(1.0, 100.0, 10, 20)), 1 + 99 * p, rtol=1e-6)
    joined = optax.join_schedules([gq_jax.schedules.constant(1.0), gq_jax.schedules.linear(1.0, 10.0, 0, 10)], [5])
    assert float(joined(3)) == 1.0 and float(joined(15)) == 10.0


def test_auto_init_uses_kmeans_at_two_bits_or_fewer_and_the_grid_above():
    params = _params()
    for bits in (1, 2, 3, 4):
        rules = [gq_jax.Rule("encoder/lstm_0/kernel", bits)]
        auto = gq_jax.init(params, gq_jax.GQConfig(rules, init="auto")).centroids
        expected_init = "kmeans" if bits <= 2 else "uniform"
        expected = gq_jax.init(params, gq_jax.GQConfig(rules, init=expected_init)).centroids
        np.testing.assert_array_equal(
            np.asarray(auto["encoder/lstm_0/kernel"]), np.asarray(expected["encoder/lstm_0/kernel"])
        )


# Scales per output channel: one kernel of each kind, (path, shape, its output axes by hand).
KERNEL_KINDS = {
    "dense": ("ff/hidden/kernel", (12, 20), (1,)),
    "dense_general_query": ("attention/query/kernel", (16, 4, 8), (1, 2)),
    "dense_general_position": ("attention/position/kernel", (16, 4, 4), (1, 2)),  # D = heads·head_dim
    "dense_general_key_narrow": ("attention/key/kernel", (16, 2, 4), (1, 2)),
    "dense_general_output": ("attention/output/kernel", (4, 8, 16), (2,)),
    "conv_1d": ("conv/kernel", (3, 6, 10), (2,)),
    "conv_depthwise": ("convolution/depthwise/kernel", (5, 1, 16), (2,)),
    "conv_2d": ("subsampling/conv_0/kernel", (3, 3, 2, 6), (3,)),
    "embed": ("predictor/embedding/embedding", (29, 8), (1,)),
    "lstm": ("predictor/lstm_0/input_kernel", (8, 32), (1,)),
    "bias": ("ff/hidden/bias", (20,), ()),
}


def _leaf_tree(path: str, shape: tuple[int, ...], seed: int = 0) -> dict:
    w = jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)
    tree = w
    for key in reversed(path.split("/")):
        tree = {key: tree}
    return tree


def _get(tree: dict, path: str):
    for key in path.split("/"):
        tree = tree[key]
    return tree


def _brute_force_scales(w: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """max|W| of every channel, by enumerating the channels: [prod of the channel axes' sizes]."""
    others = [a for a in range(w.ndim) if a not in axes]
    channels = np.transpose(np.abs(w), others + list(axes)).reshape(-1, int(np.prod([w.shape[a] for a in axes])))
    return channels.max(axis=0)


@pytest.mark.parametrize("kind", sorted(KERNEL_KINDS))
def test_default_channel_scales_are_one_per_output_channel_of_each_kernel_kind(kind):
    path, shape, axes = KERNEL_KINDS[kind]
    assert gq_jax.default_channel_axes(path, shape) == axes
    params = _leaf_tree(path, shape)
    config = gq_jax.GQConfig([gq_jax.Rule(".*", 4, "channel")])
    (plan,) = gq_jax.summary(params, config).leaves
    assert plan.channel_axes == axes and plan.num_scales == int(np.prod([shape[a] for a in axes]))
    hardened = _get(gq_jax.harden(params, gq_jax.init(params, config), config), path)
    w = np.asarray(_get(params, path))
    np.testing.assert_array_equal(np.asarray(hardened.scale).ravel(), _brute_force_scales(w, axes))
    # Every channel keeps its own scale: the largest weight of each channel is exactly ±its scale.
    restored = np.asarray(gq_jax.dequantize(hardened))
    np.testing.assert_array_equal(_brute_force_scales(restored, axes), _brute_force_scales(w, axes))


def test_a_head_scaled_up_changes_only_that_heads_scales():
    path, shape, _ = KERNEL_KINDS["dense_general_query"]
    params = _leaf_tree(path, shape)
    louder = jax.tree.map(lambda w: w.at[:, 2].multiply(10.0), params)
    config = gq_jax.GQConfig([gq_jax.Rule(".*", 4, "channel")])
    scales = [np.asarray(_get(gq_jax.harden(p, gq_jax.init(p, config), config), path).scale) for p in (params, louder)]
    assert scales[0].shape == (4, 8)
    np.testing.assert_allclose(scales[1][2], 10.0 * scales[0][2], rtol=1e-6)
    np.testing.assert_array_equal(np.delete(scales[1], 2, axis=0), np.delete(scales[0], 2, axis=0))


@pytest.mark.parametrize("granularity", ["tensor", "channel"])
@pytest.mark.parametrize("kind", ["dense_general_query", "conv_2d", "embed"])
def test_hard_values_lie_in_each_channels_scaled_codebook_for_gq_and_the_baselines(kind, granularity):
    path, shape, axes = KERNEL_KINDS[kind]
    axes = axes if granularity == "channel" else ()
    params = _leaf_tree(path, shape)
    config = gq_jax.GQConfig([gq_jax.Rule(".*", 3, granularity)], init="kmeans")
    w = np.asarray(_get(params, path))
    scales = _brute_force_scales(w, axes)
    for name, method in (("gq", gq_jax.gq(config, alpha=1.0)), ("uniform_ste", gq_jax.uniform_ste(config)),
                         ("ptq_round", gq_jax.ptq_round(config)), ("ptq_kmeans", gq_jax.ptq_kmeans(config))):
        hardened = _get(method.harden(params, method.init(params)), path)
        others = [a for a in range(w.ndim) if a not in axes]
        values = np.transpose(np.asarray(gq_jax.dequantize(hardened)), others + list(axes))
        columns = values.reshape(-1, len(scales))
        levels = np.asarray(hardened.codebook)
        for column, s in zip(columns.T, scales):
            assert np.abs(column[:, None] - levels[None] * s).min(axis=1).max() <= 1e-6 * s, name
        restored = gq_jax.dequantize(method.harden(params, method.init(params)))
        hard = method.apply(params, method.init(params), 0)
        if name in ("gq", "uniform_ste"):
            np.testing.assert_allclose(np.asarray(_get(restored, path)), np.asarray(_get(hard, path)), rtol=1e-6)


def test_kmeans_init_clusters_the_weights_normalised_by_their_channel_scales():
    path, shape, axes = KERNEL_KINDS["dense_general_query"]
    params = _leaf_tree(path, shape)
    config = gq_jax.GQConfig([gq_jax.Rule(".*", 2, "channel")], init="kmeans", mu=0.0)
    c = np.asarray(gq_jax.init(params, config).centroids[path])
    w = np.asarray(_get(params, path))
    u = (w / np.abs(w).max(axis=0, keepdims=True)).ravel()  # the (head, head_dim) scales
    labels = np.argmin(np.abs(u[:, None] - c[None]), axis=1)
    np.testing.assert_allclose(c, [u[labels == k].mean() for k in range(4)], atol=1e-5)


@pytest.mark.parametrize("bits", [1, 4])
def test_a_snap_keeps_every_multi_axis_scale_and_the_hard_forward(bits):
    path, shape, _ = KERNEL_KINDS["dense_general_query"]
    params = _leaf_tree(path, shape)
    config = gq_jax.GQConfig([gq_jax.Rule(".*", bits, "channel")], init="kmeans")
    state = gq_jax.init(params, config)
    snapped = gq_jax.snap(params, state, config)
    for tree in (params, snapped):
        assert np.asarray(_get(gq_jax.harden(tree, state, config), path).scale).shape == (4, 8)
    np.testing.assert_array_equal(np.asarray(_get(gq_jax.harden(snapped, state, config), path).scale),
                                  np.asarray(_get(gq_jax.harden(params, state, config), path).scale))
    hard = lambda tree: np.asarray(_get(gq_jax.quantize_params(tree, state, config, 1.0, hard=True), path))
    np.testing.assert_allclose(hard(snapped), hard(params), rtol=1e-5)


def test_explicit_channel_axes_override_the_default_and_negative_axes_count_from_the_end():
    path, shape, _ = KERNEL_KINDS["embed"]
    params = _leaf_tree(path, shape)
    for axes, scale_shape in (((0,), (29, 1)), ((-1,), (8,)), ((), ()), ((0, 1), (29, 8))):
        config = gq_jax.GQConfig([gq_jax.Rule(".*", 4, "channel", channel_axes=axes)])
        hardened = _get(gq_jax.harden(params, gq_jax.init(params, config), config), path)
        assert np.shape(hardened.scale) == scale_shape
        normalised = tuple(sorted(a % 2 for a in axes))
        np.testing.assert_array_equal(np.asarray(hardened.scale).ravel(),
                                      _brute_force_scales(np.asarray(_get(params, path)), normalised))
    assert gq_jax.Rule(".*", 4, "channel", channel_axes=[1, 2]).channel_axes == (1, 2)
    # A projection into heads that the default does not recognise (heads·head_dim != D, not named
    # query/key/value) falls back to the last axis; channel_axes says what it is.
    path, shape = "attention/position/kernel", (16, 4, 8)
    assert gq_jax.default_channel_axes(path, shape) == (2,)
    config = gq_jax.GQConfig([gq_jax.Rule(".*", 4, "channel", channel_axes=(1, 2))])
    assert gq_jax.summary(_leaf_tree(path, shape), config).leaves[0].num_scales == 32


@pytest.mark.parametrize("make, message", [
    (lambda: gq_jax.Rule(".*", 4, channel_axes=(1,)), r"channel_axes=\(1,\) needs granularity='channel'"),
    (lambda: gq_jax.Rule(".*", 4, "channel", channel_axes=1), "channel_axes must be None or a tuple"),
    (lambda: gq_jax.Rule(".*", 4, "channel", channel_axes=(1.0,)), "channel_axes must be None or a tuple"),
])
def test_bad_channel_axes_are_an_error_naming_the_rule(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("axes", [(2,), (-3,), (1, -1)])
def test_channel_axes_that_do_not_fit_a_leaf_are_an_error_naming_it(axes):
    params = _leaf_tree("dense/kernel", (6, 4))
    config = gq_jax.GQConfig([gq_jax.Rule(".*", 4, "channel", channel_axes=axes)])
    for call in (lambda: gq_jax.init(params, config), lambda: gq_jax.summary(params, config)):
        with pytest.raises(ValueError, match=r"'dense/kernel' of shape \(6, 4\).*not distinct axes"):
            call()
