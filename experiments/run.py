"""Run one named experiment (experiments/registry.py) resumably and publish its files in results/NAME/.

    python -m experiments.run rnnt_float --scale cpu
    python -m experiments.run rnnt_gq_4 --scale cpu [--budget-steps N] [--data PATH] [--set FIELD=VALUE ...]
    python -m experiments.run --all --scale cpu     # every run in registry order; finished ones are skipped

`--scale` (default "recipe") picks the set-up of experiments/registry.py's SCALES: "recipe" (the
issue's configs) or "cpu" (compact models that fit a 2-core CPU session).

Steps: (1) train with train.py's `train_and_evaluate` in `RUNS_ROOT/SCALE/NAME` (a fine-tune starts from
its float parent's latest checkpoint, or from the published float model its scale names in
`Scale.float_models`, whose float row is then that model scored as it is; a post-training run
trains nothing); rerunning the command
resumes from the latest checkpoint, and a finished run is not retrained. (2) Score the shipped
model (hard-quantized; the float weights for a float run) on test, test_other and real, greedy,
and with beam 4 for the main rows. (3) Packed size (`gq_jax.export`'s size report), average index bits per
quantized weight, saving against the uniform 8-bit model of the same weights (1 byte per weight of
every weight matrix and embedding, plus float32 per-channel scales; the rest float), greedy
real-time factor on test (benchmarks/latency.py), and training step time over float training's
(experiments/step_time.py). Evaluation is skipped when results/NAME/metrics.json already holds it
for the same checkpoint, settings and config (`config_digest`: any changed field but the budget
scores it again).

Files in results/SCALE/NAME/: config.json, command.txt (this command and the equivalent train.py /
eval.py commands), metrics.json (budget, steps trained, training wall time and resumes as train.py's
clock records them, git commit, sizes, RTF, step time), eval.json ({decode: {split: scores}}), training_metrics.jsonl, sizes.txt and the pictures
(training_curves.png; weights_start/end.png for quantization-aware runs).

`--publish-root DIR` also writes each quantized main row's shipped model as a published folder
DIR/NAME_SCALE (`eval.publish_run`: what `python eval.py --model DIR/NAME_SCALE` scores).

`--budget-steps` sets `num_train_steps` (recorded next to the planned budget; a later run with
the full budget continues from the checkpoint, though the learning-rate schedule then differs
from an uninterrupted run's). `--set` overrides any config field (recorded in config.json and
command.txt): use it to run the machinery on a small model, never to publish numbers silently.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import time
from typing import Any, Sequence

import ml_collections
import numpy as np

import eval as eval_cmd
import gq_jax
import train
from benchmarks import latency
from experiments import registry, step_time
from training import checkpoints, input_pipeline, metrics, published, runs
from training import config as config_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
SPLITS = ("test", "test_other", "real")
BEAM = 4
SESSIONS_FILE = "sessions.jsonl"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a run was asked to do beyond its registry entry (recorded in metrics.json)."""

    scale: str = "recipe"
    budget_steps: int | None = None
    data: str | None = None
    overrides: tuple[tuple[str, Any], ...] = ()
    max_examples: int = 0  # per split; 0: all
    step_time_steps: int = 10
    runs_root: str = "runs/results"
    results_root: str = "results"
    publish_root: str | None = None  # publish each quantized main row to PUBLISH_ROOT/NAME_SCALE


def parse_override(text: str) -> tuple[str, Any]:
    """'FIELD=VALUE' -> (FIELD, VALUE as a Python literal, or the string when it is not one)."""
    field, sep, value = text.partition("=")
    if not sep or not field:
        raise ValueError(f"--set {text!r}; expected FIELD=VALUE")
    try:
        return field, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return field, value


def experiment_config(experiment: registry.Experiment, settings: Settings) -> ml_collections.ConfigDict:
    overrides = dict(settings.overrides)
    if settings.data is not None:
        overrides["data.path"] = settings.data
    if settings.budget_steps is not None and experiment.kind != "post":
        overrides["num_train_steps"] = settings.budget_steps
    return registry.build_config(experiment, registry.get_scale(settings.scale), settings.runs_root, overrides)


def config_digest(config: ml_collections.ConfigDict) -> str:
    """The first 16 hex digits of the SHA-256 of the config as sorted JSON, less `num_train_steps`
    and the model fields at their factory's default: equal for configs that score a checkpoint
    alike. The budget reaches a score only through the step trained, which `eval_settings` holds, so
    a rerun with another budget that trains nothing more (the checkpoint is past it) is still up to
    date; a model field a later version adds at its default (e.g. `prune_range=0`) builds the same
    model, so the rows measured before it stay up to date."""
    scored = config.copy_and_resolve_references()
    del scored["num_train_steps"]
    for field, default in config_lib.model_defaults(scored.model.name).items():
        if field in scored.model and scored.model[field] == default:
            del scored.model[field]
    return hashlib.sha256(scored.to_json_best_effort(sort_keys=True).encode()).hexdigest()[:16]


@functools.cache
def git_state() -> dict[str, Any]:
    """{"git_commit", "git_dirty"} of the repository when this process first asks, at the start of its
    first run: the code it runs, even if HEAD moves while it trains (None when git is unavailable)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                    capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": dirty}


def latest_step(workdir: pathlib.Path) -> int | None:
    if not (workdir / "checkpoints").exists():
        return None
    return checkpoints.manager(workdir, create=False).latest_step()


def read_jsonl(path: pathlib.Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def train_resumably(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict[str, Any]:
    """Trains to `config.num_train_steps` (resuming; nothing when already there) and appends the
    session {start_step, end_step, wall_s} to workdir/sessions.jsonl. Returns the session or {}."""
    start_step = latest_step(workdir) or 0
    if start_step >= config.num_train_steps:
        return {}
    start = time.perf_counter()
    final = train.train_and_evaluate(config, str(workdir))
    session = {"start_step": start_step, "end_step": int(final.step), "wall_s": time.perf_counter() - start,
               "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with open(workdir / SESSIONS_FILE, "a") as f:
        f.write(json.dumps(session) + "\n")
    return session


def trains_here(experiment: registry.Experiment, scale: registry.Scale) -> bool:
    """Whether the row trains in its workdir: a fine-tune, or a float row whose scale does not take
    it from a published model (`registry.published_float`)."""
    return experiment.kind == "finetune" or (experiment.kind == "train"
                                             and registry.published_float(experiment, scale) is None)


def weights_source(experiment: registry.Experiment, scale: registry.Scale, runs_root: str) -> str | None:
    """The folder a row that does not train reads its weights from (its parent's workdir or the
    published float model); None for a row that trains."""
    return None if trains_here(experiment, scale) else registry.starting_point(experiment, scale, runs_root)


def load_weights(folder: str | pathlib.Path) -> runs.Run | published.Published:
    """The model in `folder`: a published model, else the latest checkpoint of a workdir."""
    return published.load(folder) if published.is_published(folder) else runs.load(folder)


def check_start(experiment: registry.Experiment, scale: registry.Scale, runs_root: str) -> int | None:
    """The checkpoint step a fine-tune or post-training row starts from (the published model's, for
    one) and None for a float row that trains. Raises FileNotFoundError when there is nothing to start from."""
    start = registry.starting_point(experiment, scale, runs_root)
    if start is None:
        return None
    if registry.published_float(experiment, scale) is not None:
        if not published.is_published(start):
            raise FileNotFoundError(f"{experiment.name} at scale {scale.name} stands on the published float "
                                    f"model {start}, which is not there (write it with eval.py --publish)")
        return int(published.load_card(start)["checkpoint"])
    step = latest_step(pathlib.Path(start))
    if step is None:
        raise FileNotFoundError(f"{experiment.name} starts from {experiment.parent}, which has no checkpoint in "
                                f"{start}; run `python -m experiments.run "
                                f"{experiment.parent} --scale {scale.name}` (with the same --data/--set) first")
    return step


def shipped_model(config: ml_collections.ConfigDict, workdir: pathlib.Path, source: str | None
                  ) -> tuple[runs.Run | published.Published, gq_jax.Export]:
    """(the run or published model whose model and tokenizer decode, the export of the model it
    ships): a trained row's own checkpoint (`source` None), else `config`'s method applied to the
    weights in its `weights_source` (round-to-nearest of the parent; the published float model as it is)."""
    if source is None:
        run = runs.load(workdir)
        return run, run.export()
    run = load_weights(source)
    quantizer = config_lib.method_for(config.quant, run.model, config.features.num_mel_bins).quantizer
    return run, gq_jax.export(quantizer, run.params, quantizer.init(run.params))


def reference_8bit_bytes(params: Any) -> int:
    """Bytes of the uniform 8-bit model: every weight matrix and embedding at 1 byte per weight plus
    float32 per-channel scales (`SizeReport.uint8_bytes` of them rounded to 8 bits), the other
    leaves float32."""
    rounded = gq_jax.ptq_round(gq_jax.GQConfig(rules=[gq_jax.Rule(registry.WEIGHTS, bits=8, granularity="channel")]))
    return gq_jax.export(rounded, params, rounded.init(params)).sizes.uint8_bytes


def float_weights(sizes: gq_jax.SizeReport) -> list[str]:
    """Paths of the weight matrices and embeddings (`registry.WEIGHTS`) a quantized model ships
    float: none for the parameter-tree methods, the layers Qwix cannot intercept or train for Qwix;
    none for a model that quantizes nothing (float)."""
    if not sizes.quantized_weights:
        return []
    weights = gq_jax.GQConfig(rules=[gq_jax.Rule(registry.WEIGHTS, bits=8)])
    return [path for path in sizes.float_leaves if gq_jax.config.rule_for(path, weights) is not None]


def score_splits(run: runs.Run, params: Any, data: ml_collections.ConfigDict, beam: int,
                 max_examples: int) -> dict[str, dict[str, float]]:
    """{split: scores} of `params` decoded on every split of SPLITS."""
    by_split = eval_cmd.score(run, {"model": params}, data, list(SPLITS), beam, max_examples)
    return {split: by_model["model"] for split, by_model in by_split.items()}


def greedy_rtf(run: runs.Run, params: Any, data: ml_collections.ConfigDict, max_examples: int) -> float:
    """Greedy decoding seconds / audio seconds on the test split (at most 64 utterances)."""
    split = input_pipeline.source(data, "test", max_examples or 64)
    return latency.decode_seconds(run, params, split) / float(split.metadata.durations_s.sum())


def equivalent_commands(experiment: registry.Experiment, scale: registry.Scale,
                        config: ml_collections.ConfigDict, workdir: pathlib.Path) -> list[str]:
    """train.py / eval.py commands that do what this run does (for command.txt)."""
    if experiment.kind == "post":
        method, bits = config.quant.method, config.quant.rules[0][1]
        return [f"python eval.py --workdir {workdir.parent / experiment.parent} --splits {','.join(SPLITS)} "
                f"--ptq {method}:{bits}   # also scores the parent's float weights"]
    base = registry.build_config(registry.Experiment("base", experiment.model, {}), scale, "")
    default = flat_fields(json.loads(base.to_json()))
    flags = [f"--config.{field}={shlex.quote(repr(value) if isinstance(value, tuple) else str(value))}"
             for field, value in flat_fields(json.loads(config.to_json())).items() if default.get(field) != value]
    return [f"python train.py --config {scale.configs[experiment.model].replace('.', '/')}.py --workdir {workdir} "
            + " ".join(flags),
            f"python eval.py --workdir {workdir} --splits {','.join(SPLITS)}"
            + (f"   # then again with --beam {BEAM}" if experiment.beam else "")]


def flat_fields(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{dotted field: value} of a config read back from JSON, lists turned back into tuples."""
    as_tuple = lambda v: tuple(map(as_tuple, v)) if isinstance(v, list) else v
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flat_fields(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = as_tuple(value)
    return flat


def plot_training_curves(records: list[dict[str, Any]], path: pathlib.Path, title: str) -> None:
    """Training loss and dev WER against step (nothing when there are no records)."""
    from training import pictures  # noqa: F401  (sets the Agg backend)
    import matplotlib.pyplot as plt

    if not records:
        return
    fig, (ax_loss, ax_wer) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax_loss.plot([r["step"] for r in records], [r["loss"] for r in records], marker=".")
    ax_loss.set_xlabel("step"), ax_loss.set_ylabel("training loss (NLL)")
    wer = [(r["step"], 100 * r["dev_wer"]) for r in records if r.get("dev_wer") is not None]
    if wer:
        ax_wer.plot(*zip(*wer), marker="o")
    ax_wer.set_xlabel("step"), ax_wer.set_ylabel("dev WER (%)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run_experiment(name: str, settings: Settings = Settings(), argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Trains (resuming), scores and publishes experiment `name`; returns its metrics.json content."""
    experiment, scale = registry.get(name), registry.get_scale(settings.scale)
    provenance = git_state()
    config = experiment_config(experiment, settings)
    workdir = pathlib.Path(settings.runs_root) / scale.name / name
    out = pathlib.Path(settings.results_root) / scale.name / name
    parent_step = check_start(experiment, scale, settings.runs_root)
    source = weights_source(experiment, scale, settings.runs_root)
    trains = source is None
    session = train_resumably(config, workdir) if trains else {}
    if not trains:
        workdir.mkdir(parents=True, exist_ok=True)
    trained_step = latest_step(workdir) if trains else None
    eval_settings = {"splits": list(SPLITS), "beam": BEAM if experiment.beam else None,
                     "max_examples": settings.max_examples, "data": config.data.path,
                     "trained_step": trained_step, "parent_step": parent_step, "config": config_digest(config)}
    previous = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else {}
    if not session and previous.get("eval_settings") == eval_settings:
        folder = publish_folder(experiment, scale, settings, previous["quantized_weights"])
        if folder is None or published.is_published(folder):
            print(f"{name}: up to date (step {trained_step}); nothing to do", flush=True)
            return previous
        run, shipped = shipped_model(config, workdir, source)
        test_wer = json.loads((out / "eval.json").read_text())["greedy"]["test"]["wer"]
        publish_model(experiment, scale, run, shipped, source or workdir, folder, test_wer)
        print(f"{name}: up to date (step {trained_step}); published {folder}", flush=True)
        return previous

    start = time.perf_counter()
    run, shipped = shipped_model(config, workdir, source)
    params, report = shipped.params, shipped.sizes
    decodes = {"greedy": score_splits(run, params, config.data, 1, settings.max_examples)}
    if experiment.beam:
        decodes[f"beam{BEAM}"] = score_splits(run, params, config.data, BEAM, settings.max_examples)
    rtf = greedy_rtf(run, params, config.data, settings.max_examples)
    eval_wall_s = time.perf_counter() - start
    reference = reference_8bit_bytes(run.params)
    timing = (step_time.step_time_ratio(config, settings.step_time_steps) if experiment.kind != "post"
              else {"step_time_s": None, "float_step_time_s": None, "step_time_ratio": None})
    sessions = read_jsonl(workdir / SESSIONS_FILE)
    wall_s, resumes = metrics.run_clock(workdir)
    history = read_jsonl(workdir / metrics.METRICS_FILE)
    dev = [(r["dev_wer"], r["step"]) for r in history if r.get("dev_wer") is not None]
    planned = registry.build_config(experiment, scale, settings.runs_root).num_train_steps
    if experiment.kind == "train" and not trains:  # the published float model: its card's training
        card = run.card
        training = {"budget_steps": card["num_train_steps"], "planned_steps": card["num_train_steps"],
                    "trained_steps": card["checkpoint"], "train_wall_s": card["wall_s"],
                    "train_resumes": card["resumes"], "averaged_steps": card["averaged_steps"],
                    "published_model": source}
    else:
        training = {"budget_steps": 0 if experiment.kind == "post" else config.num_train_steps,
                    "planned_steps": 0 if experiment.kind == "post" else planned,
                    "trained_steps": trained_step, "train_wall_s": wall_s or sum(s["wall_s"] for s in sessions),
                    "train_resumes": resumes}
    result = {
        "name": name, "scale": scale.name, "model": experiment.model, "method": experiment.method, "kind": experiment.kind,
        "table": experiment.table, "description": experiment.description, "parent": experiment.parent,
        "rules": [list(r) for r in config.quant.rules] if report.quantized_weights else [],
        **training, "train_sessions": len(sessions), "eval_wall_s": eval_wall_s,
        "best_dev_wer": min(dev)[0] if dev else None, "best_dev_step": min(dev)[1] if dev else None,
        "size_bytes": report.total_bytes, "float32_bytes": report.float32_bytes,
        "average_bits": report.average_bits if report.quantized_weights else 32.0,
        "quantized_weights": report.quantized_weights, "reference_8bit_bytes": reference,
        "float_weights": float_weights(report),
        "saving_vs_8bit": 1.0 - report.total_bytes / reference, "greedy_rtf": rtf, **timing,
        "eval_settings": eval_settings, "settings": {k: v for k, v in dataclasses.asdict(settings).items()},
        **provenance,
    }
    publish(out, experiment, scale, config, workdir, result, decodes, report, history, argv)
    folder = publish_folder(experiment, scale, settings, report.quantized_weights)
    if folder is not None:
        publish_model(experiment, scale, run, shipped, source or workdir, folder, decodes["greedy"]["test"]["wer"])
    return result


def publish_folder(experiment: registry.Experiment, scale: registry.Scale, settings: Settings,
                   quantized_weights: int) -> pathlib.Path | None:
    """PUBLISH_ROOT/NAME_SCALE for a quantized main row when `--publish-root` is given, else None."""
    if settings.publish_root is None or experiment.table != "main" or not quantized_weights:
        return None
    return pathlib.Path(settings.publish_root) / f"{experiment.name}_{scale.name}"


def publish_model(experiment: registry.Experiment, scale: registry.Scale, run: runs.Run | published.Published,
                  shipped: gq_jax.Export, source: str | pathlib.Path, folder: pathlib.Path, test_wer: float) -> None:
    """Writes the shipped model as the published folder `folder` (`eval.publish_run`), its card naming
    the experiment, scale, method and greedy test WER; `source` is the workdir that trained it."""
    eval_cmd.publish_run(run, shipped, source, folder, experiment=experiment.name, scale=scale.name,
                         method=experiment.method, test_wer=test_wer)


def publish(out: pathlib.Path, experiment: registry.Experiment, scale: registry.Scale,
            config: ml_collections.ConfigDict,
            workdir: pathlib.Path, result: dict[str, Any], decodes: dict[str, Any],
            report: gq_jax.SizeReport, history: list[dict[str, Any]], argv: Sequence[str] | None) -> None:
    """Writes the files of results/NAME/ (see the module docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(config.to_json(indent=2))
    argv = argv if argv is not None else [experiment.name, "--scale", scale.name]
    command = "python -m experiments.run " + " ".join(map(shlex.quote, argv))
    (out / "command.txt").write_text("\n".join(
        [f"# {experiment.name}: {experiment.description} (git {result['git_commit']}"
         + (", uncommitted changes" if result["git_dirty"] else "") + ")", command, "",
         "# equivalent train/eval commands:", *equivalent_commands(experiment, scale, config, workdir)]) + "\n")
    (out / "metrics.json").write_text(json.dumps(result, indent=2, default=_json_default))
    (out / "eval.json").write_text(json.dumps(decodes, indent=2, default=_json_default))
    (out / "sizes.txt").write_text(str(report) + "\n")
    if (workdir / metrics.METRICS_FILE).exists():
        shutil.copyfile(workdir / metrics.METRICS_FILE, out / "training_metrics.jsonl")
    plot_training_curves(history, out / "training_curves.png", experiment.name)
    for picture in ("weights_start.png", "weights_end.png"):
        if (workdir / picture).exists():
            shutil.copyfile(workdir / picture, out / picture)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {value!r}")


def option_argv(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """The options of `args` that differ from `parser`'s defaults, as command-line words (for each
    run's command.txt); always names the scale."""
    default = lambda flag: parser.get_default(flag.lstrip("-").replace("-", "_"))
    words = ["--scale", args.scale]
    for flag, value in (("--budget-steps", args.budget_steps), ("--data", args.data),
                        ("--max-examples", args.max_examples or None), ("--runs-root", args.runs_root),
                        ("--results-root", args.results_root), ("--publish-root", args.publish_root)):
        if value is not None and default(flag) != value:
            words += [flag, str(value)]
    for override in args.set:
        words += ["--set", override]
    if args.step_time_steps != default("--step-time-steps"):
        words += ["--step-time-steps", str(args.step_time_steps)]
    return words


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="experiments of experiments/registry.py, run in this order")
    parser.add_argument("--all", action="store_true", help="every experiment, in registry order (parents first)")
    parser.add_argument("--scale", default="recipe", choices=sorted(registry.SCALES),
                        help="the set-up of every run (experiments/registry.py SCALES)")
    parser.add_argument("--budget-steps", type=int, default=None, help="num_train_steps (default: planned)")
    parser.add_argument("--data", default=None, help="data.path (default: the config's corpus)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="config override")
    parser.add_argument("--max-examples", type=int, default=0, help="utterances per split (0: all)")
    parser.add_argument("--step-time-steps", type=int, default=10, help="timed steps per step-time measurement")
    parser.add_argument("--runs-root", default="runs/results", help="training workdirs (checkpoints)")
    parser.add_argument("--results-root", default="results", help="published files")
    parser.add_argument("--publish-root", default=None,
                        help="also publish each quantized main row as a model folder PUBLISH_ROOT/NAME_SCALE "
                             "(eval.py --model scores it)")
    return parser


def run_in_child(name: str, options: Sequence[str]) -> bool:
    """Runs one experiment as `python -m experiments.run NAME OPTIONS` in a child process, its output
    on this process's streams; whether it succeeded. A child per row returns the row's compiled XLA
    executables to the system when it ends. In one process they accumulate: a Conformer row at scale
    large held 27,947 memory mappings once training had compiled, and in a three-row process
    (2026-12-06) the third row's compilation aborted ("LLVM ERROR: Unable to allocate section
    memory") at Linux's default vm.max_map_count of 65,530."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    done = subprocess.run([sys.executable, "-m", "experiments.run", name, *options], env=env).returncode == 0
    if not done:
        print(f"experiments.run: {name} failed", file=sys.stderr, flush=True)
    return done


def main(argv: Sequence[str] | None = None) -> None:
    """Runs the named experiments in order; with several, each in its own child process
    (`run_in_child`), a failing run is reported and the next one starts (its children then fail
    naming the missing parent); exit status 1 when any failed."""
    parser = make_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    names = list(registry.EXPERIMENTS) if args.all else args.names
    if not names:
        parser.error("name an experiment (or --all)")
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    try:
        settings = Settings(args.scale, args.budget_steps, args.data, tuple(parse_override(s) for s in args.set),
                            args.max_examples, args.step_time_steps, args.runs_root, args.results_root,
                            args.publish_root)
    except ValueError as e:
        sys.exit(f"experiments.run: error: {e}")
    options = option_argv(args, parser)
    if len(names) > 1:
        failed = [name for name in names if not run_in_child(name, options)]
        if failed:
            sys.exit(f"experiments.run: {len(failed)} of {len(names)} failed: {', '.join(failed)}")
        return
    (name,) = names
    try:
        result = run_experiment(name, settings, [name, *options])
    except (ValueError, KeyError, FileNotFoundError, FloatingPointError) as e:
        sys.exit(f"experiments.run: error: {e}")
    print(json.dumps({k: result[k] for k in ("name", "trained_steps", "size_bytes", "average_bits",
                                              "saving_vs_8bit", "greedy_rtf", "step_time_ratio")}, default=str),
          flush=True)


if __name__ == "__main__":
    main()
