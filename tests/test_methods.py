"""The quantizer protocol (gq_jax/methods.py): builders bind hyper-parameters, `update` snaps every
F steps inside `jit`, and `export` is the one path to the shipped tree and its sizes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gq_jax


def _params() -> dict:
    rng = np.random.default_rng(4)
    return {"dense": {"kernel": jnp.asarray(rng.normal(size=(24, 8)), jnp.float32),
                      "bias": jnp.asarray(rng.normal(size=(8,)), jnp.float32)},
            "conv": {"kernel": jnp.asarray(rng.normal(size=(3, 4, 6)), jnp.float32)}}


CONFIG = gq_jax.GQConfig([gq_jax.Rule(".*kernel", 2, "channel")], mode="soft")


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_gq_is_the_functional_api_with_config_and_alpha_schedule_bound():
    params, schedule = _params(), gq_jax.schedules.exponential(1.0, 100.0, 0, 10)
    quantizer = gq_jax.gq(CONFIG, alpha=schedule)
    state = quantizer.init(params)
    assert_trees_equal(state, gq_jax.init(params, CONFIG))
    for step in (0, 5, 10):
        assert_trees_equal(quantizer.apply(params, state, step),
                           gq_jax.quantize_params(params, state, CONFIG, schedule(step)))
    assert_trees_equal(quantizer.harden(params, state), gq_jax.harden(params, state, CONFIG))
    constant = gq_jax.gq(CONFIG, alpha=7.0)
    assert_trees_equal(constant.apply(params, state, 3), gq_jax.quantize_params(params, state, CONFIG, 7.0))


def test_update_projects_the_centroids_and_snaps_after_every_fth_step_inside_one_jit_trace():
    params = _params()
    quantizer = gq_jax.gq(CONFIG, alpha=1.0, snap_every=3)
    state = quantizer.init(params)
    state = gq_jax.QuantState({k: c[::-1] * 1.5 for k, c in state.centroids.items()})  # unsorted, outside ±1
    projected = gq_jax.project_centroids(state)
    traces = []

    @jax.jit
    def update(state, params, step):
        traces.append(step)
        return quantizer.update(state, params, step)

    for step in range(1, 8):
        new_state, new_params = update(state, params, step)
        assert_trees_equal(new_state, projected)
        expected = gq_jax.snap(params, projected, CONFIG) if step % 3 == 0 else params
        for a, b in zip(jax.tree.leaves(new_params), jax.tree.leaves(expected)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
        assert step % 3 == 0 or all(np.array_equal(a, b) for a, b in
                                    zip(jax.tree.leaves(new_params), jax.tree.leaves(params)))
    assert not np.array_equal(np.asarray(gq_jax.snap(params, projected, CONFIG)["dense"]["kernel"]),
                              np.asarray(params["dense"]["kernel"]))
    assert len(traces) == 1


def test_without_snap_every_update_never_changes_the_weights():
    params = _params()
    for quantizer in (gq_jax.gq(CONFIG, alpha=1.0), gq_jax.uniform_ste(CONFIG)):
        state = quantizer.init(params)
        for step in (1, 3, 100):
            assert quantizer.update(state, params, step)[1] is params


def test_uniform_ste_snaps_to_its_own_hard_values():
    params = _params()
    quantizer = gq_jax.uniform_ste(CONFIG, snap_every=2)
    state = quantizer.init(params)
    _, snapped = quantizer.update(state, params, 2)
    hard = gq_jax.dequantize(quantizer.harden(params, state))
    assert_trees_equal(snapped, gq_jax.snap_to(params, hard, CONFIG))


@pytest.mark.parametrize("name", ["identity", "ptq_round", "ptq_kmeans"])
def test_float_and_post_training_methods_train_the_float_weights_unchanged(name):
    params = _params()
    quantizer = gq_jax.identity() if name == "identity" else getattr(gq_jax, name)(CONFIG)
    state = quantizer.init(params)
    assert state == gq_jax.QuantState({})
    assert quantizer.apply(params, state, 5) is params
    assert quantizer.update(state, params, 5) == (state, params)
    exported = gq_jax.export(quantizer, params, state)
    if name == "identity":
        assert exported.hardened is params and exported.sizes.quantized_weights == 0
    else:
        assert exported.sizes.quantized_leaves == ("conv/kernel", "dense/kernel")
        assert exported.sizes.float_leaves == ("dense/bias",) and exported.sizes.average_bits == 2.0


@pytest.mark.parametrize("name", ["gq", "uniform_ste", "ptq_round", "ptq_kmeans", "identity"])
def test_export_is_the_hardened_tree_its_dequantized_params_and_its_size_report(name):
    params = _params()
    quantizer = {"gq": lambda: gq_jax.gq(CONFIG, alpha=1.0), "identity": gq_jax.identity}.get(
        name, lambda: getattr(gq_jax, name)(CONFIG))()
    state = quantizer.init(params)
    hardened, dequantized, sizes = gq_jax.export(quantizer, params, state)
    assert_trees_equal(hardened, quantizer.harden(params, state))
    assert_trees_equal(dequantized, gq_jax.dequantize(hardened))
    assert sizes == gq_jax.size_report(hardened)
    assert jax.tree.structure(dequantized) == jax.tree.structure(params)


def test_a_custom_quantizer_is_any_four_functions_and_exports_like_the_others():
    """Sign quantization with a straight-through gradient, from the public pieces only."""
    config = gq_jax.GQConfig([gq_jax.Rule(".*kernel", 1)], mu=0.0)
    init = lambda params: gq_jax.QuantState(
        {leaf.path: jnp.array([-1.0, 1.0]) for leaf in gq_jax.summary(params, config).leaves if leaf.rule})
    apply = lambda params, state, step: jax.tree.map(
        lambda w, q: w + jax.lax.stop_gradient(q - w), params,
        gq_jax.quantize_params(params, state, config, 1.0, hard=True))
    quantizer = gq_jax.Quantizer(init, apply, lambda state, params, step: (state, params),
                                 lambda params, state: gq_jax.harden(params, state, config))
    params = _params()
    exported = gq_jax.export(quantizer, params, quantizer.init(params))
    kernel, w = np.asarray(exported.params["dense"]["kernel"]), np.asarray(params["dense"]["kernel"])
    np.testing.assert_allclose(kernel, np.sign(w) * np.abs(w).max(), rtol=1e-6)
    grads = jax.grad(lambda p: jnp.sum(quantizer.apply(p, quantizer.init(p), 0)["dense"]["kernel"]))(params)
    np.testing.assert_array_equal(np.asarray(grads["dense"]["kernel"]), 1.0)


@pytest.mark.parametrize("make, message", [
    (lambda: gq_jax.gq(CONFIG, alpha=1.0, snap_every=-1), "snap_every must be an int >= 0"),
    (lambda: gq_jax.uniform_ste(CONFIG, snap_every=2.5), "snap_every must be an int >= 0"),
    (lambda: gq_jax.gq(CONFIG, alpha=0.0), "alpha must be a number > 0"),
])
def test_bad_hyper_parameters_are_an_error_naming_them(make, message):
    with pytest.raises(ValueError, match=message):
        make()
