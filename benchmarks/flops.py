"""Matmul flops of a JAX function counted on its jaxpr, every loop body once per iteration.

XLA's cost analysis (`compiled.cost_analysis()["flops"]`) counts the body of a while loop once
whatever its trip count, so a recurrent model's count leaves out all but one time step of its
recurrences. This count walks the jaxpr instead:

  dot_general           2 · Π(batch dims) · Π(contracting dims) · Π(lhs free dims) · Π(rhs free dims)
  conv_general_dilated  2 · |output| · Π(kernel spatial dims) · in_features / feature_group_count
  scan                  its body's count × `length`
  while                 its body's count × the trip count when the loop is a counted one (a
                        fori_loop whose condition compares its counter with a literal bound),
                        else × 1, and the loop is listed in `uncounted_loops`
  anything else         the sum over the jaxprs in its parameters (pjit, custom_vjp_call,
                        remat, cond takes its most expensive branch)

Only matmuls and convolutions are counted: they are what a matmul's rate bounds. Elementwise work,
which XLA's count includes, is left out.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterator

import jax
from jax.extend import core


@dataclasses.dataclass(frozen=True)
class FlopCount:
    """`flops` of matmuls and convolutions; `uncounted_loops`: while loops whose trip count is not
    static (their body counted once)."""

    flops: float
    uncounted_loops: int = 0

    def __add__(self, other: FlopCount) -> FlopCount:
        return FlopCount(self.flops + other.flops, self.uncounted_loops + other.uncounted_loops)

    def __mul__(self, times: float) -> FlopCount:
        return FlopCount(self.flops * times, self.uncounted_loops)


def dot_general_flops(lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...], dimension_numbers: Any) -> float:
    """2 · B · K · M · N of a dot_general: B batch, K contracting, M and N the free sizes."""
    (lhs_contract, rhs_contract), (lhs_batch, _) = dimension_numbers
    batch = math.prod(lhs_shape[d] for d in lhs_batch)
    contract = math.prod(lhs_shape[d] for d in lhs_contract)
    lhs_free = math.prod(lhs_shape) // (batch * contract)
    rhs_free = math.prod(rhs_shape) // (batch * contract)
    return 2.0 * batch * contract * lhs_free * rhs_free


def _sub_jaxprs(params: dict[str, Any]) -> Iterator[core.Jaxpr]:
    for value in params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, core.Jaxpr):
                yield item


def _counted_trips(eqn: Any) -> int | None:
    """The trip count of a while loop written by fori_loop with literal bounds: the condition is
    `lt counter upper` on the carry with the start in the initial carry as a literal; else None."""
    cond = eqn.params["cond_jaxpr"].jaxpr
    if eqn.params["cond_nconsts"] or len(cond.eqns) != 1 or cond.eqns[0].primitive.name != "lt":
        return None
    counter, upper = cond.eqns[0].invars
    if not isinstance(upper, core.Literal) or counter not in cond.invars:
        return None
    start = eqn.invars[eqn.params["body_nconsts"] + cond.invars.index(counter)]
    if not isinstance(start, core.Literal):
        return None
    return max(0, int(upper.val) - int(start.val))


def jaxpr_flops(jaxpr: core.Jaxpr) -> FlopCount:
    """The FlopCount of `jaxpr` (module docstring)."""
    total = FlopCount(0.0)
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            total += FlopCount(dot_general_flops(eqn.invars[0].aval.shape, eqn.invars[1].aval.shape,
                                                 eqn.params["dimension_numbers"]))
        elif name == "conv_general_dilated":
            total += FlopCount(2.0 * math.prod(eqn.outvars[0].aval.shape)
                               * _conv_macs_per_output(eqn.invars[1].aval.shape, eqn.params))
        elif name == "scan":
            total += jaxpr_flops(eqn.params["jaxpr"].jaxpr) * eqn.params["length"]
        elif name == "while":
            trips = _counted_trips(eqn)
            body = jaxpr_flops(eqn.params["body_jaxpr"].jaxpr)
            total += body * trips if trips is not None else body + FlopCount(0.0, 1)
        elif name == "cond":
            total += max((jaxpr_flops(branch.jaxpr) for branch in eqn.params["branches"]),
                         key=lambda count: count.flops)
        else:
            for sub in _sub_jaxprs(eqn.params):
                total += jaxpr_flops(sub)
    return total


def _conv_macs_per_output(rhs_shape: tuple[int, ...], params: dict[str, Any]) -> float:
    """Multiply-adds per output element: kernel spatial size × the input features of one group."""
    rhs_spec = params["dimension_numbers"].rhs_spec  # (out features, in features per group, *spatial)
    return math.prod(rhs_shape[d] for d in rhs_spec[2:]) * rhs_shape[rhs_spec[1]]


def matmul_flops(fn: Callable[..., Any], *args: Any) -> FlopCount:
    """The FlopCount of `fn(*args)`, traced with `jax.make_jaxpr`."""
    return jaxpr_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def xla_flops(fn: Callable[..., Any], *args: Any) -> float:
    """XLA's cost analysis of `jax.jit(fn)` on `args`: its "flops" (a loop body counted once)."""
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    return (cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"]
