"""Annealing schedules for the softmax sharpness α: optax schedules `step -> alpha`, under names
that say the GQ use (α grows from `start`, soft ≈ 1, to `end`, hard ≈ 10²–10³).

Each is the optax schedule it names, so any other `optax.Schedule` (e.g. `optax.join_schedules`)
may be passed wherever one of these is. Before `begin_step` α is `start`, after `end_step` it is
`end`; all work on Python ints and traced JAX scalars alike, so `alpha = schedule(state.step)` can
live inside `jit`. Values are those of the hand-written schedules they replaced (exponential bit for
bit; linear within 5e-6 relative, optax rounding (start − end)·(1 − p) + end in float32).
"""

from __future__ import annotations

import optax

Schedule = optax.Schedule


def _check(start: float, end: float, begin_step: int, end_step: int, positive: bool) -> None:
    if end_step <= begin_step:
        raise ValueError(f"schedule: end_step ({end_step}) must be > begin_step ({begin_step})")
    if positive and (start <= 0 or end <= 0):
        raise ValueError(f"exponential schedule: start and end must be > 0, got {start}, {end}")


def constant(value: float) -> Schedule:
    """α(t) = value: `optax.constant_schedule`."""
    return optax.constant_schedule(value)


def linear(start: float, end: float, begin_step: int, end_step: int) -> Schedule:
    """α(t) = start + (end − start) · p(t), p = clip((t − begin_step) / (end_step − begin_step), 0, 1):
    `optax.linear_schedule`."""
    _check(start, end, begin_step, end_step, positive=False)
    return optax.linear_schedule(start, end, end_step - begin_step, transition_begin=begin_step)


def exponential(start: float, end: float, begin_step: int, end_step: int) -> Schedule:
    """α(t) = start · (end / start)^p(t), p as in `linear`: geometric growth, equal ratios in equal
    steps. `optax.exponential_decay` with decay rate end / start, held at `end` after `end_step`."""
    _check(start, end, begin_step, end_step, positive=True)
    return optax.exponential_decay(start, end_step - begin_step, end / start,
                                   transition_begin=begin_step, end_value=end)
