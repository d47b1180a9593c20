"""The main job (`make demo`): a published float RNN-T, quantized after training and with GQ fine-tuning.

    python scripts/demo.py [--model results/models/rnnt_synth_large] [--out runs/demo]
                           [--data data/synth-en-large-demo] [--size large_demo] [--bits 4,2]
                           [--beam 4] [--lm results/lm/char6_synth_large.npz] [--lm_weight 0.3]

1. builds synth-en `large_demo` (the first 2,000 train, 200 dev and 500 test utterances of `large`,
   so the published model, trained on `large`, never read its dev or test sentences; cached);
2. scores the published float model on the test split, and round-to-nearest post-training
   quantization (PTQ) of its weights at 8 bits and at each of `--bits`. Every model is scored twice: greedily, and by beam search of width `--beam` with the
   language model `--lm` fused in (`models.decoding.LMFusion`; the committed character 6-gram of
   `large`'s training transcripts by default, `--lm ''` for plain beam search, `--beam 1` for
   greedy only);
3. fine-tunes it with GQ at each of `--bits` (`configs/demo_gq.py`, `OUT/gq<b>`; resumable) and
   scores the hard-quantized models, exporting each packed (`OUT/gq<b>.gqpk`); with several
   `--estimators` (GQ's backward, `gq_jax.GQConfig.estimator`), one fine-tune per estimator and
   width (`OUT/gq<b>-<estimator>`), a short-run comparison of the estimators;
4. prints a table of WER and the paired 95 % interval of the difference to float over the test
   utterances under each decoder, bits and packed size, writes it to `OUT/results.md` (each row's
   scores per decoder, with the per-utterance error and word counts the intervals come from, to
   `OUT/scores.json`) and the WER-against-bits chart of both decoders to `OUT/wer_bits.png`.

The same steps as commands:

    python -m corpora.synth --out data/synth-en-large-demo --size large_demo
    python eval.py --model results/models/rnnt_synth_large --data data/synth-en-large-demo \
        --splits test --ptq ptq_round:8,ptq_round:4,ptq_round:2
    python eval.py ... (the same) --beam 4 --lm results/lm/char6_synth_large.npz
    python train.py --config configs/demo_gq.py --workdir runs/demo/gq4
    python eval.py --workdir runs/demo/gq4 --splits test --export runs/demo/gq4.gqpk
    python eval.py --workdir runs/demo/gq4 --splits test --beam 4 --lm results/lm/char6_synth_large.npz
    (and the same for gq2 with --config.quant.rules='((".*(kernel|embedding)", 2, "channel"),)')
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from absl import logging as absl_logging  # noqa: E402

import eval as eval_cmd  # noqa: E402
import train  # noqa: E402
from configs import demo_gq  # noqa: E402
from corpora import synth  # noqa: E402
from experiments import statistics  # noqa: E402
from models import decoding, ngram  # noqa: E402
from training import pictures, published, runs  # noqa: E402

LM = "results/lm/char6_synth_large.npz"
Decoder = tuple[str, int, decoding.LMFusion | None]  # (name, beam width, language model fusion)
Row = tuple[str, float, dict[str, dict], int]  # (name, bits per weight, {decoder name: scores}, packed bytes)


def decoders(beam: int, lm: str, lm_weight: float, lm_bonus: float, model: pathlib.Path) -> list[Decoder]:
    """Greedy, then (for `beam` > 1) beam search with the language model in file `lm` fused in
    (plain beam search for `lm` empty). ValueError if the language model was counted with a
    tokenizer other than that of the published `model`."""
    if beam == 1:
        return [("greedy", 1, None)]
    fusion = decoding.LMFusion(ngram.load(lm), lm_weight, lm_bonus) if lm else None
    if fusion is not None:
        ngram.check_tokenizer(fusion.lm, published.load(model).tokenizer, f"--lm {lm}")
    return [("greedy", 1, None), (f"beam {beam}" + (" + LM" if fusion else ""), beam, fusion)]


def fine_tune_config(model: pathlib.Path, data: pathlib.Path, bits: int, steps: int | None,
                     estimator: str | None = None):
    """`configs/demo_gq.py` for the published `model` at `bits` on `data` (`steps` replaces the
    budget, `estimator` the config's gradient estimator)."""
    config = demo_gq.get_config(str(model))
    config.data.path = str(data)
    config.quant.rules = ((demo_gq.WEIGHTS, bits, "channel"),)
    if estimator is not None:
        config.quant.estimator = estimator
    if steps is not None:
        config.num_train_steps = steps
        config.eval_every_steps = config.checkpoint_every_steps = config.log_every_steps = steps
        config.quant.alpha.end_step = max(1, steps // 2)
    return config


def versus_float(scores: dict, float_scores: dict) -> str:
    """The paired bootstrap of `scores` against the float model's, over the same test utterances."""
    keys = (statistics.UTTERANCE_ERRORS, statistics.UTTERANCE_WORDS)
    comparison = statistics.paired_bootstrap(*(float_scores[k] for k in keys), *(scores[k] for k in keys))
    return statistics.describe(comparison)


def results_table(rows: list[Row], float_scores: dict[str, dict], float32_bytes: int, split: str) -> str:
    """Markdown: model, bits per weight, for each decoder its WER and the paired difference to
    float, packed size and its ratio to float32."""
    names = list(float_scores)
    lines = [f"| model ({split}) | bits/weight | " + " | ".join(f"{d} WER % | vs float, {d} (paired)" for d in names)
             + " | packed bytes | vs float32 |",
             "| --- | ---: | " + " | ".join("---: | ---" for _ in names) + " | ---: | ---: |"]
    for name, bits, scores, size in rows:
        cells = [f"{100 * scores[d]['wer']:.2f} | "
                 + ("" if scores is float_scores else versus_float(scores[d], float_scores[d])) for d in names]
        lines.append(f"| {name} | {bits:.1f} | {' | '.join(cells)} | {size} | {size / float32_bytes:.3f} |")
    return "\n".join(lines)


def post_training_rows(args: argparse.Namespace, widths: list[int], decoders_: list[Decoder]
                       ) -> tuple[dict[str, dict], list[Row], int]:
    """The published float model and its round-to-nearest PTQ at 8 bits and each of `widths`, scored
    on `args.split` by each decoder: (the float model's scores per decoder, the rows, float32 bytes)."""
    ptq = [f"ptq_round:{b}" for b in sorted({8, *widths}, reverse=True)]
    scored: dict[str, dict[str, dict]] = {}  # {model: {decoder: scores}}
    for decoder, beam, fusion in decoders_:
        published = eval_cmd.evaluate_published(str(args.model), str(args.data), [args.split], beam,
                                                max_examples=args.max_examples, ptq=ptq, fusion=fusion)
        for name, scores in published["results"][args.split].items():
            scored.setdefault(name, {})[decoder] = scores
    ptq_sizes = published["ptq_sizes"]
    float32_bytes = next(iter(ptq_sizes.values()))["float32_bytes"]
    rows: list[Row] = [("float32 (published)", 32.0, scored["published"], float32_bytes)]
    rows += [(f"PTQ round {name.split('_')[-1]}", ptq_sizes[name]["average_bits"], scored[name],
              ptq_sizes[name]["total_bytes"]) for name in scored if name != "published"]
    return scored["published"], rows, float32_bytes


def quantized_scores(workdir: pathlib.Path, split: str, max_examples: int, decoders_: list[Decoder]
                     ) -> dict[str, dict]:
    """{decoder: scores} of the hard-quantized model of the fine-tune in `workdir` beyond the first
    decoder (which `eval_cmd.evaluate_run` scored, writing the workdir's eval.json)."""
    run = runs.load(str(workdir))
    quantized = {"quantized": eval_cmd.models_to_score(run, run.export(), [], latent=False)["quantized"][0]}
    return {decoder: eval_cmd.score(run, quantized, run.config.data, [split], beam, max_examples,
                                    fusion=fusion)[split]["quantized"]
            for decoder, beam, fusion in decoders_[1:]}


def fine_tune_rows(args: argparse.Namespace, widths: list[int], decoders_: list[Decoder]) -> list[Row]:
    """GQ fine-tunes of the published model at each of `widths` (one per estimator of
    `args.estimators`, each run and row then named by its estimator), exported packed and scored
    hard-quantized by each decoder."""
    estimators = args.estimators.split(",") if args.estimators else [None]
    fine_tunes = [(bits, estimator) for estimator in estimators for bits in widths]
    rows: list[Row] = []
    for i, (bits, estimator) in enumerate(fine_tunes):
        compared = len(estimators) > 1
        name, suffix = (f"gq{bits}-{estimator}", f" ({estimator})") if compared else (f"gq{bits}", "")
        workdir = args.out / name
        print(f"[3/4] GQ {bits}-bit fine-tuning in {workdir} ({i + 1}/{len(fine_tunes)})", flush=True)
        train.train_and_evaluate(fine_tune_config(args.model, args.data, bits, args.gq_steps, estimator),
                                 str(workdir))
        gq = eval_cmd.evaluate_run(str(workdir), splits=[args.split], max_examples=args.max_examples,
                                   export=str(args.out / f"{name}.gqpk"), latent=False)
        scores = {decoders_[0][0]: gq["results"][args.split]["quantized"],
                  **quantized_scores(workdir, args.split, args.max_examples, decoders_)}
        rows.append((f"GQ {bits}-bit{suffix}", gq["sizes"]["quantized"]["average_bits"], scores,
                     gq["export"]["file_bytes"]))
    return rows


def chart_series(rows: list[Row], decoder: str) -> dict[str, list[tuple[float, float]]]:
    """{"PTQ round-to-nearest, <decoder>" and "GQ fine-tuned[ (estimator)], <decoder>": [(bits, WER)]}."""
    series: dict[str, list[tuple[float, float]]] = {}
    for name, bits, scores, _ in rows[1:]:
        estimator = name[name.index(" ("):] if " (" in name else ""
        method = "PTQ round-to-nearest" if name.startswith("PTQ") else f"GQ fine-tuned{estimator}"
        series.setdefault(f"{method}, {decoder}", []).append((bits, scores[decoder]["wer"]))
    return series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=pathlib.Path, default=ROOT / demo_gq.PUBLISHED)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "runs" / "demo")
    parser.add_argument("--data", type=pathlib.Path, default=ROOT / "data" / "synth-en-large-demo")
    parser.add_argument("--size", default="large_demo", choices=sorted(synth.SIZES))
    parser.add_argument("--split", default="test")
    parser.add_argument("--bits", default="4,2", help="comma-separated GQ / PTQ widths")
    parser.add_argument("--estimators", default=None,
                        help="comma-separated GQ gradient estimators to compare (default: the config's)")
    parser.add_argument("--gq_steps", type=int, default=None, help="override the fine-tune steps")
    parser.add_argument("--max_examples", type=int, default=0, help="score the first N test utterances")
    parser.add_argument("--beam", type=int, default=4, help="beam width of the second decoder (1: greedy only)")
    parser.add_argument("--lm", default=str(ROOT / LM),
                        help="language model fused into beam search (python -m models.ngram; '' for none)")
    parser.add_argument("--lm_weight", type=float, default=0.3, help="its weight w (the RNN-T's dev sweep)")
    parser.add_argument("--lm_bonus", type=float, default=0.6, help="its per-token bonus b")
    args = parser.parse_args()
    if args.beam < 1:
        parser.error(f"--beam {args.beam}: give 1 (greedy only) or a beam width > 1")
    try:
        decoders_ = decoders(args.beam, args.lm, args.lm_weight, args.lm_bonus, args.model)
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    absl_logging.set_verbosity(absl_logging.WARNING)
    start = time.time()
    widths = [int(b) for b in args.bits.split(",")]

    print(f"[1/4] synth-en {args.size} corpus in {args.data}", flush=True)
    synth.build(args.data, args.size, seed=0, jobs=os.cpu_count() or 1)
    print(f"[2/4] {args.model} and its PTQ at {sorted({8, *widths}, reverse=True)} bits on {args.split}, "
          f"decoded by {', '.join(name for name, _, _ in decoders_)}", flush=True)
    float_scores, rows, float32_bytes = post_training_rows(args, widths, decoders_)
    rows += fine_tune_rows(args, widths, decoders_)

    print(f"[4/4] table and pictures in {args.out}", flush=True)
    table = results_table(rows, float_scores, float32_bytes, args.split)
    pictures.wer_against_bits(
        {series: points for decoder, _, _ in decoders_ for series, points in chart_series(rows, decoder).items()},
        args.out / "wer_bits.png", baselines=[(f"float32, {d}", s["wer"]) for d, s in float_scores.items()])
    minutes = (time.time() - start) / 60
    (args.out / "results.md").write_text(f"{table}\n\n(demo ran in {minutes:.1f} min)\n")
    (args.out / "scores.json").write_text(json.dumps(
        {name: {"bits_per_weight": bits, "packed_bytes": size, "decoders": s} for name, bits, s, size in rows},
        indent=1))
    print(table)
    print(f"\npacked GQ models: {args.out}/gq*.gqpk; pictures: {args.out}/gq*/weights_end.png, "
          f"{args.out / 'wer_bits.png'}; {minutes:.1f} min in all")


if __name__ == "__main__":
    main()
