"""Quantization methods as interchangeable triples of pure functions (optax-style).

A `Quantizer` is `init(params, config) -> state`, `quantize_params(params, state, config, alpha)
-> params` (used inside the training loss) and `harden(params, state, config) -> hardened tree`
(the shippable artifact). Training code picks one by name and never branches on the method.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from gq_jax import artifact, baselines, quantizer


class Quantizer(NamedTuple):
    init: Callable[..., quantizer.QuantState]
    quantize_params: Callable[..., Any]
    harden: Callable[..., Any]


METHODS: dict[str, Quantizer] = {
    "gq": Quantizer(quantizer.init, quantizer.quantize_params, artifact.harden),
    "uniform_ste": Quantizer(
        baselines.uniform_init, baselines.uniform_ste_quantize_params, baselines.uniform_harden
    ),
    "ptq_round": Quantizer(baselines.no_state, baselines.float_params, baselines.uniform_harden),
    "ptq_kmeans": Quantizer(baselines.no_state, baselines.float_params, baselines.kmeans_harden),
}


def get_method(name: str) -> Quantizer:
    """The Quantizer called `name` (one of METHODS), or ValueError listing the known names."""
    if name not in METHODS:
        raise ValueError(f"unknown quantization method {name!r}; known: {sorted(METHODS)}")
    return METHODS[name]
