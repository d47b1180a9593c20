"""Regenerate results/README.md (tables, WER-against-bits plots, headline) from results/<run>/ files.

    python -m experiments.report [--results-root results] [--runs-root runs/results]

Reads only what `python -m experiments.run NAME --scale SCALE` wrote (results/SCALE/NAME/metrics.json
and eval.json); a registry run without them is listed as "not yet measured", never estimated, or,
when its workdir under `--runs-root` (default runs/results) has a checkpoint, as running with that
checkpoint's step. The headline scale (registry.HEADLINE_SCALE) first, the other measured scales as
appendices. WER is corpus-level on the test
split, greedy, unless a column says otherwise; "bits" is the average index bits per quantized
weight (32 for float); "saving" is 1 - size / (uniform 8-bit size of the same model).

A WER difference between two runs is stated with the 95 % interval of a paired bootstrap over the
test utterances (experiments/statistics.py) when both runs' eval.json carry per-utterance scores
(`statistics.utterance_record`); "lossless" means that interval's upper end is at most +2 %
relative of the float WER. Rows without per-utterance scores are compared by their WERs alone,
and the report says so.
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any, Sequence

from experiments import registry, statistics
from experiments.run import BEAM, SPLITS, latest_step
from training import pictures

PAPER_SAVING = 0.3073  # the paper's size saving against the 8-bit model
MATCH_RELATIVE = statistics.LOSSLESS_RELATIVE  # "lossless": within 2 % relative of the float WER
UNPAIRED = "no per-utterance scores: no interval"
MISSING = "not yet measured"
PLOTTED_METHODS = ("gq", "uniform_ste", "ptq_round", "ptq_kmeans", "qwix")


def load_results(folder_of_scale: pathlib.Path) -> dict[str, dict[str, Any]]:
    """{run name: metrics.json plus "eval" (eval.json)} for every registry run with both files."""
    found = {}
    for name in registry.EXPERIMENTS:
        folder = folder_of_scale / name
        if (folder / "metrics.json").exists() and (folder / "eval.json").exists():
            found[name] = {**json.loads((folder / "metrics.json").read_text()),
                           "eval": json.loads((folder / "eval.json").read_text())}
    return found


def test_wer(result: dict[str, Any]) -> float:
    return result["eval"]["greedy"]["test"]["wer"]


def paired(a: dict[str, Any], b: dict[str, Any], split: str = "test",
           decode: str = "greedy") -> statistics.WerDifference | None:
    """WER_B − WER_A of rows `a` and `b` on `split` with its paired bootstrap interval, or None when
    either row lacks per-utterance scores there or they scored different numbers of utterances."""
    scores = [row["eval"].get(decode, {}).get(split, {}) for row in (a, b)]
    if not all(statistics.UTTERANCE_ERRORS in s and statistics.UTTERANCE_WORDS in s for s in scores):
        return None
    (sa, sb) = scores
    if len(sa[statistics.UTTERANCE_ERRORS]) != len(sb[statistics.UTTERANCE_ERRORS]):
        return None
    return statistics.paired_bootstrap(sa[statistics.UTTERANCE_ERRORS], sa[statistics.UTTERANCE_WORDS],
                                       sb[statistics.UTTERANCE_ERRORS], sb[statistics.UTTERANCE_WORDS])


def lossless_verdict(difference: statistics.WerDifference, float_wer: float) -> str:
    """'lossless: yes' when the interval's upper end is at most MATCH_RELATIVE of `float_wer`."""
    verdict = "yes" if statistics.lossless(difference, float_wer, MATCH_RELATIVE) else "no"
    return (f"lossless: {verdict} (upper end {100 * difference.high:+.2f} vs +{100 * MATCH_RELATIVE * float_wer:.2f} "
            "points allowed)")


def _pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}"


def budget(result: dict[str, Any]) -> str:
    if result["kind"] == "post":
        return "post-training"
    text = f"{result['trained_steps']}/{result['planned_steps']} steps"
    return text + (" (partial)" if result["trained_steps"] < result["planned_steps"] else "")


def main_table(model: str, results: dict[str, dict[str, Any]], scale: str,
               running: dict[str, str] | None = None) -> list[str]:
    """The main rows of `model`; a row without results reads `running[name]` (a run in progress)
    or MISSING."""
    beam = f"beam{BEAM}"
    header = (["run", "bits"] + [f"WER {s} %" for s in SPLITS] + [f"WER {s} beam {BEAM} %" for s in SPLITS]
              + ["size bytes", "saving vs 8-bit %", "greedy RTF", "step time / float", "budget"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, experiment in registry.EXPERIMENTS.items():
        if experiment.model != model or experiment.table != "main":
            continue
        link = f"[{name}]({scale}/{name}/command.txt)"
        if name not in results:
            lines.append(f"| {name} | {(running or {}).get(name, MISSING)} |" + " |" * (len(header) - 2))
            continue
        r = results[name]
        greedy = [_pct(r["eval"]["greedy"][s]["wer"]) for s in SPLITS]
        beamed = [_pct(r["eval"][beam][s]["wer"]) if beam in r["eval"] else "-" for s in SPLITS]
        ratio = "-" if r["step_time_ratio"] is None else f"{r['step_time_ratio']:.2f}"
        lines.append("| " + " | ".join([link, f"{r['average_bits']:.2f}", *greedy, *beamed, str(r["size_bytes"]),
                                        _pct(r["saving_vs_8bit"]), f"{r['greedy_rtf']:.4f}", ratio, budget(r)]) + " |")
    return lines


def differences_table(model: str, results: dict[str, dict[str, Any]]) -> list[str]:
    """Every measured quantized or control row of `model` against its float row: WER_row − WER_float
    in points with the paired 95 % interval, on each split of SPLITS, greedy and beam BEAM ("-" where
    either row lacks that decode's per-utterance scores); [] without a measured float row or any
    other measured row."""
    float_run = results.get(f"{model}_float")
    if float_run is None:
        return []
    columns = [(decode, split) for decode in ("greedy", f"beam{BEAM}") for split in SPLITS]
    header = ["run", "bits"] + [f"Δ {split} {decode.replace('beam', 'beam ')}" for decode, split in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, experiment in registry.EXPERIMENTS.items():
        if experiment.model != model or experiment.parent is None or name not in results:
            continue
        cells = []
        for decode, split in columns:
            d = paired(float_run, results[name], split, decode)
            cells.append("-" if d is None else
                         f"{100 * d.difference:+.2f} [{100 * d.low:+.2f}, {100 * d.high:+.2f}]")
        lines.append(f"| {name} | {results[name]['average_bits']:.2f} | " + " | ".join(cells) + " |")
    return lines if len(lines) > 2 else []


def ablation_table(results: dict[str, dict[str, Any]], scale: str) -> list[str]:
    header = ["setting", "value"] + [f"WER test % at {b} bits" for b in registry.ABLATION_BITS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for setting, (default, others) in registry.ABLATIONS.items():
        for value in (default, *others):
            cells = []
            for bits in registry.ABLATION_BITS:
                name = registry.ablation_name(setting, value, bits)
                cells.append(f"[{_pct(test_wer(results[name]))}]({scale}/{name}/command.txt)" if name in results
                             else f"{MISSING} ({name})")
            lines.append(f"| {setting} | {value}{' (default)' if value == default else ''} | " + " | ".join(cells) + " |")
    return lines


def snap_steps_note(scale: registry.Scale) -> str:
    """The quantization frequencies of the F ablation in steps at `scale` (they are budget fractions)."""
    _, others = registry.ABLATIONS["snap_every F"]
    steps = [registry.build_config(registry.get(registry.ablation_name("snap_every F", value, 2)), scale, "runs")
             .quant.snap_every for value in others]
    return (f"The quantization frequency F = {' and '.join(others)} is every {' and '.join(map(str, steps))} "
            f"steps of the {scale.finetune_steps['rnnt']}-step fine-tune at this scale.")


def plot_points(model: str, results: dict[str, dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """{method: [(bits, test WER), ...]} of the measured main uniform-bit rows of `model`."""
    points: dict[str, list[tuple[float, float]]] = {}
    for name, r in results.items():
        if r["model"] == model and r["table"] == "main" and r["method"] in PLOTTED_METHODS:
            points.setdefault(r["method"], []).append((r["average_bits"], test_wer(r)))
    return points


def _relative(wer: float, reference: float) -> float | None:
    return None if reference == 0 else (wer - reference) / reference


def match_verdict(wer: float, reference: float) -> str:
    """The relative change of `wer` against `reference` and whether it matches: at most MATCH_RELATIVE worse."""
    rel = _relative(wer, reference)
    if rel is None:
        return "reference WER is 0: relative difference undefined"
    return f"{100 * rel:+.1f} % relative: {'yes' if rel <= MATCH_RELATIVE else 'no'}"


def control_line(model: str, results: dict[str, dict[str, Any]]) -> str:
    """How much of a fine-tune's change is the extra training alone: the float model fine-tuned with
    the same budget, unquantized, against the float run."""
    control, float_run = results.get(f"{model}_float_finetune"), results[f"{model}_float"]
    if control is None:
        return (f"- Control (float fine-tuned with the same budget, {model}_float_finetune): {MISSING}; "
                "until it is, a difference against float also holds the fine-tune's extra training.")
    difference = paired(float_run, control)
    rel = _relative(test_wer(control), test_wer(float_run))
    if difference is not None:
        change = f" ({statistics.describe(difference)})"
    else:
        change = ("" if rel is None else f" ({100 * rel:+.1f} % relative)") + f" ({UNPAIRED})"
    return (f"- Control: the float model fine-tuned with the same budget, unquantized, has WER "
            f"{_pct(test_wer(control))} % against {_pct(test_wer(float_run))} %{change}: that much of every "
            "fine-tune's change is the extra training.")


def headline(model: str, results: dict[str, dict[str, Any]]) -> list[str]:
    """The paper's claims for `model`, answered from the measured rows only."""
    lines = [f"**{model}**"]
    float_run = results.get(f"{model}_float")
    low_bit = [r for r in results.values() if r["model"] == model and r["method"] == "gq"
               and r["table"] == "main" and r["average_bits"] <= 5]
    if float_run is None or not low_bit:
        lines.append(f"- GQ at <= 5 bits within {100 * MATCH_RELATIVE:.0f} % relative of float WER: {MISSING} "
                     f"(needs {model}_float and a GQ run at <= 5 bits).")
    else:
        reference = test_wer(float_run)
        control = results.get(f"{model}_float_finetune")
        lines.append(control_line(model, results))
        for r in sorted(low_bit, key=lambda r: -r["average_bits"]):
            differences = [paired(float_run, r)] + ([] if control is None else [paired(control, r)])
            unpaired = f" ({UNPAIRED})" if any(d is None for d in differences) else ""
            lines.append(f"- {r['name']} ({r['average_bits']:.2f} bits): WER {_pct(test_wer(r))} % vs float "
                         f"{_pct(reference)} % ({judged(differences[0], test_wer(r), reference)})"
                         + ("" if control is None else f", vs the control {_pct(test_wer(control))} % "
                            f"({judged(differences[1], test_wer(r), test_wer(control))})") + f"{unpaired}; "
                         f"{_pct(r['saving_vs_8bit'])} % smaller than 8-bit "
                         f"(paper: {100 * PAPER_SAVING:.2f} %): {'yes' if r['saving_vs_8bit'] >= PAPER_SAVING else 'no'}"
                         f"; budget {budget(r)}.")
    for other in ("uniform_ste", "ptq_round", "ptq_kmeans", "qwix"):
        lines.append(f"- GQ vs {other} at equal bits: " + comparison(model, other, results))
    return lines


def judged(difference: statistics.WerDifference | None, wer: float, float_wer: float) -> str:
    """A row of WER `wer` against a float row: the paired `difference`, its interval and the lossless
    verdict, or without per-utterance scores (None) the relative change and the 2 % rule on the WERs."""
    if difference is None:
        return match_verdict(wer, float_wer)
    return f"{statistics.describe(difference)}; {lossless_verdict(difference, float_wer)}"


def comparison(model: str, other: str, results: dict[str, dict[str, Any]]) -> str:
    bits_list = registry.MAIN_BITS[other]
    parts = []
    for bits in bits_list:
        gq, base = results.get(f"{model}_gq_{bits}"), results.get(f"{model}_{other}_{bits}")
        if gq is None or base is None:
            parts.append(f"{bits} bits {MISSING}")
            continue
        delta = test_wer(gq) - test_wer(base)
        kept_float = f", {other} kept {', '.join(base['float_weights'])} float" if base.get("float_weights") else ""
        difference = paired(base, gq)
        if difference is None:
            verdict = f"{100 * delta:+.2f} points, GQ {'better' if delta < 0 else 'not better'}"
        else:
            verdict = f"{statistics.describe(difference)}, {better_or_worse(difference, 'GQ')}"
        parts.append(f"{bits} bits: GQ {_pct(test_wer(gq))} % vs {_pct(test_wer(base))} % ({verdict}{kept_float})"
                     + (f", {UNPAIRED}" if difference is None else ""))
    return "; ".join(parts) + "."


def better_or_worse(difference: statistics.WerDifference, name: str) -> str:
    """What the interval of WER_B − WER_A says about B (`name`): better, worse, or no difference shown."""
    if difference.high < 0:
        return f"{name} better"
    if difference.low > 0:
        return f"{name} worse"
    return "no difference shown (the interval contains 0)"


def paired_winner(default: str, wers: dict[str, float],
                  differences: dict[str, statistics.WerDifference]) -> str:
    """Names the best value of an ablated setting only where the paired interval shows it better than
    the default (WER_value − WER_default below 0 over the whole interval); otherwise says that none is."""
    better = [v for v, d in differences.items() if d.high < 0]
    if not better:
        return f"none shown better than {default}"
    return f"best {min(better, key=wers.get)} (shown better than {default})"


def ablation_headline(results: dict[str, dict[str, Any]]) -> list[str]:
    """Per ablated setting and bits, over the values measured so far: with per-utterance scores, each
    value's paired difference from the default and whether any interval excludes 0 (a setting that
    matters); without them, the spread of test WER over the values against twice the binomial standard
    error at the default row's WER. A value is called best only where that evidence supports it (its
    interval below 0; a spread beyond the noise). The values still missing are named; with the default row or every
    other value missing, the part is "not yet measured"."""
    lines = []
    for setting, (default, others) in registry.ABLATIONS.items():
        parts = []
        for bits in registry.ABLATION_BITS:
            names = {v: registry.ablation_name(setting, v, bits) for v in (default, *others)}
            distinct = [v for v in others if names[v] != names[default]]  # init "auto" is "uniform" at 4 bits
            measured = [v for v in distinct if names[v] in results]
            if names[default] not in results or not measured:
                parts.append(f"{bits} bits {MISSING}")
                continue
            missing = "".join(f", {v} {MISSING}" for v in distinct if v not in measured)
            wers = {v: test_wer(results[names[v]]) for v in (default, *measured)}
            best, spread = min(wers, key=wers.get), max(wers.values()) - min(wers.values())
            differences = {v: paired(results[names[default]], results[names[v]]) for v in measured}
            if all(d is not None for d in differences.values()):
                matters = any(d.low > 0 or d.high < 0 for d in differences.values())
                stated = ", ".join(f"{v} {statistics.describe(d)}" for v, d in differences.items())
                parts.append(f"{bits} bits: against {default}: {stated} ({'matters' if matters else 'within noise'}"
                             f": paired bootstrap), {paired_winner(default, wers, differences)}{missing}")
                continue
            words = results[names[default]]["eval"]["greedy"]["test"]["num_words"]
            noise = 2 * standard_error(wers[default], words)
            verdict = "matters" if spread > noise else "within noise"
            winner = f"best {best}" if spread > noise else f"lowest WER {best}, within noise"
            parts.append(f"{bits} bits: spread {100 * spread:.2f} WER points ({verdict}: twice the standard error "
                         f"is {100 * noise:.2f}), {winner} ({UNPAIRED}){missing}")
        lines.append(f"- {setting}: " + "; ".join(parts) + ".")
    return lines


def data_note(results: dict[str, dict[str, Any]]) -> list[str]:
    """Warns when rows come from other data or model settings than the registry's."""
    notes = []
    for name, r in sorted(results.items()):
        overrides = r["settings"]["overrides"]
        if r["settings"]["data"] is not None or overrides or r["eval_settings"]["max_examples"]:
            notes.append(f"- {name}: measured with data={r['eval_settings']['data']}, max_examples="
                         f"{r['eval_settings']['max_examples']}, overrides {overrides}: not the published set-up.")
    return notes


def setup_line(model: str, results: dict[str, dict[str, Any]]) -> str:
    """Parameters and float budget of `model`'s float run, or "not yet measured"."""
    float_run = results.get(f"{model}_float")
    if float_run is None:
        return f"- {model}: float run {MISSING}."
    words = float_run["eval"]["greedy"]["test"]["num_words"]
    if float_run.get("published_model"):
        averaged = float_run["averaged_steps"]
        source = (f"float model the published {float_run['published_model']} ({budget(float_run)}"
                  + (f", the mean of checkpoints {averaged[0]}-{averaged[-1]}" if averaged else "") + ")")
    else:
        source = (f"float run {budget(float_run)}, best dev WER {_pct(float_run['best_dev_wer'])} % at step "
                  f"{float_run['best_dev_step']}")
    return (f"- {model}: {float_run['float32_bytes'] // 4:,} parameters; {source}. Test has {words:,} "
            f"words: at the float WER the standard error is about {_pct(standard_error(test_wer(float_run), words))} "
            "points (binomial approximation, which ignores that errors cluster by utterance: the paired "
            "bootstrap judges the differences where per-utterance scores exist).")


def standard_error(wer: float, words: int) -> float:
    """sqrt(p (1 - p) / N) at WER p (capped at 1) over N reference words: the binomial approximation."""
    p = min(wer, 1.0)
    return (p * (1 - p) / words) ** 0.5


def operating_point(results: dict[str, dict[str, Any]]) -> str:
    """The float models' test WERs of a scale ("rnnt 56.3 %, conformer 61.6 %"), or MISSING."""
    wers = [f"{model} {_pct(test_wer(results[f'{model}_float']), 1)} %" for model in registry.MODELS
            if f"{model}_float" in results]
    return ", ".join(wers) or MISSING


def running_runs(runs_root: pathlib.Path, scale: registry.Scale, results: dict[str, dict[str, Any]]
                 ) -> dict[str, str]:
    """{name: "running: checkpoint S of N steps"} of the registry runs of `scale` with a checkpoint
    under `runs_root/scale/name` and no results yet."""
    found = {}
    for name, experiment in registry.EXPERIMENTS.items():
        step = latest_step(runs_root / scale.name / name)
        if name not in results and step is not None:
            planned = registry.build_config(experiment, scale, str(runs_root)).num_train_steps
            found[name] = f"running: checkpoint {step} of {planned} steps"
    return found


def render_scale(scale: registry.Scale, results: dict[str, dict[str, Any]], root: pathlib.Path,
                 running: dict[str, str] | None = None) -> list[str]:
    """The section of one scale: set-up, headline, a main table, paired differences and plot per model,
    ablations. A scale other than registry.HEADLINE_SCALE is an appendix named for its operating point,
    with only the models and ablations it measured or is training; the headline scale lists every row."""
    headline_scale = scale.name == registry.HEADLINE_SCALE
    title = f"## Scale `{scale.name}`: {scale.description}"
    if not headline_scale:
        title = (f"## Appendix: scale `{scale.name}`, an operating point at float test WER "
                 f"{operating_point(results)} ({scale.description})")
    listed = [registry.get(name) for name in {*results, *(running or {})}]
    models = [model for model in registry.MODELS if headline_scale or any(e.model == model for e in listed)]
    ablations = headline_scale or any(e.table == "ablation" for e in listed)
    out = [title, "",
           f"Fine-tune budget: {', '.join(f'{m} {scale.finetune_steps[m]} steps' for m in models)}. "
           f"Run a row with `python -m experiments.run NAME --scale {scale.name}`.", "",
           *[setup_line(model, results) for model in models], ""]
    notes = data_note(results)
    if notes:
        out += ["### Warning: rows not measured with the published set-up", "", *notes, ""]
    out += ["### Headline", ""]
    for model in models:
        out += [*headline(model, results), ""]
    if ablations:
        out += ["Ablations (RNN-T, test WER):", "", *ablation_headline(results), ""]
    for model in models:
        out += [f"### {model}", "", *main_table(model, results, scale.name, running), ""]
        differences = differences_table(model, results)
        if differences:
            out += [f"WER differences to {model}_float in points, with the paired 95 % interval, on each split "
                    "and decode:", "", *differences, ""]
        points = plot_points(model, results)
        if points:
            picture = f"{scale.name}/wer_against_bits_{model}.png"
            float_run = results.get(f"{model}_float")
            pictures.wer_against_bits(points, root / picture, f"{model} ({scale.name}): test WER against bits",
                                      baselines=() if float_run is None else [("float", test_wer(float_run))])
            out += [f"![{model} WER against bits]({picture})", ""]
        else:
            out += [f"WER against bits: {MISSING}.", ""]
    if ablations:
        out += ["### RNN-T ablations", "", "Each row changes one setting of the default GQ fine-tune "
                "(the default value is the main `rnnt_gq_<bits>` run, and so is the init that \"auto\" picks "
                f"at those bits). {snap_steps_note(scale)}", "", *ablation_table(results, scale.name), ""]
    return out


def render(results_by_scale: dict[str, dict[str, dict[str, Any]]], root: pathlib.Path,
           running: dict[str, dict[str, str]] | None = None) -> str:
    out = ["# Results", "", "Generated by `python -m experiments.report` from the files in "
           "`results/<scale>/<run>/`; do not edit by hand. Each run folder holds its config.json, command.txt "
           "(the exact command and the equivalent train.py/eval.py commands, with the git commit), metrics.json, "
           "eval.json, sizes.txt and pictures. Reproduce a row with the command in its command.txt.", "",
           "WER is corpus-level, in %; `bits` is the average index bits per quantized weight (all weight "
           "matrices and embeddings; biases and norms stay float); `saving vs 8-bit` is 1 - size / size of "
           "the same weights at uniform 8 bits (1 byte per weight + float32 per-channel scales); `step time / "
           "float` is measured back to back on the machine of the run; `budget` is steps trained / planned.", "",
           "WER differences are B − A in WER points with the 95 % interval of a paired bootstrap over the test "
           f"utterances ({statistics.RESAMPLES:,} resamples, seed {statistics.SEED}; experiments/statistics.py), "
           "where both runs' eval.json hold per-utterance scores. **Lossless** means the interval's upper end is "
           f"at most +{100 * MATCH_RELATIVE:.0f} % relative of the float WER. Rows without per-utterance scores "
           "are compared by their WERs alone, marked \"no interval\".", ""]
    others = sorted((s for s in registry.SCALES.values() if s.name != registry.HEADLINE_SCALE),
                    key=lambda scale: -len(results_by_scale[scale.name]))
    running = running or {}
    out += render_scale(registry.get_scale(registry.HEADLINE_SCALE), results_by_scale[registry.HEADLINE_SCALE], root,
                        running.get(registry.HEADLINE_SCALE))
    unmeasured = [scale for scale in others if not results_by_scale[scale.name] and not running.get(scale.name)]
    for scale in others:
        if scale not in unmeasured:
            out += render_scale(scale, results_by_scale[scale.name], root, running.get(scale.name))
    if unmeasured:
        out += ["## Scales not yet measured", "", *[f"- `{scale.name}`: {scale.description}." for scale in unmeasured], ""]
    return "\n".join(out)


def write_report(root: str | pathlib.Path = "results", runs_root: str | pathlib.Path | None = None) -> pathlib.Path:
    """Writes root/README.md; with `runs_root` (training workdirs), rows still training say so."""
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "README.md"
    results_by_scale = {name: load_results(root / name) for name in registry.SCALES}
    running = {} if runs_root is None else {
        name: running_runs(pathlib.Path(runs_root), registry.get_scale(name), results_by_scale[name])
        for name in registry.SCALES}
    path.write_text(render(results_by_scale, root, running))
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-root", default="results")
    parser.add_argument("--runs-root", default="runs/results",
                        help="training workdirs: a row with a checkpoint and no results is marked running")
    args = parser.parse_args(argv)
    print(f"wrote {write_report(args.results_root, args.runs_root)}")


if __name__ == "__main__":
    main()
