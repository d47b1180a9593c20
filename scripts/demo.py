"""The main job (`make demo`): float RNN-T on synth-en, GQ 4-bit fine-tuning, evaluation, export.

    python scripts/demo.py [--out runs/demo] [--data data/synth-en-small]

1. builds the `small` synth-en corpus (cached: existing files are kept);
2. trains `configs/demo.py` in float (`OUT/float`), then fine-tunes it with GQ at 4 bits
   (`configs/demo_gq.py`, `OUT/gq4`); both resume if interrupted;
3. scores the test split: the float model, its uniform 8-bit round-to-nearest (PTQ) version, and
   the GQ 4-bit model; exports the GQ model packed (`OUT/gq4.gqpk`);
4. prints a table of WER and model size, writes it to `OUT/results.md` and the WER-against-bits
   chart to `OUT/wer_bits.png`.

The same steps as commands:

    python -m corpora.synth --out data/synth-en-small --size small
    python train.py --config configs/demo.py --workdir runs/demo/float --config.data.path=DATA
    python train.py --config configs/demo_gq.py --workdir runs/demo/gq4 \
        --config.data.path=DATA --config.quant.init_from=runs/demo/float
    python eval.py --workdir runs/demo/float --splits test --ptq ptq_round:8
    python eval.py --workdir runs/demo/gq4 --splits test --export runs/demo/gq4.gqpk
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from absl import logging as absl_logging  # noqa: E402

import eval as eval_cmd  # noqa: E402
import train  # noqa: E402
from configs import demo, demo_gq  # noqa: E402
from corpora import synth  # noqa: E402
from training import pictures  # noqa: E402


def results_table(float_eval: dict, gq_eval: dict, split: str) -> str:
    """Markdown table: model, bits per weight, WER, CER, size in bytes and relative to float32."""
    float32_bytes = gq_eval["sizes"]["quantized"]["float32_bytes"]
    rows = [("float32", 32.0, float_eval["results"][split]["float"], float32_bytes),
            ("uniform 8-bit (PTQ round)", float_eval["sizes"]["ptq_round_8bit"]["average_bits"],
             float_eval["results"][split]["ptq_round_8bit"], float_eval["sizes"]["ptq_round_8bit"]["total_bytes"]),
            ("GQ 4-bit", gq_eval["sizes"]["quantized"]["average_bits"], gq_eval["results"][split]["quantized"],
             gq_eval["export"]["file_bytes"])]
    lines = [f"| model ({split}) | bits/weight | WER % | CER % | size (bytes) | vs float32 |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, bits, s, size in rows:
        lines.append(f"| {name} | {bits:.1f} | {100 * s['wer']:.2f} | {100 * s['cer']:.2f} | {size} | "
                     f"{size / float32_bytes:.3f} |")
    return "\n".join(lines)


def overridden(config, data: pathlib.Path, steps: int | None, batch_size: int | None):
    """`config` reading `data`, with the step count and batch size replaced when given."""
    config.data.path = str(data)
    if steps is not None:
        config.num_train_steps = steps
        config.eval_every_steps = config.checkpoint_every_steps = config.log_every_steps = steps
    if batch_size is not None:
        config.batch_size = config.eval_batch_size = batch_size
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "runs" / "demo")
    parser.add_argument("--data", type=pathlib.Path, default=ROOT / "data" / "synth-en-small")
    parser.add_argument("--split", default="test")
    parser.add_argument("--size", default="small", choices=sorted(synth.SIZES),
                        help="corpus size (tiny + small step counts: a quick smoke run)")
    parser.add_argument("--float_steps", type=int, default=None, help="override the float steps")
    parser.add_argument("--gq_steps", type=int, default=None, help="override the GQ steps")
    parser.add_argument("--batch_size", type=int, default=None, help="override the batch size")
    args = parser.parse_args()
    absl_logging.set_verbosity(absl_logging.WARNING)
    start = time.time()

    print(f"[1/4] synth-en {args.size} corpus in {args.data}", flush=True)
    synth.build(args.data, args.size, seed=0, jobs=os.cpu_count() or 1)

    float_dir, gq_dir = args.out / "float", args.out / "gq4"
    float_config = overridden(demo.get_config(), args.data, args.float_steps, args.batch_size)
    print(f"[2/4] float training in {float_dir}", flush=True)
    train.train_and_evaluate(float_config, str(float_dir))
    gq_config = overridden(demo_gq.get_config(), args.data, args.gq_steps, args.batch_size)
    gq_config.quant.init_from = str(float_dir)
    print(f"[3/4] GQ 4-bit fine-tuning in {gq_dir}", flush=True)
    train.train_and_evaluate(gq_config, str(gq_dir))

    print(f"[4/4] evaluation on {args.split}", flush=True)
    float_eval = eval_cmd.evaluate_run(str(float_dir), splits=[args.split], ptq=["ptq_round:8"])
    gq_eval = eval_cmd.evaluate_run(str(gq_dir), splits=[args.split], export=str(args.out / "gq4.gqpk"))
    table = results_table(float_eval, gq_eval, args.split)
    pictures.wer_against_bits(
        {"float32": [(32.0, float_eval["results"][args.split]["float"]["wer"])],
         "uniform PTQ": [(8.0, float_eval["results"][args.split]["ptq_round_8bit"]["wer"])],
         "GQ": [(4.0, gq_eval["results"][args.split]["quantized"]["wer"])]},
        args.out / "wer_bits.png")
    minutes = (time.time() - start) / 60
    (args.out / "results.md").write_text(f"{table}\n\n(demo ran in {minutes:.1f} min)\n")
    print(table)
    print(f"\npacked GQ model: {args.out / 'gq4.gqpk'}; pictures: {gq_dir}/weights_start.png, "
          f"{gq_dir}/weights_end.png, {args.out / 'wer_bits.png'}; {minutes:.1f} min in all")


if __name__ == "__main__":
    main()
