"""benchmarks/flops.py counts matmul and convolution flops on the jaxpr, every loop body once per
iteration, where XLA's cost analysis counts a loop body once."""

import jax
import jax.numpy as jnp
import pytest

from benchmarks import flops
from benchmarks.flops import xla_flops


def test_a_matmul_counts_2mnk_as_xla_does():
    a, b = jnp.ones((3, 4)), jnp.ones((4, 5))
    count = flops.matmul_flops(jnp.matmul, a, b)
    assert count == flops.FlopCount(2 * 3 * 4 * 5)
    assert count.flops == xla_flops(jnp.matmul, a, b)


def test_a_batched_contraction_counts_its_batch_and_free_dimensions():
    a, b = jnp.ones((6, 3, 4)), jnp.ones((6, 4, 5))
    assert flops.matmul_flops(lambda x, y: jnp.einsum("bmk,bkn->bmn", x, y), a, b).flops == 2 * 6 * 3 * 4 * 5


def test_a_scan_body_counts_once_per_step_where_xla_counts_it_once():
    w = jnp.ones((3, 3))

    def recurrence(h):
        return jax.lax.scan(lambda c, _: (jnp.tanh(c @ w), None), h, None, length=7)[0]

    h = jnp.ones((2, 3))
    assert flops.matmul_flops(recurrence, h).flops == 7 * 2 * 2 * 3 * 3
    assert xla_flops(recurrence, h) < 2 * (2 * 2 * 3 * 3)  # one body's matmul plus its tanh


def test_the_gradient_of_a_scan_counts_the_forward_and_both_backward_products_per_step():
    w, h = jnp.ones((3, 3)), jnp.ones((2, 3))
    loss = lambda w: jax.lax.scan(lambda c, _: (c @ w, None), h, None, length=5)[0].sum()
    # forward c·W, backward δ·Wᵀ and cᵀ·δ: three [2,3]x[3,3]-sized products per step
    assert flops.matmul_flops(jax.grad(loss), w).flops == 5 * 3 * (2 * 2 * 3 * 3)


def test_a_while_loop_with_literal_bounds_counts_its_trips_and_another_is_flagged():
    w = jnp.ones((4, 4))
    counted = lambda x: jax.lax.while_loop(lambda c: c[0] < 6, lambda c: (c[0] + 1, c[1] @ w), (0, x))[1]
    x = jnp.ones((1, 4))
    assert flops.matmul_flops(counted, x) == flops.FlopCount(6 * 2 * 4 * 4)
    unknown = lambda x: jax.lax.while_loop(lambda c: c[1].sum() < 100.0, lambda c: (c[0], c[1] @ w), (0, x))[1]
    assert flops.matmul_flops(unknown, x) == flops.FlopCount(2 * 4 * 4, uncounted_loops=1)


@pytest.mark.parametrize("groups", [1, 2])
def test_a_convolution_counts_kernel_size_times_input_features_per_group_per_output(groups):
    x, k = jnp.ones((1, 2, 10)), jnp.ones((4, 2 // groups, 3))  # NCW input, OIW kernel
    conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (1,), "VALID", feature_group_count=groups)
    outputs = 1 * 4 * 8
    assert flops.matmul_flops(conv, x, k).flops == 2 * outputs * 3 * (2 // groups)
    assert flops.matmul_flops(conv, x, k).flops == pytest.approx(xla_flops(conv, x, k), rel=0.01)


def test_nested_jits_custom_derivatives_and_conditionals_are_walked():
    w = jnp.ones((3, 3))

    @jax.custom_vjp
    def f(x):
        return x @ w

    f.defvjp(lambda x: (x @ w, None), lambda _, g: (g @ w.T,))
    inner = jax.jit(lambda x: f(x))
    branch = lambda x: jax.lax.cond(x.sum() > 0, lambda y: y @ w @ w, lambda y: y, x)
    x = jnp.ones((2, 3))
    one = 2 * 2 * 3 * 3
    assert flops.matmul_flops(inner, x).flops == one
    assert flops.matmul_flops(jax.grad(lambda x: inner(x).sum()), x).flops == 2 * one  # forward + its VJP
    assert flops.matmul_flops(branch, x).flops == 2 * one  # the dearer branch
