"""The named runs of the results (issue 6): each is a base config plus dotted-field overrides.

A run is one of three kinds:
  train     float training from random weights (`parent` is None), or at a scale that names a
            published float model for it (`Scale.float_models`), that model, scored as it is;
  finetune  QAT from the latest checkpoint of its float `parent` (or the scale's published float
            model; `quant.init_from`), with the same
            step budget for every method (`Scale.finetune_steps[model]`);
  post      post-training quantization of the parent's weights (no training): a method registered
            as post-training in training/config.py METHODS.

Every run exists at each `Scale`: "recipe" (configs/rnnt_synth.py and configs/conformer_synth.py as
the issue asks; days of training on 2 CPU cores), "cpu" (compact models and budgets that fit
2-core CPU sessions: configs/*_synth_cpu.py) and "large" (the recognizers of configs/*_synth_large.py
on synth-en large, 1,500-step fine-tunes: 0.51 epoch of its 2,945 batches; its float rows are the
published results/models/rnnt_synth_large and results/models/conformer_synth_large_stage3), and
"large_conformer_stage1" (the same with the Conformer of the first float stage,
results/models/conformer_synth_large: where the first Conformer rows were measured).
`python -m experiments.step_time --scale S` measures what a scale costs on this machine. A run's files live in `<root>/<scale>/<name>`.

"All weight matrices and embeddings" is the rule pattern `WEIGHTS` (per-channel unless an ablation
says otherwise): every `*kernel` leaf (dense, LSTM `input_kernel`/`recurrent_kernel`, attention,
convolutions) and `predictor/embedding/embedding`; biases, norms and the Conformer's positional
biases stay float. Ablations change one setting of the default GQ fine-tune at 4 and 2 bits; the
default value of each ablated setting is the main row `<model>_gq_<bits>` itself (`ABLATIONS`).

Qwix QAT (PyPI `qwix`, training/qwix_qat.py) runs as method "qwix" with the same rules and budget:
it fake-quantizes the weights it intercepts (int8 / int4, per channel, absmax scale, straight-through
gradient); the weights it cannot see (the joint output layer and the embedding) stay float, and each
run lists them in metrics.json's `float_weights`.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping

import gq_jax
import ml_collections

from training import config as config_lib

WEIGHTS = r".*(kernel|embedding)"
MODELS = ("rnnt", "conformer")
MAIN_BITS = {"uniform_ste": (8, 4, 2), "gq": (8, 5, 4, 3, 2), "ptq_round": (4, 2), "ptq_kmeans": (4, 2),
             "qwix": (8, 4)}
ABLATION_BITS = (4, 2)
# GQ's backward for every GQ row (`gq_jax.GQConfig.estimator`), chosen on short runs: in the demo's
# comparison of the three estimators (200-step fine-tunes of the large RNN-T, README "GQ's gradient
# estimator") straight-through gave the lowest test WER at 4 and at 2 bits; the "estimator" ablation
# below re-measures the choice at this table's budget.
GQ_ESTIMATOR = "straight_through"
# Settings a method's rows add to their bit rules, keyed by method.
METHOD_SETTINGS: dict[str, dict[str, Any]] = {"gq": {"quant.estimator": GQ_ESTIMATOR}}


@dataclasses.dataclass(frozen=True)
class Scale:
    """One set-up of every run: the base config module and the fine-tune step budget per model, and
    the published float models (`eval.py --publish` folders) it stands on: a model named in
    `float_models` has no float training at this scale; its float row scores the published weights
    and every other row starts from them."""

    name: str
    configs: Mapping[str, str]
    finetune_steps: Mapping[str, int]
    description: str
    float_models: Mapping[str, str] = dataclasses.field(default_factory=dict)


LARGE_CONFIGS = {"rnnt": "configs.rnnt_synth_large", "conformer": "configs.conformer_synth_large"}
SCALES = {scale.name: scale for scale in (
    Scale("recipe", {"rnnt": "configs.rnnt_synth", "conformer": "configs.conformer_synth"},
          {"rnnt": 4000, "conformer": 4000},
          "the recipe configs (configs/rnnt_synth.py, configs/conformer_synth.py) on the full synth-en corpus"),
    Scale("cpu", {"rnnt": "configs.rnnt_synth_cpu", "conformer": "configs.conformer_synth_cpu"},
          {"rnnt": 300, "conformer": 200},
          "compact models on the full synth-en corpus with budgets that fit a 2-core CPU session "
          "(configs/rnnt_synth_cpu.py, configs/conformer_synth_cpu.py)"),
    Scale("large", LARGE_CONFIGS, {"rnnt": 1500, "conformer": 1500},
          "the on-device recognizers on synth-en large (configs/rnnt_synth_large.py, "
          "configs/conformer_synth_large.py; the Conformer after its third float stage), "
          "fine-tuned for half an epoch",
          {"rnnt": "results/models/rnnt_synth_large",
           "conformer": "results/models/conformer_synth_large_stage3"}),
    Scale("large_conformer_stage1", LARGE_CONFIGS, {"rnnt": 1500, "conformer": 1500},
          "the large Conformer after its first float stage (results/models/conformer_synth_large, "
          "3,300 steps), the model the first Conformer rows of scale `large` stood on; its RNN-T is "
          "scale `large`'s",
          {"rnnt": "results/models/rnnt_synth_large",
           "conformer": "results/models/conformer_synth_large"}),
)}


# The scale of the headline results (the recognizers issue's working models); the report puts the
# other measured scales after it, as appendices named for their operating point.
HEADLINE_SCALE = "large"


def get_scale(name: str) -> Scale:
    if name not in SCALES:
        raise ValueError(f"unknown scale {name!r}; expected one of {sorted(SCALES)}")
    return SCALES[name]


def published_float(experiment: Experiment, scale: Scale) -> str | None:
    """The published float model `experiment` stands on at `scale` (`Scale.float_models`): the model
    its float row scores and its other rows start from; None when the scale trains its own."""
    return scale.float_models.get(experiment.model)


def starting_point(experiment: Experiment, scale: Scale, runs_root: str) -> str | None:
    """Where a row's weights come from: the scale's published float model, else for a fine-tune or
    post-training row the parent's workdir `runs_root/scale/parent`, and for a float row None (it
    trains from random weights)."""
    if experiment.parent is None:
        return published_float(experiment, scale)
    return published_float(experiment, scale) or f"{runs_root}/{scale.name}/{experiment.parent}"


def finetune_overrides(steps: int) -> dict[str, Any]:
    """Every fine-tune of `steps` steps: lower learning rate, a warm-up of 1/40 of the budget from the
    float weights, the softmax sharpness alpha annealed over the first half, dev WER at the middle and
    the end, a checkpoint every quarter."""
    return {"num_train_steps": steps, "optim.learning_rate": 5e-4, "optim.warmup_steps": max(1, steps // 40),
            "quant.alpha.end_step": max(1, steps // 2), "eval_every_steps": max(1, steps // 2),
            "checkpoint_every_steps": max(1, steps // 4)}


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
    def method(self) -> str:
        return self.overrides.get("quant.method", "float")

    @property
    def kind(self) -> str:
        if self.parent is None:
            return "train"
        return "post" if config_lib.is_post_training(self.method) else "finetune"


def rules(bits: int, granularity: str = "channel") -> tuple[tuple[str, int, str], ...]:
    """Every weight matrix and embedding at `bits`."""
    return ((WEIGHTS, bits, granularity),)


def _main_runs(model: str) -> list[Experiment]:
    float_name = f"{model}_float"
    runs = [Experiment(float_name, model, {}, description="float baseline"),
            Experiment(f"{model}_float_finetune", model, {"quant.method": "float"}, parent=float_name,
                       description="control: the float model fine-tuned with the same budget, unquantized")]
    for method, bit_list in MAIN_BITS.items():
        for bits in bit_list:
            overrides = {"quant.method": method, "quant.rules": rules(bits), **METHOD_SETTINGS.get(method, {})}
            runs.append(Experiment(f"{model}_{method}_{bits}", model, overrides, parent=float_name,
                                   description=f"{method} at {bits} bits"))
    return runs


def _allocation_runs() -> list[Experiment]:
    """GQ with a per-layer bit allocation: the paper's 1-bit RNN-T layers and a sub-5-bit Conformer."""
    gq = lambda quant_rules: {"quant.method": "gq", "quant.rules": quant_rules, **METHOD_SETTINGS["gq"]}
    runs = [Experiment(f"rnnt_gq_1bit_layers_{bits}", "rnnt", gq((
        (r"encoder/lstm_[12]/.*kernel", 1, "channel"), (WEIGHTS, bits, "channel"))), parent="rnnt_float",
        description=f"encoder LSTM layers 1-2 at 1 bit, the rest at {bits} bits") for bits in (4, 5)]
    runs.append(Experiment("conformer_gq_mixed_2_4", "conformer", gq((
        (r"encoder/block_\d+/ff_(start|end)/.*kernel", 2, "channel"), (WEIGHTS, 4, "channel"))),
        parent="conformer_float", description="feed-forward kernels at 2 bits, the rest at 4 bits"))
    return runs


def per_budget(divisor: int) -> Callable[[int], int]:
    """An override value of 1/`divisor` of the fine-tune budget (`build_config` calls it with the steps)."""
    return lambda steps: max(1, steps // divisor)


# {setting: (value of the main GQ row, {other value: overrides})}. The quantization frequency is a
# fraction of the budget: F = 100 and 1000 at the recipe scale's 4,000 steps, 7 and 75 at 300.
# "learnable" centroids take Adam at 1e-4 (configs/default.py; 1e-3 was the default until its
# ablation: per step a centroid moves by up to about the learning rate whatever its gradient's
# size, against a 4-bit spacing of about 0.13, and at 1e-3 they drifted into near-duplicates).
ABLATIONS: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    "snap_every F": ("0", {"budget/40": {"quant.snap_every": per_budget(40)},
                           "budget/4": {"quant.snap_every": per_budget(4)}}),
    "estimator": (GQ_ESTIMATOR, {"soft_jacobian": {"quant.estimator": "soft_jacobian"},
                                 "capped_alpha": {"quant.estimator": "capped_alpha"}}),
    "mode": ("ste", {"soft": {"quant.mode": "soft"}}),
    "distance": ("sq", {"abs": {"quant.distance": "abs"}}),
    "alpha schedule": ("exponential 5->500", {"linear 5->500": {"quant.alpha.schedule": "linear"}}),
    "alpha_end": ("500", {"50": {"quant.alpha.end": 50.0}, "5000": {"quant.alpha.end": 5000.0}}),
    "alpha_length": ("budget/2", {"budget/4": {"quant.alpha.end_step": per_budget(4)},
                                  "whole budget": {"quant.alpha.end_step": per_budget(1)}}),
    "centroids": ("learnable", {"frozen": {"quant.centroid_learning_rate": 0.0},
                                "lr=1e-3": {"quant.centroid_learning_rate": 1e-3}}),
    "mu": ("8", {"0": {"quant.mu": 0.0}, "255": {"quant.mu": 255.0}}),
    "granularity": ("channel", {"tensor": {}}),  # rules set below
    "init": ("auto", {"uniform": {"quant.init": "uniform"}, "kmeans": {"quant.init": "kmeans"}}),
}


def ablation_name(setting: str, value: str, bits: int) -> str:
    """The run holding `setting` = `value` at `bits`: the main GQ row for the default value and for
    the init that the default "auto" picks at `bits` (k-means at 2 bits, uniform at 4)."""
    default, others = ABLATIONS[setting]
    if value == default or (setting == "init" and value == gq_jax.GQConfig(()).init_for(bits)):
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
                name = ablation_name(setting, value, bits)
                if name == base.name:
                    continue
                extra = {"quant.rules": rules(bits, "tensor")} if setting == "granularity" else overrides
                runs.append(dataclasses.replace(
                    base, name=name, overrides={**base.overrides, **extra},
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


def build_config(experiment: Experiment, scale: Scale, runs_root: str, overrides: Mapping[str, Any] = ()
                 ) -> ml_collections.ConfigDict:
    """The scale's base config for the model, the fine-tune settings (a fine-tune), the experiment's
    overrides, then `overrides` (e.g. data.path, num_train_steps), with `quant.init_from` at the
    row's `starting_point`. A callable override value (`per_budget`) is
    called with the scale's fine-tune steps.

    Raises ValueError naming unknown fields (training.config.check_fields)."""
    config = importlib.import_module(scale.configs[experiment.model]).get_config()
    steps = scale.finetune_steps[experiment.model]
    tuning = finetune_overrides(steps) if experiment.kind == "finetune" else {}
    for dotted, value in {**tuning, **experiment.overrides, **dict(overrides)}.items():
        set_field(config, dotted, value(steps) if callable(value) else value)
    if experiment.kind == "finetune":
        config.quant.init_from = starting_point(experiment, scale, runs_root)
    config_lib.check_fields(config)
    return config
