"""The named runs of the results (issue 6): each is a base config plus dotted-field overrides.

A run is one of three kinds:
  train     float training from random weights (`parent` is None);
  finetune  QAT from the latest checkpoint of its float `parent` (`quant.init_from`), with the same
            step budget `FINETUNE_STEPS[model]` for every method;
  post      post-training quantization of the parent's weights (no training).

"All weight matrices and embeddings" is the rule pattern `WEIGHTS` (per-channel unless an ablation
says otherwise): every `*kernel` leaf (dense, LSTM `input_kernel`/`recurrent_kernel`, attention,
convolutions) and `predictor/embedding/embedding`; biases, norms and the Conformer's positional
biases stay float. Ablations change one setting of the default GQ fine-tune at 4 and 2 bits; the
default value of each ablated setting is the main row `<model>_gq_<bits>` itself (`ABLATIONS`).

Qwix QAT (PyPI `qwix` 0.1.8) is not a run yet: it quantizes by intercepting the dot_generals of a
wrapped model (`qwix.quantize_model(model, qwix.QtProvider([qwix.QtRule(...)]))`), which train.py
cannot take (it builds the model itself and quantizes parameters, not modules), and on our RNN-T
it intercepts only `joint/encoder_proj` and `joint/predictor_proj`: the LSTM kernels, the joint
output layer and the embedding would stay float.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Mapping

import ml_collections

from training import config as config_lib

WEIGHTS = r".*(kernel|embedding)"
BASE_CONFIGS = {"rnnt": "configs.rnnt_synth", "conformer": "configs.conformer_synth"}
FINETUNE_STEPS = {"rnnt": 4000, "conformer": 4000}
QAT_METHODS = ("gq", "uniform_ste")
POST_METHODS = ("ptq_round", "ptq_kmeans")
MAIN_BITS = {"uniform_ste": (8, 4, 2), "gq": (8, 5, 4, 3, 2), "ptq_round": (4, 2), "ptq_kmeans": (4, 2)}
ABLATION_BITS = (4, 2)
# Every fine-tune: lower learning rate and a short warm-up from the float weights; the softmax
# sharpness alpha anneals over the first half of the budget.
FINETUNE_OVERRIDES = {"optim.learning_rate": 5e-4, "optim.warmup_steps": 100, "quant.alpha.end_step": 2000,
                      "eval_every_steps": 1000, "checkpoint_every_steps": 500}


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One named run: `base` config module + `overrides` ({dotted field: value})."""

    name: str
    model: str  # "rnnt" | "conformer"
    overrides: Mapping[str, Any]
    parent: str | None = None
    table: str = "main"  # "main" | "ablation"
    beam: bool = True  # also decode with beam 4 (main rows)
    description: str = ""

    @property
    def base(self) -> str:
        return BASE_CONFIGS[self.model]

    @property
    def method(self) -> str:
        return self.overrides.get("quant.method", "float")

    @property
    def kind(self) -> str:
        if self.parent is None:
            return "train"
        return "post" if self.method in POST_METHODS else "finetune"


def rules(bits: int, granularity: str = "channel") -> tuple[tuple[str, int, str], ...]:
    """Every weight matrix and embedding at `bits`."""
    return ((WEIGHTS, bits, granularity),)


def _main_runs(model: str) -> list[Experiment]:
    float_name = f"{model}_float"
    runs = [Experiment(float_name, model, {}, description="float baseline")]
    for method, bit_list in MAIN_BITS.items():
        for bits in bit_list:
            overrides: dict[str, Any] = {"quant.method": method, "quant.rules": rules(bits)}
            if method not in POST_METHODS:
                overrides.update(FINETUNE_OVERRIDES, num_train_steps=FINETUNE_STEPS[model])
            runs.append(Experiment(f"{model}_{method}_{bits}", model, overrides, parent=float_name,
                                   description=f"{method} at {bits} bits"))
    return runs


def _allocation_runs() -> list[Experiment]:
    """GQ with a per-layer bit allocation: the paper's 1-bit RNN-T layers and a sub-5-bit Conformer."""
    finetune = lambda model, quant_rules: {"quant.method": "gq", "quant.rules": quant_rules,
                                           **FINETUNE_OVERRIDES, "num_train_steps": FINETUNE_STEPS[model]}
    runs = [Experiment(f"rnnt_gq_1bit_layers_{bits}", "rnnt", finetune("rnnt", (
        (r"encoder/lstm_[12]/.*kernel", 1, "channel"), (WEIGHTS, bits, "channel"))), parent="rnnt_float",
        description=f"encoder LSTM layers 1-2 at 1 bit, the rest at {bits} bits") for bits in (4, 5)]
    runs.append(Experiment("conformer_gq_mixed_2_4", "conformer", finetune("conformer", (
        (r"encoder/block_\d+/ff_(start|end)/.*kernel", 2, "channel"), (WEIGHTS, 4, "channel"))),
        parent="conformer_float", description="feed-forward kernels at 2 bits, the rest at 4 bits"))
    return runs


# {setting: (value of the main GQ row, {other value: overrides})}.
ABLATIONS: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    "snap_every F": ("0", {"100": {"quant.snap_every": 100}, "1000": {"quant.snap_every": 1000}}),
    "mode": ("ste", {"soft": {"quant.mode": "soft"}}),
    "alpha schedule": ("exponential 5->500", {"linear 5->500": {"quant.alpha.schedule": "linear"}}),
    "centroids": ("learnable", {"frozen": {"quant.centroid_learning_rate": 0.0}}),
    "mu": ("8", {"0": {"quant.mu": 0.0}, "255": {"quant.mu": 255.0}}),
    "granularity": ("channel", {"tensor": {}}),  # rules set below
    "init": ("auto", {"uniform": {"quant.init": "uniform"}, "kmeans": {"quant.init": "kmeans"}}),
}


def ablation_name(setting: str, value: str, bits: int) -> str:
    """The run holding `setting` = `value` at `bits` (the main GQ row for the default value)."""
    default, others = ABLATIONS[setting]
    if value == default:
        return f"rnnt_gq_{bits}"
    if value not in others:
        raise ValueError(f"ablation {setting!r} has no value {value!r}; expected {default!r} or {sorted(others)}")
    slug = lambda text: "".join(c if c.isalnum() else "_" for c in text.split(" ")[0]).strip("_")
    return f"rnnt_abl_{slug(setting)}_{slug(value)}_{bits}"


def _ablation_runs() -> list[Experiment]:
    runs = []
    for bits in ABLATION_BITS:
        base = next(e for e in _main_runs("rnnt") if e.name == f"rnnt_gq_{bits}")
        for setting, (_, others) in ABLATIONS.items():
            for value, overrides in others.items():
                extra = {"quant.rules": rules(bits, "tensor")} if setting == "granularity" else overrides
                runs.append(dataclasses.replace(
                    base, name=ablation_name(setting, value, bits), overrides={**base.overrides, **extra},
                    table="ablation", beam=False, description=f"{setting} = {value}"))
    return runs


def index(experiments: list[Experiment]) -> dict[str, Experiment]:
    """{name: experiment}; ValueError on a repeated name or a parent that is not a float run listed before."""
    by_name: dict[str, Experiment] = {}
    for e in experiments:
        if e.name in by_name:
            raise ValueError(f"experiment name {e.name!r} is used twice")
        if e.parent is not None and (e.parent not in by_name or by_name[e.parent].kind != "train"):
            raise ValueError(f"experiment {e.name!r}: parent {e.parent!r} is not a float run listed before it")
        by_name[e.name] = e
    return by_name


EXPERIMENTS = index(_main_runs("rnnt") + _main_runs("conformer") + _allocation_runs() + _ablation_runs())


def get(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def set_field(config: ml_collections.ConfigDict, dotted: str, value: Any) -> None:
    """config.<dotted> = value; KeyError naming `dotted` when a section does not exist."""
    section, _, field = dotted.rpartition(".")
    target = config
    for key in filter(None, section.split(".")):
        if key not in target:
            raise KeyError(f"override {dotted!r}: config has no section {key!r}")
        target = target[key]
    target[field] = value


def build_config(experiment: Experiment, runs_root: str, overrides: Mapping[str, Any] = ()
                 ) -> ml_collections.ConfigDict:
    """The base config with the experiment's overrides, then `overrides` (e.g. data.path, model size,
    num_train_steps), with `quant.init_from` pointing at the parent's workdir under `runs_root`.

    Raises ValueError naming unknown fields (training.config.check_fields)."""
    config = importlib.import_module(experiment.base).get_config()
    for dotted, value in {**experiment.overrides, **dict(overrides)}.items():
        set_field(config, dotted, value)
    if experiment.kind == "finetune":
        config.quant.init_from = f"{runs_root}/{experiment.parent}"
    config_lib.check_fields(config)
    return config
