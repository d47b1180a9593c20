"""From a `ml_collections.ConfigDict` (see configs/default.py) to the objects training uses.

`check_fields` rejects fields the base config does not define; `model_from_config`,
`gq_config`, `quantizer_for`, `training_model` and `alpha_schedule` turn config sections into a
model, a `gq_jax.GQConfig`, a `gq_jax.Quantizer`, the module the training loss applies and a
`step -> alpha` schedule.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import flax.linen as nn
import ml_collections

import gq_jax
from gq_jax import baselines
from models.conformer import make_conformer
from models.rnnt import make_rnnt
from models.transducer_parts import Transducer

MODEL_FACTORIES: dict[str, Callable[..., Transducer]] = {"rnnt": make_rnnt, "conformer": make_conformer}

# "float" trains and ships float weights: no state, identity projection, nothing hardened.
FLOAT = gq_jax.Quantizer(baselines.no_state, baselines.float_params, lambda params, state, config: params)

# "qwix": Qwix QAT (training/qwix_qat.py), which quantizes inside the wrapped model's forward.
QWIX = "qwix"
METHOD_NAMES = sorted([*gq_jax.METHODS, "float", QWIX])


def _qwix_qat():
    """training.qwix_qat, imported only for method "qwix" (qwix is the optional extra `[qwix]`)."""
    try:
        from training import qwix_qat
    except ImportError as err:
        raise ImportError(f"config.quant.method='qwix' needs the qwix package ({err}); "
                          "install it with: pip install -e '.[qwix]'") from err
    return qwix_qat


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
    if config.quant.method not in METHOD_NAMES:
        raise ValueError(f"config.quant.method={config.quant.method!r}; expected one of {METHOD_NAMES}")
    if config.quant.method == QWIX:
        _qwix_qat().check_rules(config.quant.rules)


def model_from_config(model_config: ml_collections.ConfigDict, vocab_size: int) -> Transducer:
    """`make_rnnt` / `make_conformer` called with the fields of `config.model` (minus `name`)."""
    kwargs = {k: v for k, v in model_config.to_dict().items() if k != "name"}
    return MODEL_FACTORIES[model_config.name](vocab_size, **kwargs)


def quantizer_for(method: str, model: Transducer | None = None, num_mel_bins: int | None = None
                  ) -> gq_jax.Quantizer:
    """`gq_jax.get_method(method)`, the identity quantizer for "float", or for "qwix" the Qwix
    quantizer of `model` (which needs the model and its input feature size `num_mel_bins`: its
    `harden` traces the model to find the weights Qwix intercepts)."""
    if method == QWIX:
        if model is None or num_mel_bins is None:
            raise ValueError("quantizer_for('qwix') needs the model and num_mel_bins")
        return _qwix_qat().quantizer(model, num_mel_bins)
    return FLOAT if method == "float" else gq_jax.get_method(method)


def training_model(model: Transducer, quant: ml_collections.ConfigDict, num_mel_bins: int) -> nn.Module:
    """The module whose `apply` the training loss calls: `model` wrapped by Qwix QAT for "qwix"
    (with the bits of `quant.rules`), else `model` itself (the other methods quantize parameters).
    Both have the same parameters."""
    if quant.method == QWIX:
        return _qwix_qat().wrap(model, gq_config(quant), num_mel_bins)
    return model


def _rule(entry: Any) -> gq_jax.Rule:
    """`gq_jax.Rule` from a `config.quant.rules` entry (pattern, bits, granularity[, channel_axes])."""
    if not isinstance(entry, (tuple, list)) or len(entry) not in (3, 4):
        raise ValueError(f"config.quant.rules entry {entry!r}: expected (pattern, bits, granularity) "
                         "or (pattern, bits, granularity, channel_axes)")
    pattern, bits, granularity, *axes = entry
    channel_axes = None if not axes or axes[0] is None else tuple(axes[0])  # a list in config.json
    return gq_jax.Rule(pattern, bits=int(bits), granularity=granularity, channel_axes=channel_axes)


def gq_config(quant: ml_collections.ConfigDict) -> gq_jax.GQConfig:
    """GQConfig from `config.quant`: rules given as (pattern, bits, granularity) tuples, or with a
    fourth element, the `gq_jax.Rule.channel_axes` (None or a tuple of ints; without it, each
    leaf's output axes: `gq_jax.default_channel_axes`).

    A rule that matches no parameter is an error (`strict=True`), so a typo in a pattern fails
    instead of silently quantizing nothing. "float" has no rules. A config saved before
    `quant.distance` existed (an older workdir's config.json) gets the library's default distance.
    """
    rules = [] if quant.method == "float" else [_rule(entry) for entry in quant.rules]
    return gq_jax.GQConfig(rules=rules, mu=quant.mu, mode=quant.mode,
                           distance=quant.get("distance", gq_jax.GQConfig.distance),
                           window=quant.window, init=quant.init, strict=True)


def alpha_schedule(alpha: ml_collections.ConfigDict) -> Callable[[Any], Any]:
    """The optax schedule `step -> alpha` of `config.quant.alpha` (constant | linear | exponential,
    `gq_jax.schedules`)."""
    if alpha.schedule == "constant":
        return gq_jax.schedules.constant(alpha.start)
    if alpha.schedule in ("linear", "exponential"):
        make = getattr(gq_jax.schedules, alpha.schedule)
        return make(alpha.start, alpha.end, begin_step=alpha.begin_step, end_step=alpha.end_step)
    raise ValueError(f"config.quant.alpha.schedule={alpha.schedule!r}; expected constant, linear "
                     "or exponential")
