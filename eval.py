"""Score a trained run or a published model: WER/CER/S/D/I per split.

    python eval.py --workdir runs/demo-gq4 [--checkpoint STEP] [--average N] [--splits test,real]
                   [--beam N | --decoder ctc | --decoder streaming --chunk_ms 100] [--data PATH]
                   [--ptq ptq_round:8] [--export model.gqpk]
                   [--publish results/models/NAME]
    python eval.py --model results/models/NAME --data PATH [--splits ...]
                   [--beam N | --decoder ctc | --decoder streaming --chunk_ms 100]
                   [--ptq ptq_round:4] [--runtime float32|resident|int8]
    python eval.py ... --beam 4 --lm LM.npz [--lm_weight 0.3] [--lm_bonus 0.6]

`--average N` scores the mean of the latent weights of the run's N latest checkpoints (up to
`--checkpoint`). `--decoder ctc` decodes with the auxiliary CTC head (best path) instead of the
transducer; `--decoder streaming` decodes each utterance alone as a stream of `--chunk_ms` chunks
(`models.streaming.greedy`, batch size 1; a model trained with `data.feature_normalization=global`),
whose transcripts are the greedy ones. `--publish DIR` writes the run's model (its hard-quantized
weights with the other leaves in float32, or for a float run every weight as float16) as a published folder (`training/published.py`) that `--model DIR`
scores with no workdir. `--runtime` (with `--model`) chooses how the published weights are held
while decoding: `float32` dequantizes them at load; `resident` keeps quantized leaves as their
b-bit indices, codebook and scales and expands each inside the jitted computation just before use
(`gq_jax.runtime`, the same transcripts); `int8` also runs the weight matmuls as int8 x int8 with
int32 accumulation (an approximation: its WER is what it costs). `--lm` fuses a token n-gram
language model (`python -m models.ngram`, counted with the model's tokenizer) into beam search:
each non-blank token scores log P(k) + `--lm_weight` log P_LM(k | hypothesis) + `--lm_bonus`
(`models.decoding.LMFusion`).

Writes `workdir/eval.json` = {split: {model: {wer, cer, substitutions, deletions, insertions,
num_words, utterance_errors, utterance_words}}} and `workdir/sizes.json` = {model: size report}, and prints a table (`--model`: prints
only; its model is "published", and each `--ptq` row quantizes the published weights). Models:
"float" (the latent weights as trained) and, for a
quantized run, "quantized" (the hard-quantized weights the packed file holds); `--ptq METHOD:BITS`
adds post-training quantization of the float weights with the run's rule patterns at BITS bits.
`--data` scores any set: a synth-en folder or another folder of `<split>.jsonl` manifests, a single
manifest file (its stem is the split), a LibriSpeech-layout folder (split folders of any name,
chosen with `--splits`), or one split folder of that layout (its name is the split). `--export PATH` writes the
hard-quantized model as a packed artifact (`gq_jax.save_packed`) and `PATH.size.txt`.
`--results_json PATH` also writes the scores there (eval.json's format; for `--model`, whose
scores are otherwise only printed, what `python -m experiments.compare` reads).
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
from corpora import batching, librispeech
from experiments import statistics
from gq_jax import runtime as runtime_lib
from models import decoding, ngram
from training import evaluate, input_pipeline, metrics, published, runs
from training import config as config_lib

FLAGS = flags.FLAGS
RUNTIMES = ("float32", "resident", "int8")


def define_flags() -> None:
    """The command-line flags (defined only when run as a script, so the module imports cleanly)."""
    flags.DEFINE_string("workdir", None, "Workdir of a train.py run.")
    flags.DEFINE_string("model", None, "A published model folder (instead of --workdir).")
    flags.DEFINE_integer("checkpoint", None, "Checkpoint step (default: latest).")
    flags.DEFINE_integer("average", 1, "Average the latent weights of this many latest checkpoints.")
    flags.DEFINE_enum("decoder", "transducer", ["transducer", "ctc", "streaming"], "transducer (greedy "
                      "or beam), ctc (best path of the auxiliary CTC head) or streaming (greedy, "
                      "chunk by chunk, batch size 1).")
    flags.DEFINE_integer("chunk_ms", 100, "With --decoder streaming: the audio of each chunk, in ms.")
    flags.DEFINE_string("publish", None, "Write the run's model here as a published folder.")
    flags.DEFINE_list("splits", None, "Splits to score (default: config.data.eval_splits); 'real' is "
                      "the Asterisk prompts.")
    flags.DEFINE_integer("beam", 1, "Beam width (1: greedy).")
    flags.DEFINE_string("data", None, "Score another set: a folder of <split>.jsonl manifests, one "
                        "manifest file, or a LibriSpeech-layout folder.")
    flags.DEFINE_list("ptq", [], "Extra post-training models, METHOD:BITS (e.g. ptq_round:8).")
    flags.DEFINE_string("export", None, "Write the hard-quantized model here (packed) + size report.")
    flags.DEFINE_string("results_json", None, "Also write the scores here, as eval.json holds them "
                        "({split: {model: scores}}; with --model the only file written).")
    flags.DEFINE_integer("max_examples", 0, "Score the first N utterances of each split (0: all).")
    flags.DEFINE_string("lm", None, "With --beam > 1: a token n-gram language model (python -m "
                        "models.ngram) fused into beam search.")
    # Defaults: near the best of both large models' dev sweeps (results/recognizers/lm_fusion).
    flags.DEFINE_float("lm_weight", 0.3, "With --lm: the weight w of its log-probabilities.")
    flags.DEFINE_float("lm_bonus", 0.6, "With --lm: the score b added per emitted token.")
    flags.DEFINE_enum("runtime", "float32", RUNTIMES, "With --model: float32 (dequantize at load), "
                      "resident (packed weights resident, expanded where used) or int8 (resident, "
                      "int8 x int8 matmuls).")
    flags.register_multi_flags_validator(
        ["workdir", "model"], lambda f: (f["workdir"] is None) != (f["model"] is None),
        message="give exactly one of --workdir (a training run) and --model (a published model)")


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


def ptq_quantizer(run: runs.Run | published.Published, spec: str) -> tuple[str, gq_jax.Quantizer]:
    """('METHOD_BITSbit', the post-training quantizer METHOD with the run's rules at BITS bits, their
    granularity and channel axes kept) from 'METHOD:BITS'."""
    method, _, bits = spec.partition(":")
    known = config_lib.post_training_methods()
    if method not in known or not bits.isdigit():
        raise ValueError(f"--ptq {spec!r}; expected METHOD:BITS with METHOD one of {known}")
    quant = ml_collections.ConfigDict(run.config.quant.to_dict())
    quant.method = method
    quant.rules = tuple((pattern, int(bits), *rest) for pattern, _, *rest in run.config.quant.rules)
    return f"{method}_{bits}bit", config_lib.method_for(quant, run.model,
                                                         run.config.features.num_mel_bins).quantizer


def ptq_models(run: runs.Run | published.Published, ptq: list[str]) -> dict[str, tuple[Any, gq_jax.Export]]:
    """{'METHOD_BITSbit': (its float params, its export)}: each `ptq` spec applied to `run.params`."""
    models = {}
    for spec in ptq:
        name, quantizer = ptq_quantizer(run, spec)
        post = gq_jax.export(quantizer, run.params, quantizer.init(run.params))
        models[name] = (post.params, post)
    return models


def models_to_score(run: runs.Run, exported: gq_jax.Export, ptq: list[str], latent: bool = True
                    ) -> dict[str, tuple[Any, gq_jax.Export | None]]:
    """{model name: (float params to decode with, its export or None)}: "float" (the latent
    weights; with `latent=False` only when nothing is quantized), "quantized" (`exported`, when it
    quantizes anything) and one row per `ptq` spec."""
    quantizes = bool(exported.sizes.quantized_weights)
    models: dict[str, tuple[Any, gq_jax.Export | None]] = {}
    if latent or not quantizes:
        models["float"] = (run.params, None)
    if quantizes:
        models["quantized"] = (exported.params, exported)
    return {**models, **ptq_models(run, ptq)}


def size_rows(models: dict[str, tuple[Any, gq_jax.Export | None]]) -> dict[str, dict[str, Any]]:
    """{model name: its export's size report without the per-leaf rows} for the exported models."""
    return {name: {k: v for k, v in dataclasses.asdict(shipped.sizes).items() if k != "leaves"}
            for name, (_, shipped) in models.items() if shipped is not None}


def format_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = [f"{'split':<12} {'model':<18} {'WER %':>7} {'CER %':>7} {'S':>6} {'D':>6} {'I':>6} {'words':>7}"]
    for split, by_model in results.items():
        for model, s in by_model.items():
            lines.append(f"{split:<12} {model:<18} {100 * s['wer']:>7.2f} {100 * s['cer']:>7.2f} "
                         f"{s['substitutions']:>6} {s['deletions']:>6} {s['insertions']:>6} {s['num_words']:>7}")
    return "\n".join(lines)


def score(run: runs.Run | published.Published, models: dict[str, Any], data: ml_collections.ConfigDict,
          splits: list[str], beam: int = 1, max_examples: int = 0, ctc: bool = False, chunk_ms: int = 0,
          fusion: decoding.LMFusion | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """{split: {model: WER/CER/S/D/I scores}} of each model's float params decoded on each split
    (with `run`'s model, tokenizer and features; `ctc`: by the CTC head; `chunk_ms` > 0: greedy,
    streamed in chunks of that many ms; `fusion`: beam search with that language model)."""
    if chunk_ms and (beam != 1 or ctc):
        raise ValueError(f"streaming decodes greedily with the transducer; got beam={beam}, ctc={ctc}")
    if fusion is not None:
        if beam == 1 or ctc or chunk_ms:
            raise ValueError("a language model (--lm) is fused into beam search: give --beam > 1 and "
                             "the transducer decoder")
        ngram.check_tokenizer(fusion.lm, run.tokenizer, "given with --lm")
    results: dict[str, dict[str, dict[str, float]]] = {}
    for split in splits:
        examples = input_pipeline.source(data, split, max_examples)
        results[split] = {}
        for name, params in models.items():
            if chunk_ms:
                chunk_samples = chunk_ms * batching.SAMPLE_RATE_HZ // 1000
                refs, hyps = evaluate.transcribe_streaming(run.model, params, examples, run.tokenizer,
                                                           run.feature_stats, chunk_samples)
            else:
                refs, hyps = evaluate.transcribe(run.model, params, examples, run.tokenizer,
                                                 run.config.features, run.config.eval_batch_size, beam, ctc,
                                                 run.feature_stats, fusion)
            # Per-utterance errors and words too, for the paired bootstrap (experiments/statistics.py).
            results[split][name] = {**evaluate.scores(refs, hyps), **statistics.utterance_record(refs, hyps)}
    return results


def decoder_name(ctc: bool, chunk_ms: int) -> str:
    """"ctc", "streaming <chunk_ms> ms" or "transducer"."""
    return "ctc" if ctc else f"streaming {chunk_ms} ms" if chunk_ms else "transducer"


def evaluate_run(workdir: str, checkpoint: int | None = None, splits: list[str] | None = None,
                 beam: int = 1, data: str | None = None, ptq: list[str] = (),
                 export: str | None = None, max_examples: int = 0, average: int = 1,
                 ctc: bool = False, publish: str | None = None, latent: bool = True, chunk_ms: int = 0,
                 fusion: decoding.LMFusion | None = None) -> dict:
    """Scores the run (see the module docstring) and writes eval.json and sizes.json; `latent=False`
    skips the latent float row of a quantized run (one decode less).

    Returns {"checkpoint", "beam", "decoder", "results" (the eval.json content), "sizes", ["export"],
    ["publish"]}.
    """
    run = runs.average(workdir, average, checkpoint)
    data_config, data_splits = (run.config.data, None) if data is None else data_for(data, run.config.data)
    splits = list(data_splits or splits or run.config.data.eval_splits)
    exported = run.export()
    models = models_to_score(run, exported, list(ptq), latent)
    results = score(run, {name: params for name, (params, _) in models.items()}, data_config, splits,
                    beam, max_examples, ctc, chunk_ms, fusion)
    sizes = size_rows(models)
    output = {"checkpoint": run.step, "averaged_steps": list(run.averaged_steps), "beam": beam,
              "decoder": decoder_name(ctc, chunk_ms), "results": results, "sizes": sizes}
    (pathlib.Path(workdir) / "eval.json").write_text(json.dumps(results, indent=2))
    (pathlib.Path(workdir) / "sizes.json").write_text(json.dumps(sizes, indent=2))
    if export:
        size_bytes = gq_jax.save_packed(export, exported.hardened)
        report = gq_jax.size_report(gq_jax.load_packed(export))
        pathlib.Path(str(export) + ".size.txt").write_text(f"{report}\nfile: {size_bytes} bytes\n")
        output["export"] = {"path": str(export), "file_bytes": size_bytes}
    if publish:
        publish_run(run, exported, workdir, publish)
        output["publish"] = publish
    return output


TRAINING_CARD_FIELDS = ("source", "checkpoint", "averaged_steps", "num_train_steps", "wall_s", "resumes")


def init_lineage(init_from: str) -> dict[str, Any]:
    """{} for a run trained from scratch; else {"init_from"} and, for a published model,
    {"init_training"}: its card's training fields (with its own `init_training`, if any)."""
    if not init_from:
        return {}
    if not published.is_published(init_from):
        return {"init_from": str(init_from)}
    parent = published.load_card(init_from)
    fields = TRAINING_CARD_FIELDS + ("init_from", "init_training")
    return {"init_from": str(init_from), "init_training": {field: parent[field] for field in fields if field in parent}}


def publish_run(run: runs.Run | published.Published, exported: gq_jax.Export, workdir: str | pathlib.Path,
                folder: str | pathlib.Path, **card: Any) -> gq_jax.SizeReport:
    """Writes `exported` (the model of `run`, a workdir's run or a published model) as a published
    folder whose card names the run, its checkpoints, budget, wall time and resumes (a published
    model's own card's, with `quantized_from` naming it), and `card`'s extra fields. A run that
    started from other weights names them (`init_from`); where those are a published model, the
    card also keeps that model's training fields (`init_training`), so a model trained in stages
    carries the steps and wall time of every stage."""
    if isinstance(run, published.Published):
        trained = {**{field: run.card[field] for field in TRAINING_CARD_FIELDS}, "quantized_from": str(workdir)}
    else:
        wall_s, resumes = metrics.run_clock(workdir)
        trained = {"source": str(workdir), "checkpoint": run.step, "averaged_steps": list(run.averaged_steps),
                   "num_train_steps": run.config.num_train_steps, "wall_s": wall_s, "resumes": resumes,
                   **init_lineage(run.config.quant.init_from)}
    card = {**trained, "method": run.config.quant.method, **card}
    # A float run ships float16 weights (half the file); a quantized one keeps its float leaves.
    float_dtype = "float32" if exported.sizes.quantized_weights else "float16"
    return published.publish(run.config, run.tokenizer, exported.hardened, folder, card, float_dtype,
                             run.feature_stats)


def serving(model: published.Published, folder: str, runtime: str) -> tuple[published.Published, Any]:
    """(`model` as `runtime` decodes it, the parameters it decodes with): the dequantized float32
    params, or for "resident" / "int8" the packed file's resident tree (`gq_jax.runtime`)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"--runtime {runtime!r}; expected one of {RUNTIMES}")
    if runtime == "float32":
        return model, model.params
    served = runtime_lib.resident_model(model.model, int8_matmuls=runtime == "int8")
    return (dataclasses.replace(model, model=served),
            runtime_lib.load_resident(pathlib.Path(folder) / published.MODEL_FILE))


def evaluate_published(folder: str, data: str, splits: list[str] | None = None, beam: int = 1,
                       max_examples: int = 0, ctc: bool = False, ptq: list[str] = (),
                       runtime: str = "float32", chunk_ms: int = 0, fusion: decoding.LMFusion | None = None
                       ) -> dict:
    """Scores the published model in `folder` on `data` (see `data_for`), held as `runtime` says
    (see `serving`), and each `ptq` quantization of its weights; returns {"beam", "decoder",
    "runtime", "results": {split: {"published" and each ptq name: scores}}, "sizes": the stored
    model's report, "ptq_sizes": {name: size report}}."""
    model = published.load(folder)
    data_config, data_splits = data_for(data, model.config.data)
    splits = list(data_splits or splits or model.config.data.eval_splits)
    served, params = serving(model, folder, runtime)
    results = score(served, {"published": params}, data_config, splits, beam, max_examples, ctc, chunk_ms,
                    fusion)
    post = ptq_models(model, list(ptq))
    if post:
        post_results = score(model, {name: p for name, (p, _) in post.items()}, data_config, splits,
                             beam, max_examples, ctc, chunk_ms, fusion)
        results = {split: {**results[split], **post_results[split]} for split in splits}
    return {"beam": beam, "decoder": decoder_name(ctc, chunk_ms), "runtime": runtime,
            "results": results, "sizes": str(model.sizes), "ptq_sizes": size_rows(post)}


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    absl_logging.set_verbosity(absl_logging.WARNING)
    ctc = FLAGS.decoder == "ctc"
    chunk_ms = FLAGS.chunk_ms if FLAGS.decoder == "streaming" else 0
    try:
        fusion = decoding.LMFusion(ngram.load(FLAGS.lm), FLAGS.lm_weight, FLAGS.lm_bonus) if FLAGS.lm else None
        if FLAGS.model:
            if FLAGS.data is None:
                raise ValueError("--model needs --data: the corpus to score it on")
            output = evaluate_published(FLAGS.model, FLAGS.data, FLAGS.splits, FLAGS.beam,
                                        FLAGS.max_examples, ctc, FLAGS.ptq, FLAGS.runtime, chunk_ms, fusion)
        else:
            if FLAGS.runtime != "float32":
                raise ValueError("--runtime chooses how a published model is held; give it with --model")
            output = evaluate_run(FLAGS.workdir, FLAGS.checkpoint, FLAGS.splits, FLAGS.beam, FLAGS.data,
                                  FLAGS.ptq, FLAGS.export, FLAGS.max_examples, FLAGS.average, ctc,
                                  FLAGS.publish, chunk_ms=chunk_ms, fusion=fusion)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"eval.py: error: {e}")
    decoder = output["decoder"] if ctc or chunk_ms else f"beam {output['beam']}"
    if fusion is not None:
        decoder += f", language model {FLAGS.lm} with weight {FLAGS.lm_weight:g}, bonus {FLAGS.lm_bonus:g}"
    if FLAGS.model:
        print(f"{FLAGS.model} ({decoder}, {FLAGS.runtime} runtime):")
    else:
        averaged = output["averaged_steps"]
        print(f"{FLAGS.workdir} at step {output['checkpoint']}"
              + (f" (mean of steps {averaged})" if len(averaged) > 1 else "") + f" ({decoder}):")
    print(format_table(output["results"]))
    if FLAGS.results_json:
        pathlib.Path(FLAGS.results_json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(FLAGS.results_json).write_text(json.dumps(output["results"], indent=2))
    if "export" in output:
        print(pathlib.Path(output["export"]["path"] + ".size.txt").read_text())
    if "publish" in output:
        print(f"published to {output['publish']}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
