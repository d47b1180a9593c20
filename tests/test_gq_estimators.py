"""GQ's gradient estimators (`GQConfig.estimator`) against explicitly written reference functions."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import gq_jax
from gq_jax.assignment import assign, nearest_index, soft_value
from training import config as config_lib


def _expand_slope(x, mu):
    return jax.jvp(lambda y: gq_jax.expand(y, mu), (x,), (jnp.ones_like(x),))[1]


def reference(v, c, alpha_forward, alpha_backward, hard, distance, window, mu):
    """Forward: expand(v̂) (hard) or expand(ṽ at α_forward); gradient: expand' at that point times
    the autodiff Jacobian of the soft value ṽ at α_backward (a plain differentiable function)."""
    soft_forward = soft_value(v, c, alpha_forward, distance=distance, window=window)
    point = jax.lax.stop_gradient(c[nearest_index(v, c)] if hard else soft_forward)
    soft_backward = soft_value(v, c, alpha_backward, distance=distance, window=window)
    return gq_jax.expand(point, mu) + _expand_slope(point, mu) * (
        soft_backward - jax.lax.stop_gradient(soft_backward))


def _inputs(seed=0, n=400, k=16):
    rng = np.random.default_rng(seed)
    v = jnp.asarray(rng.uniform(-1, 1, size=n), jnp.float32)
    c = jnp.sort(jnp.asarray(rng.uniform(-1, 1, size=k), jnp.float32))
    return v, c, jnp.asarray(rng.normal(size=n), jnp.float32)


def _grads(fn, v, c, cotangent):
    return jax.grad(lambda v, c: jnp.vdot(fn(v, c), cotangent), (0, 1))(v, c)


def _assert_close(got, want, rtol=2e-4, atol=2e-4):
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=rtol, atol=atol)


@pytest.mark.parametrize("hard", [True, False])
@pytest.mark.parametrize("window", [None, 2])
@pytest.mark.parametrize("alpha", [3.0, 40.0])
def test_capped_alpha_is_the_soft_jacobian_at_the_smaller_of_alpha_and_alpha_b(hard, window, alpha):
    v, c, cotangent = _inputs(1)
    cap, mu = 8.0, 8.0
    custom = lambda v, c: assign(v, c, jnp.float32(alpha), hard, "sq", window, mu, "capped_alpha", cap)
    want_fn = lambda v, c: reference(v, c, jnp.float32(alpha), jnp.float32(min(alpha, cap)), hard, "sq",
                                     window, mu)
    np.testing.assert_allclose(np.asarray(custom(v, c)), np.asarray(want_fn(v, c)), rtol=1e-5, atol=1e-6)
    _assert_close(_grads(custom, v, c, cotangent), _grads(want_fn, v, c, cotangent))


@pytest.mark.parametrize("distance", ["sq", "abs"])
@pytest.mark.parametrize("window", [None, 2])
def test_soft_jacobian_estimator_is_the_soft_functions_jacobian_at_the_forward_alpha(distance, window):
    v, c, cotangent = _inputs(2)
    alpha, mu = jnp.float32(6.0), 255.0
    custom = lambda v, c: assign(v, c, alpha, True, distance, window, mu, "soft_jacobian")
    want_fn = lambda v, c: reference(v, c, alpha, alpha, True, distance, window, mu)
    _assert_close(_grads(custom, v, c, cotangent), _grads(want_fn, v, c, cotangent))


@pytest.mark.parametrize("hard", [True, False])
@pytest.mark.parametrize("mu", [0.0, 8.0, 255.0])
def test_straight_through_is_the_identity_in_u_for_the_weights_and_the_soft_jacobian_for_centroids(hard, mu):
    v, c, cotangent = _inputs(3)
    alpha = jnp.float32(30.0)
    grad_v, grad_c = _grads(lambda v, c: assign(v, c, alpha, hard, "sq", 4, mu, "straight_through"),
                            v, c, cotangent)
    want_v = jax.grad(lambda v: jnp.vdot(gq_jax.expand(v, mu), cotangent))(v)  # û = u = expand(v)
    _, want_c = _grads(lambda v, c: reference(v, c, alpha, alpha, hard, "sq", 4, mu), v, c, cotangent)
    _assert_close((grad_v, grad_c), (want_v, want_c))


@pytest.mark.parametrize("granularity", ["tensor", "channel"])
@pytest.mark.parametrize("alpha", [5.0, 500.0])
def test_straight_through_passes_the_upstream_gradient_to_the_latent_weights_unchanged(granularity, alpha):
    rng = np.random.default_rng(4)
    params = {"dense": {"kernel": jnp.asarray(rng.normal(size=(32, 24)), jnp.float32),
                        "bias": jnp.asarray(rng.normal(size=(24,)), jnp.float32)}}
    upstream = jnp.asarray(rng.normal(size=(32, 24)), jnp.float32)
    config = gq_jax.GQConfig([gq_jax.Rule(".*kernel", 4, granularity)], estimator="straight_through")
    state = gq_jax.init(params, config)
    loss = lambda p: jnp.vdot(upstream, gq_jax.quantize_params(p, state, config, alpha)["dense"]["kernel"])
    grad = jax.jit(jax.grad(loss))(params)["dense"]["kernel"]
    np.testing.assert_allclose(np.asarray(grad), np.asarray(upstream), rtol=1e-5, atol=1e-6)


def test_capped_alpha_at_a_hard_alpha_gives_the_gradient_of_the_soft_start():
    """With a hard forward, the forward is the same at every α, so capping the backward at α_b = 5
    makes the gradients at α = 500 those of the soft Jacobian at α = 5."""
    params = {"kernel": jax.random.normal(jax.random.key(0), (64, 32))}
    upstream = jax.random.normal(jax.random.key(1), (64, 32))
    rules = [gq_jax.Rule("kernel", 4, "channel")]

    def grads(config, alpha):
        state = gq_jax.init(params, config)
        loss = lambda p, s: jnp.vdot(upstream, gq_jax.quantize_params(p, s, config, alpha)["kernel"])
        return jax.grad(loss, (0, 1))(params, state)

    capped = grads(gq_jax.GQConfig(rules, estimator="capped_alpha", backward_alpha=5.0), 500.0)
    soft_start = grads(gq_jax.GQConfig(rules, estimator="soft_jacobian"), 5.0)
    soft_hard = grads(gq_jax.GQConfig(rules, estimator="soft_jacobian"), 500.0)
    for got, want in zip(jax.tree_util.tree_leaves(capped), jax.tree_util.tree_leaves(soft_start)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
    ratio = lambda g: np.abs(np.asarray(g[0]["kernel"])) / np.abs(np.asarray(upstream))
    assert np.mean(ratio(capped) >= 0.1) > 0.9 > 0.1 > np.mean(ratio(soft_hard) >= 0.1)


@pytest.mark.parametrize("field, value, message", [
    ("estimator", "identity", "GQConfig.estimator must be one of"),
    ("backward_alpha", 0.0, "GQConfig.backward_alpha must be a finite number > 0"),
    ("backward_alpha", float("inf"), "GQConfig.backward_alpha must be a finite number > 0"),
])
def test_bad_estimator_settings_are_an_error_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        gq_jax.GQConfig([gq_jax.Rule(".*kernel", 4)], **{field: value})


def test_the_config_section_sets_the_estimator_and_older_configs_keep_the_soft_jacobian():
    from configs import default

    quant = default.get_config().quant
    assert config_lib.gq_config(quant).estimator == gq_jax.GQConfig.estimator == "straight_through"
    quant.estimator, quant.backward_alpha = "capped_alpha", 12.0
    made = config_lib.gq_config(quant)
    assert (made.estimator, made.backward_alpha) == ("capped_alpha", 12.0)
    older = ml_collections.ConfigDict({k: v for k, v in quant.to_dict().items()
                                       if k not in ("estimator", "backward_alpha")})
    made = config_lib.gq_config(older)
    assert (made.estimator, made.backward_alpha) == (config_lib.LEGACY_ESTIMATOR, gq_jax.GQConfig.backward_alpha)
    assert config_lib.LEGACY_ESTIMATOR == "soft_jacobian"  # the backward such a workdir trained with
