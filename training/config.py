"""From a `ml_collections.ConfigDict` (see configs/default.py) to the objects training uses.

`check_fields` rejects fields the base config does not define; `model_from_config`, `gq_config`,
`method_for` and `alpha_schedule` turn config sections into a model, a `gq_jax.GQConfig`, a
`Method` (a `gq_jax.Quantizer` and the module the training loss applies) and a `step -> alpha`
schedule.

`METHODS` is the one place method names appear: `config.quant.method` -> a builder from the
config section. Adding a method is one function returning a `gq_jax.Quantizer` (or a `Method`
when it wraps the model, like Qwix) and one line here, or `register(name, build)` at run time.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import ml_collections

import gq_jax
from models.conformer import make_conformer
from models.rnnt import make_rnnt
from models.transducer_parts import Transducer, make_transducer
from training import input_pipeline

MODEL_FACTORIES: dict[str, Callable[..., Transducer]] = {"rnnt": make_rnnt, "conformer": make_conformer}


class Method(NamedTuple):
    """A training method: its quantizer and the module whose `apply` the training loss calls
    (None: the model itself, which every parameter-tree method uses)."""

    quantizer: gq_jax.Quantizer
    training_model: nn.Module | None = None


# build(config.quant, model, num_mel_bins) -> gq_jax.Quantizer | Method
Builder = Callable[[ml_collections.ConfigDict, Transducer, int], "gq_jax.Quantizer | Method"]


class Registered(NamedTuple):
    """A registry entry: the builder; `post_training` methods train nothing (they harden the float
    weights of a parent run); `check(quant)` raises ValueError for a config the method cannot run
    (called by `check_fields`, before anything is written)."""

    build: Builder
    post_training: bool = False
    check: Callable[[ml_collections.ConfigDict], None] | None = None


def _qwix_qat():
    """training.qwix_qat, imported only when Qwix QAT is used (qwix is the optional extra `[qwix]`)."""
    try:
        from training import qwix_qat
    except ImportError as err:
        raise ImportError(f"Qwix QAT needs the qwix package ({err}); install it with: "
                          "pip install -e '.[qwix]'") from err
    return qwix_qat


# The builders: each reads the config section `quant` (and Qwix the model it wraps).
def _float(quant, model, num_mel_bins):
    return gq_jax.identity()


def _gq(quant, model, num_mel_bins):
    return gq_jax.gq(gq_config(quant), alpha=alpha_schedule(quant.alpha), snap_every=quant.snap_every)


def _uniform_ste(quant, model, num_mel_bins):
    return gq_jax.uniform_ste(gq_config(quant), snap_every=quant.snap_every)


def _ptq_round(quant, model, num_mel_bins):
    return gq_jax.ptq_round(gq_config(quant))


def _ptq_kmeans(quant, model, num_mel_bins):
    return gq_jax.ptq_kmeans(gq_config(quant))


def _qwix(quant, model, num_mel_bins):
    return _qwix_qat().qat(gq_config(quant), model, num_mel_bins, snap_every=quant.snap_every)


def _check_qwix(quant):
    _qwix_qat().check_rules(quant.rules)


FLOAT = "float"  # unquantized training: the default method and the baseline of step times
METHODS: dict[str, Registered] = {
    FLOAT: Registered(_float),
    "gq": Registered(_gq),
    "uniform_ste": Registered(_uniform_ste),
    "ptq_round": Registered(_ptq_round, post_training=True),
    "ptq_kmeans": Registered(_ptq_kmeans, post_training=True),
    "qwix": Registered(_qwix, check=_check_qwix),
}


def register(name: str, build: Builder, *, post_training: bool = False,
             check: Callable[[ml_collections.ConfigDict], None] | None = None) -> None:
    """Make `config.quant.method = name` train with `build(config.quant, model, num_mel_bins)`."""
    if name in METHODS:
        raise ValueError(f"quantization method {name!r} is already registered")
    METHODS[name] = Registered(build, post_training, check)


def _registered(name: str) -> Registered:
    if name not in METHODS:
        raise ValueError(f"config.quant.method={name!r}; expected one of {sorted(METHODS)}")
    return METHODS[name]


def is_post_training(name: str) -> bool:
    """Whether method `name` trains nothing (it quantizes a parent run's float weights)."""
    return _registered(name).post_training


def post_training_methods() -> list[str]:
    """The names of the post-training methods (what `eval.py --ptq METHOD:BITS` accepts)."""
    return sorted(name for name, entry in METHODS.items() if entry.post_training)


def method_for(quant: ml_collections.ConfigDict, model: Transducer, num_mel_bins: int) -> Method:
    """The `Method` that `quant.method` names, built from the config section `quant` for `model`
    (whose input features have `num_mel_bins` channels); `training_model` is filled in."""
    built = _registered(quant.method).build(quant, model, num_mel_bins)
    method = Method(built) if isinstance(built, gq_jax.Quantizer) else built
    if not isinstance(method, Method) or not isinstance(method.quantizer, gq_jax.Quantizer):
        raise ValueError(f"the builder of quant.method={quant.method!r} returned {type(built).__name__}; "
                         "expected a gq_jax.Quantizer or a training.config.Method")
    return method._replace(training_model=model if method.training_model is None else method.training_model)


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
    """ValueError naming every field that configs/default.py does not define, an unknown
    `config.quant.method` or `config.data.feature_normalization`, a malformed rule, or a config the
    method's `check` rejects.

    `config.model` is checked against the keyword arguments of the factory named by
    `config.model.name` instead (models differ in their fields).
    """
    base = _base_config()
    unknown = _unknown_fields(config, base, "")
    unknown = [name for name in unknown if not name.startswith("model.")]
    name = config.model.get("name")
    if name not in MODEL_FACTORIES:
        raise ValueError(f"config.model.name={name!r}; expected one of {sorted(MODEL_FACTORIES)}")
    accepted = model_fields(name)
    unknown += [f"model.{key}" for key in config.model.keys() if key != "name" and key not in accepted]
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; see configs/default.py "
                         f"(model fields: the arguments of make_{name} and make_transducer)")
    normalization = input_pipeline.normalization(config.data)
    if normalization not in input_pipeline.NORMALIZATIONS:
        raise ValueError(f"config.data.feature_normalization={normalization!r}; expected one of "
                         f"{input_pipeline.NORMALIZATIONS}")
    check = _registered(config.quant.method).check
    if check is not None:
        check(config.quant)
    gq_config(config.quant)  # the rules' form and the GQ fields, whatever the method


def model_fields(name: str) -> set[str]:
    """The `config.model` fields (besides `name`) of model family `name`: the keyword arguments of
    its factory, and of `make_transducer` for the prediction and joint networks it passes on."""
    return set(model_defaults(name))


def model_defaults(name: str) -> dict[str, Any]:
    """{field: the factory's default} of every `model_fields(name)` field (a field without a default
    maps to `inspect.Parameter.empty`)."""
    def keywords(function: Callable[..., Any]) -> dict[str, Any]:
        return {p.name: p.default for p in inspect.signature(function).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}
    return keywords(make_transducer) | keywords(MODEL_FACTORIES[name])


def model_from_config(model_config: ml_collections.ConfigDict, vocab_size: int) -> Transducer:
    """`make_rnnt` / `make_conformer` called with the fields of `config.model` (minus `name`)."""
    kwargs = {k: v for k, v in model_config.to_dict().items() if k != "name"}
    return MODEL_FACTORIES[model_config.name](vocab_size, **kwargs)


def _rule(entry: Any) -> gq_jax.Rule:
    """`gq_jax.Rule` from a `config.quant.rules` entry (pattern, bits, granularity[, channel_axes])."""
    if not isinstance(entry, (tuple, list)) or len(entry) not in (3, 4):
        raise ValueError(f"config.quant.rules entry {entry!r}: expected (pattern, bits, granularity) "
                         "or (pattern, bits, granularity, channel_axes)")
    pattern, bits, granularity, *axes = entry
    channel_axes = None if not axes or axes[0] is None else tuple(axes[0])  # a list in config.json
    return gq_jax.Rule(pattern, bits=int(bits), granularity=granularity, channel_axes=channel_axes)


# GQ's backward before `config.quant.estimator` existed (`gq_config`).
LEGACY_ESTIMATOR = "soft_jacobian"


def gq_config(quant: ml_collections.ConfigDict) -> gq_jax.GQConfig:
    """GQConfig from `config.quant`: rules given as (pattern, bits, granularity) tuples, or with a
    fourth element, the `gq_jax.Rule.channel_axes` (None or a tuple of ints; without it, each
    leaf's output axes: `gq_jax.default_channel_axes`).

    A rule that matches no parameter is an error (`strict=True`), so a typo in a pattern fails
    instead of silently quantizing nothing (float training never builds a GQConfig). A config saved
    before `quant.distance` or `quant.backward_alpha` existed (an older workdir's config.json) gets
    the library's default; one saved before `quant.estimator` existed trained with the soft
    Jacobian, the only backward then, and keeps it (`LEGACY_ESTIMATOR`), so it resumes as it began.
    """
    return gq_jax.GQConfig(rules=[_rule(entry) for entry in quant.rules], mu=quant.mu, mode=quant.mode,
                           distance=quant.get("distance", gq_jax.GQConfig.distance),
                           estimator=quant.get("estimator", LEGACY_ESTIMATOR),
                           backward_alpha=quant.get("backward_alpha", gq_jax.GQConfig.backward_alpha),
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
