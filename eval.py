"""Score a trained run: WER/CER/S/D/I per split for its float and its hard-quantized model.

    python eval.py --workdir runs/demo-gq4 [--checkpoint STEP] [--splits test,test_other,real]
                   [--beam N] [--data PATH] [--ptq ptq_round:8] [--export model.gqpk]

Writes `workdir/eval.json` = {split: {model: {wer, cer, substitutions, deletions, insertions,
num_words}}} and `workdir/sizes.json` = {model: size report}, and prints a table. Models: "float" (the latent weights as trained) and, for a
quantized run, "quantized" (the hard-quantized weights the packed file holds); `--ptq METHOD:BITS`
adds post-training quantization of the float weights with the run's rule patterns at BITS bits.
`--data` scores any set: a synth-en folder or another folder of `<split>.jsonl` manifests, a single
manifest file (its stem is the split), a LibriSpeech-layout folder (split folders of any name,
chosen with `--splits`), or one split folder of that layout (its name is the split). `--export PATH` writes the
hard-quantized model as a packed artifact (`gq_jax.save_packed`) and `PATH.size.txt`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
from typing import Any

import ml_collections
from absl import app, flags
from absl import logging as absl_logging

import gq_jax
from corpora import librispeech
from training import evaluate, input_pipeline, runs
from training import config as config_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command-line flags (defined only when run as a script, so the module imports cleanly)."""
    flags.DEFINE_string("workdir", None, "Workdir of a train.py run.")
    flags.DEFINE_integer("checkpoint", None, "Checkpoint step (default: latest).")
    flags.DEFINE_list("splits", None, "Splits to score (default: config.data.eval_splits); 'real' is "
                      "the Asterisk prompts.")
    flags.DEFINE_integer("beam", 1, "Beam width (1: greedy).")
    flags.DEFINE_string("data", None, "Score another set: a folder of <split>.jsonl manifests, one "
                        "manifest file, or a LibriSpeech-layout folder.")
    flags.DEFINE_list("ptq", [], "Extra post-training models, METHOD:BITS (e.g. ptq_round:8).")
    flags.DEFINE_string("export", None, "Write the hard-quantized model here (packed) + size report.")
    flags.DEFINE_integer("max_examples", 0, "Score the first N utterances of each split (0: all).")
    flags.mark_flags_as_required(["workdir"])


def data_for(path: str, base: ml_collections.ConfigDict) -> tuple[ml_collections.ConfigDict, list[str] | None]:
    """(data config reading `path`, its splits when `path` fixes them) for `--data`."""
    data = ml_collections.ConfigDict(base.to_dict())
    p = pathlib.Path(path)
    if not p.exists():
        raise FileNotFoundError(f"--data {path}: no such file or folder")
    if p.is_file() and p.suffix == ".jsonl":
        data.kind, data.path = "manifest", str(p.parent)
        return data, [p.stem]
    if any(p.glob("*.jsonl")):
        data.kind, data.path = "manifest", str(p)
        return data, None
    if librispeech.is_split_folder(p):  # LibriSpeech/<any name>/<speaker>/<chapter>/...
        data.kind, data.path = "librispeech_folder", str(p.parent)
        return data, [p.name]
    data.kind, data.path = "librispeech_folder", str(p)
    return data, None


def ptq_rules(config: ml_collections.ConfigDict, spec: str) -> tuple[str, gq_jax.Quantizer, gq_jax.GQConfig]:
    """('METHOD_BITSbit', quantizer, GQConfig with the run's patterns at BITS bits) from 'METHOD:BITS'."""
    method, _, bits = spec.partition(":")
    if method not in ("ptq_round", "ptq_kmeans") or not bits.isdigit():
        raise ValueError(f"--ptq {spec!r}; expected ptq_round:BITS or ptq_kmeans:BITS")
    quant = ml_collections.ConfigDict(config.quant.to_dict())
    quant.method = method
    quant.rules = tuple((pattern, int(bits), granularity) for pattern, _, granularity in config.quant.rules)
    return f"{method}_{bits}bit", gq_jax.get_method(method), config_lib.gq_config(quant)


def models_to_score(run: runs.Run, ptq: list[str]) -> dict[str, tuple[Any, Any]]:
    """{model name: (float params to decode with, hardened tree or None)}."""
    models: dict[str, tuple[Any, Any]] = {"float": (run.params, None)}
    if run.config.quant.method != "float":
        hardened = run.hardened()
        models["quantized"] = (gq_jax.dequantize(hardened), hardened)
    for spec in ptq:
        name, quantizer, gq_config = ptq_rules(run.config, spec)
        hardened = quantizer.harden(run.params, quantizer.init(run.params, gq_config), gq_config)
        models[name] = (gq_jax.dequantize(hardened), hardened)
    return models


def format_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = [f"{'split':<12} {'model':<18} {'WER %':>7} {'CER %':>7} {'S':>6} {'D':>6} {'I':>6} {'words':>7}"]
    for split, by_model in results.items():
        for model, s in by_model.items():
            lines.append(f"{split:<12} {model:<18} {100 * s['wer']:>7.2f} {100 * s['cer']:>7.2f} "
                         f"{s['substitutions']:>6} {s['deletions']:>6} {s['insertions']:>6} {s['num_words']:>7}")
    return "\n".join(lines)


def score(run: runs.Run, models: dict[str, Any], data: ml_collections.ConfigDict, splits: list[str],
          beam: int = 1, max_examples: int = 0) -> dict[str, dict[str, dict[str, float]]]:
    """{split: {model: WER/CER/S/D/I scores}} of each model's float params decoded on each split."""
    results: dict[str, dict[str, dict[str, float]]] = {}
    for split in splits:
        examples = input_pipeline.source(data, split, max_examples)
        results[split] = {}
        for name, params in models.items():
            refs, hyps = evaluate.transcribe(run.model, params, examples, run.tokenizer,
                                             run.config.features, run.config.eval_batch_size, beam)
            results[split][name] = evaluate.scores(refs, hyps)
    return results


def evaluate_run(workdir: str, checkpoint: int | None = None, splits: list[str] | None = None,
                 beam: int = 1, data: str | None = None, ptq: list[str] = (),
                 export: str | None = None, max_examples: int = 0) -> dict:
    """Scores the run (see the module docstring) and writes eval.json and sizes.json.

    Returns {"checkpoint", "beam", "results" (the eval.json content), "sizes", ["export"]}.
    """
    run = runs.load(workdir, checkpoint)
    data_config, data_splits = (run.config.data, None) if data is None else data_for(data, run.config.data)
    splits = list(data_splits or splits or run.config.data.eval_splits)
    models = models_to_score(run, list(ptq))
    results = score(run, {name: params for name, (params, _) in models.items()}, data_config, splits,
                    beam, max_examples)
    sizes = {name: {k: v for k, v in dataclasses.asdict(gq_jax.size_report(hardened)).items() if k != "leaves"}
             for name, (_, hardened) in models.items() if hardened is not None}
    output = {"checkpoint": run.step, "beam": beam, "results": results, "sizes": sizes}
    (pathlib.Path(workdir) / "eval.json").write_text(json.dumps(results, indent=2))
    (pathlib.Path(workdir) / "sizes.json").write_text(json.dumps(sizes, indent=2))
    if export:
        hardened = run.hardened()
        size_bytes = gq_jax.save_packed(export, hardened)
        report = gq_jax.size_report(gq_jax.load_packed(export))
        pathlib.Path(str(export) + ".size.txt").write_text(f"{report}\nfile: {size_bytes} bytes\n")
        output["export"] = {"path": str(export), "file_bytes": size_bytes}
    return output


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    absl_logging.set_verbosity(absl_logging.WARNING)
    try:
        output = evaluate_run(FLAGS.workdir, FLAGS.checkpoint, FLAGS.splits, FLAGS.beam, FLAGS.data,
                              FLAGS.ptq, FLAGS.export, FLAGS.max_examples)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"eval.py: error: {e}")
    print(f"{FLAGS.workdir} at step {output['checkpoint']} (beam {output['beam']}):")
    print(format_table(output["results"]))
    if "export" in output:
        print(pathlib.Path(output["export"]["path"] + ".size.txt").read_text())


if __name__ == "__main__":
    define_flags()
    app.run(main)
