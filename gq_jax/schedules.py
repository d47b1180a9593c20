"""Annealing schedules for the softmax sharpness α: pure functions `step -> alpha`.

α grows from `start` (soft assignment, ≈ 1) to `end` (hard, ≈ 10²–10³) between `begin_step` and
`end_step`; before and after that interval it is held at the end values. All functions work on
Python ints and traced JAX scalars alike, so `alpha = schedule(state.step)` can live inside `jit`.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Schedule = Callable[[jax.typing.ArrayLike], jax.Array]


def _check(start: float, end: float, begin_step: int, end_step: int, positive: bool) -> None:
    if end_step <= begin_step:
        raise ValueError(f"schedule: end_step ({end_step}) must be > begin_step ({begin_step})")
    if positive and (start <= 0 or end <= 0):
        raise ValueError(f"exponential schedule: start and end must be > 0, got {start}, {end}")


def _progress(step: jax.typing.ArrayLike, begin_step: int, end_step: int) -> jax.Array:
    """Fraction of the interval done: clip((step − begin) / (end − begin), 0, 1)."""
    step = jnp.asarray(step, jnp.float32)
    return jnp.clip((step - begin_step) / (end_step - begin_step), 0.0, 1.0)


def constant(value: float) -> Schedule:
    """α(t) = value."""
    return lambda step: jnp.full((), value, jnp.float32)


def linear(start: float, end: float, begin_step: int, end_step: int) -> Schedule:
    """α(t) = start + (end − start) · p(t), p the clipped progress through [begin_step, end_step]."""
    _check(start, end, begin_step, end_step, positive=False)
    return lambda step: start + (end - start) * _progress(step, begin_step, end_step)


def exponential(start: float, end: float, begin_step: int, end_step: int) -> Schedule:
    """α(t) = start · (end / start)^p(t): geometric growth, equal ratios in equal steps."""
    _check(start, end, begin_step, end_step, positive=True)
    return lambda step: start * (end / start) ** _progress(step, begin_step, end_step)
