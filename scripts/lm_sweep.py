"""Choose the language-model weight and bonus of shallow fusion on a dev split, for a published model.

    python scripts/lm_sweep.py --model results/models/NAME --data data/synth-en-large --lm LM.npz \\
        [--split dev] [--max_examples 500] [--beam 4] [--weights 0.2,0.3,0.4] [--bonuses 0,0.3,0.6] \\
        [--out sweep.json]

Decodes the split with beam search once without the language model and once per (weight, bonus)
pair (`eval.py --lm`; the model loads and compiles once), prints WER and CER per setting with the
lowest-WER one marked, and writes {"no_lm": scores, "w=W b=B": scores, ..., "best": {"weight",
"bonus"}} to `--out` (scores in eval.json's format, so `python -m experiments.compare
OUT:no_lm "OUT:w=W b=B"` pairs any two). A progress bar counts the settings.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import tqdm

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import eval as eval_cmd  # noqa: E402
from models import decoding, ngram  # noqa: E402
from training import published  # noqa: E402


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def sweep(model_folder: str, data: str, lm_path: str, split: str, max_examples: int, beam: int,
          weights: list[float], bonuses: list[float]) -> dict:
    """{"no_lm": scores, "w=W b=B": scores per pair, "best": {"weight", "bonus", "wer"}}."""
    model = published.load(model_folder)
    data_config, _ = eval_cmd.data_for(data, model.config.data)
    lm = ngram.load(lm_path)
    run_split = lambda fusion: eval_cmd.score(model, {"published": model.params}, data_config, [split], beam,
                                              max_examples, fusion=fusion)[split]["published"]
    settings = [None] + [(weight, bonus) for weight in weights for bonus in bonuses]
    results = {}
    for setting in tqdm.tqdm(settings, desc="decode per setting", unit="setting"):
        name = "no_lm" if setting is None else f"w={setting[0]:g} b={setting[1]:g}"
        results[name] = run_split(None if setting is None else decoding.LMFusion(lm, *setting))
    name, best = min(((k, v) for k, v in results.items() if k != "no_lm"), key=lambda item: item[1]["wer"])
    weight, bonus = (float(part.split("=")[1]) for part in name.split())
    results["best"] = {"weight": weight, "bonus": bonus, "wer": best["wer"]}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a published model folder")
    parser.add_argument("--data", required=True, help="the corpus (as eval.py --data)")
    parser.add_argument("--lm", required=True, help="a models.ngram language model (.npz)")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--max_examples", type=int, default=500, help="the first N utterances (0: all)")
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--weights", type=floats, default=[0.2, 0.3, 0.4])
    parser.add_argument("--bonuses", type=floats, default=[0.0, 0.3, 0.6])
    parser.add_argument("--out", help="write the scores here (JSON)")
    args = parser.parse_args(argv)
    if args.beam < 2 or not args.weights or not args.bonuses:
        sys.exit("lm_sweep.py: error: fusion needs --beam >= 2 and at least one weight and one bonus")
    try:
        results = sweep(args.model, args.data, args.lm, args.split, args.max_examples, args.beam,
                        args.weights, args.bonuses)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"lm_sweep.py: error: {e}")
    best = f"w={results['best']['weight']:g} b={results['best']['bonus']:g}"
    print(f"{args.model} on {args.split} (first {args.max_examples or 'all'} utterances), beam {args.beam}, "
          f"language model {args.lm}:")
    print(f"{'setting':<14} {'WER %':>7} {'CER %':>7}")
    for name, scores in results.items():
        if name != "best":
            print(f"{name:<14} {100 * scores['wer']:>7.2f} {100 * scores['cer']:>7.2f}" + ("  <- best" if name == best else ""))
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
