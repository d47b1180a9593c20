"""Quantization methods as NamedTuples of pure functions (like optax's `GradientTransformation`).

A method is built by a function that binds its hyper-parameters and returns a `Quantizer`:

    quantizer = gq_jax.gq(config, alpha=gq_jax.schedules.exponential(5.0, 500.0, 0, 1000),
                          snap_every=100)
    state = quantizer.init(params)                             # once, before training
    loss = L(quantizer.apply(params, state, step))             # inside the loss: differentiable
    (params, state) <- optimizer step on the pair
    state, params = quantizer.update(state, params, step + 1)  # projection; snapping every F steps
    hardened = quantizer.harden(params, state)                 # QuantizedArray leaves
    exported = gq_jax.export(quantizer, params, state)         # (hardened, dequantized, sizes)

`step` counts the optimizer updates done: `apply` sees those before the current one (0 at the
first), `update` the count including it (1 after the first), so `snap_every=F` snaps after updates
F, 2F, ... Every function but `ptq_kmeans(...).harden` (numpy k-means) is jittable; `update` decides
to snap with `lax.cond` on the traced step, so it lives inside the jitted (or pmapped) train step.
The state is a pytree (`QuantState` for the methods here), so it takes an optimizer and checkpoints.

Methods: `gq` (learnable centroids), `uniform_ste` (uniform fake-quant QAT), `identity` (float),
and the post-training `ptq_round` / `ptq_kmeans` (float training, `harden` quantizes). A new method
is one more function returning a `Quantizer` (README, "Custom quantizer").
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gq_jax import artifact, baselines, quantizer as gq_quantizer
from gq_jax.config import GQConfig

Params = Any
State = Any


class Quantizer(NamedTuple):
    """A quantization method: four pure functions over pytrees.

    Attributes:
      init: params -> state (before training; e.g. GQ's centroids).
      apply: (params, state, step) -> params of the same structure, shapes and dtypes: what the
        loss computes with (differentiable w.r.t. params and state).
      update: (state, params, step) -> (state, params), after each optimizer update (step = updates
        done, this one included): e.g. sort and clip centroids, snap latent weights every F steps.
      harden: (params, state) -> the shippable tree: `QuantizedArray` leaves where the method
        quantizes, the other leaves unchanged.
    """

    init: Callable[[Params], State]
    apply: Callable[[Params, State, Any], Params]
    update: Callable[[State, Params, Any], tuple[State, Params]]
    harden: Callable[[Params, State], Any]


class Export(NamedTuple):
    """What a trained model ships: the hardened tree, its dequantized float params and its sizes."""

    hardened: Any
    params: Any
    sizes: artifact.SizeReport


def export(quantizer: Quantizer, params: Params, state: State) -> Export:
    """(hardened tree, dequantized params, size report) of `params` under `quantizer`: the one path
    from trained weights to the shipped model and its size, for every method.

    `params` of the result are what the shipped (packed) model computes with:
    `dequantize(harden(params, state))`.
    """
    hardened = quantizer.harden(params, state)
    return Export(hardened, artifact.dequantize(hardened), artifact.size_report(hardened))


def _check_snap_every(snap_every: int) -> int:
    if isinstance(snap_every, bool) or not isinstance(snap_every, int) or snap_every < 0:
        raise ValueError(f"snap_every must be an int >= 0 (0: never snap), got {snap_every!r}")
    return snap_every


def snapping(harden: Callable[[Params, State], Any], config: GQConfig, snap_every: int,
             project: Callable[[State], State] = lambda state: state) -> Callable:
    """An `update` that projects the state, then every `snap_every` steps (0: never) sets the
    latent weights to the hard values of `harden` (`snap_to`: each scale's max weight kept).

    The choice is `lax.cond(step % snap_every == 0, ...)`, so `step` may be traced (inside `jit` or
    `pmap`): the whole train state stays on the devices.
    """
    snap_every = _check_snap_every(snap_every)

    def update(state: State, params: Params, step: Any) -> tuple[State, Params]:
        state = project(state)
        if not snap_every:
            return state, params

        def snap(params: Params) -> Params:
            return gq_quantizer.snap_to(params, artifact.dequantize(harden(params, state)), config)

        return state, jax.lax.cond(jnp.asarray(step) % snap_every == 0, snap, lambda p: p, params)

    return update


def _schedule(alpha: float | optax.Schedule) -> optax.Schedule:
    if callable(alpha):
        return alpha
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
        raise ValueError(f"gq: alpha must be a number > 0 or an optax schedule step -> alpha, got {alpha!r}")
    return optax.constant_schedule(float(alpha))


def gq(config: GQConfig, *, alpha: float | optax.Schedule, snap_every: int = 0) -> Quantizer:
    """GQ, the General Quantizer: learnable centroids in µ-law space, softmax assignment.

    Args:
      config: which leaves get how many bits, and GQ's µ, distance, mode, gradient estimator,
        window and init.
      alpha: the softmax sharpness α, a number or an `optax.Schedule` step -> α (e.g.
        `gq_jax.schedules.exponential(5.0, 500.0, 0, 1000)`: soft to hard).
      snap_every: F; latent weights := their hard values after every F-th update (0: never).
    Returns:
      A Quantizer: `init` = `gq_jax.init` (centroids per matched leaf), `apply` =
      `quantize_params(params, state, config, alpha(step))`, `update` = `project_centroids` then
      snapping, `harden` = `gq_jax.harden`.
    """
    schedule = _schedule(alpha)
    harden = lambda params, state: artifact.harden(params, state, config)
    return Quantizer(
        init=lambda params: gq_quantizer.init(params, config),
        apply=lambda params, state, step: gq_quantizer.quantize_params(params, state, config, schedule(step)),
        update=snapping(harden, config, snap_every, gq_quantizer.project_centroids),
        harden=harden,
    )


def uniform_ste(config: GQConfig, *, snap_every: int = 0) -> Quantizer:
    """Uniform symmetric fake-quant QAT with a straight-through estimator (`gq_jax.baselines`):
    levels k / L, L = 2**(b−1) − 1, in units of max|W| per tensor or channel; nothing is learnt but
    the weights. `snap_every` as for `gq`."""
    harden = lambda params, state: baselines.uniform_harden(params, state, config)
    return Quantizer(
        init=lambda params: baselines.uniform_init(params, config),
        apply=lambda params, state, step: baselines.uniform_ste_quantize_params(params, state, config),
        update=snapping(harden, config, snap_every),
        harden=harden,
    )


def _unchanged(state: State, params: Params, step: Any) -> tuple[State, Params]:
    return state, params


def _post_training(harden: Callable[[Params, State], Any]) -> Quantizer:
    """Float training (empty state, params unchanged), then `harden`."""
    return Quantizer(init=lambda params: gq_quantizer.QuantState({}),
                     apply=lambda params, state, step: params, update=_unchanged, harden=harden)


def identity() -> Quantizer:
    """Float training and float weights: an empty state, params unchanged, nothing hardened."""
    return _post_training(lambda params, state: params)


def ptq_round(config: GQConfig) -> Quantizer:
    """Post-training round-to-nearest onto `uniform_ste`'s levels (float training, then `harden`)."""
    return _post_training(lambda params, state: baselines.uniform_harden(params, state, config))


def ptq_kmeans(config: GQConfig) -> Quantizer:
    """Post-training per-tensor 1-D k-means codebook of W / s, 2**bits centres (`harden` runs numpy
    k-means: call it outside `jit`)."""
    return _post_training(lambda params, state: baselines.kmeans_harden(params, state, config))
