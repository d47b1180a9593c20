"""From a `ml_collections.ConfigDict` (see configs/default.py) to the objects training uses.

`check_fields` rejects fields the base config does not define; `model_from_config`,
`gq_config`, `quantizer_for` and `alpha_schedule` turn config sections into a model, a
`gq_jax.GQConfig`, a `gq_jax.Quantizer` and a `step -> alpha` schedule.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import ml_collections

import gq_jax
from gq_jax import baselines
from models.conformer import make_conformer
from models.rnnt import make_rnnt
from models.transducer_parts import Transducer

MODEL_FACTORIES: dict[str, Callable[..., Transducer]] = {"rnnt": make_rnnt, "conformer": make_conformer}

# "float" trains and ships float weights: no state, identity projection, nothing hardened.
FLOAT = gq_jax.Quantizer(baselines.no_state, baselines.float_params, lambda params, state, config: params)


def _base_config() -> ml_collections.ConfigDict:
    from configs import default  # the repository root is on sys.path for train.py / eval.py

    return default.get_config()


def _unknown_fields(config: Any, base: Any, prefix: str) -> list[str]:
    unknown = []
    for key in config.keys():
        name = f"{prefix}{key}"
        if key not in base:
            unknown.append(name)
        elif isinstance(config[key], ml_collections.ConfigDict) and isinstance(base[key], ml_collections.ConfigDict):
            unknown += _unknown_fields(config[key], base[key], name + ".")
    return unknown


def check_fields(config: ml_collections.ConfigDict) -> None:
    """ValueError naming every field that configs/default.py does not define.

    `config.model` is checked against the keyword arguments of the factory named by
    `config.model.name` instead (models differ in their fields).
    """
    base = _base_config()
    unknown = _unknown_fields(config, base, "")
    unknown = [name for name in unknown if not name.startswith("model.")]
    name = config.model.get("name")
    if name not in MODEL_FACTORIES:
        raise ValueError(f"config.model.name={name!r}; expected one of {sorted(MODEL_FACTORIES)}")
    accepted = set(inspect.signature(MODEL_FACTORIES[name]).parameters) - {"vocab_size"}
    unknown += [f"model.{key}" for key in config.model.keys() if key != "name" and key not in accepted]
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; see configs/default.py "
                         f"(model fields: the arguments of make_{name})")
    if config.quant.method != "float":
        gq_jax.get_method(config.quant.method)  # ValueError naming the known methods


def model_from_config(model_config: ml_collections.ConfigDict, vocab_size: int) -> Transducer:
    """`make_rnnt` / `make_conformer` called with the fields of `config.model` (minus `name`)."""
    kwargs = {k: v for k, v in model_config.to_dict().items() if k != "name"}
    return MODEL_FACTORIES[model_config.name](vocab_size, **kwargs)


def quantizer_for(method: str) -> gq_jax.Quantizer:
    """`gq_jax.get_method(method)`, or the identity quantizer for "float"."""
    return FLOAT if method == "float" else gq_jax.get_method(method)


def gq_config(quant: ml_collections.ConfigDict) -> gq_jax.GQConfig:
    """GQConfig from `config.quant` (rules given as (pattern, bits, granularity) tuples).

    A rule that matches no parameter is an error (`strict=True`), so a typo in a pattern fails
    instead of silently quantizing nothing. "float" has no rules.
    """
    rules = [] if quant.method == "float" else [
        gq_jax.Rule(pattern, bits=int(bits), granularity=granularity)
        for pattern, bits, granularity in quant.rules]
    return gq_jax.GQConfig(rules=rules, mu=quant.mu, mode=quant.mode, window=quant.window,
                           init=quant.init, strict=True)


def alpha_schedule(alpha: ml_collections.ConfigDict) -> Callable[[Any], Any]:
    """`step -> alpha` from `config.quant.alpha` (constant | linear | exponential)."""
    if alpha.schedule == "constant":
        return gq_jax.schedules.constant(alpha.start)
    if alpha.schedule in ("linear", "exponential"):
        make = getattr(gq_jax.schedules, alpha.schedule)
        return make(alpha.start, alpha.end, begin_step=alpha.begin_step, end_step=alpha.end_step)
    raise ValueError(f"config.quant.alpha.schedule={alpha.schedule!r}; expected constant, linear "
                     "or exponential")
