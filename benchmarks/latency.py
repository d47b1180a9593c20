"""Greedy-decoding real-time factor and load time: the float checkpoint against the packed model.

    python benchmarks/latency.py --workdir runs/demo/gq4 --packed runs/demo/gq4.gqpk [--split test]

Both are measured in the same run on the same utterances. Load time: orbax restore of the latest
checkpoint (float) against `gq_jax.load_packed` + `dequantize` (packed, dequantised once at load).
RTF = decoding seconds / audio seconds, after one untimed warm-up pass that compiles every bucket
shape. Prints both and the packed/float ratios.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gq_jax  # noqa: E402
from absl import logging as absl_logging  # noqa: E402
from training import evaluate, input_pipeline, runs  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def decode_seconds(run: runs.Run, params, examples) -> float:
    """Seconds to greedy-decode `examples` (after a warm-up pass that compiles every shape)."""
    transcribe = lambda: evaluate.transcribe(run.model, params, examples, run.tokenizer,
                                             run.config.features, run.config.eval_batch_size,
                                             feature_stats=run.feature_stats)
    transcribe()
    return timed(transcribe)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=pathlib.Path, default=ROOT / "runs/demo/gq4")
    parser.add_argument("--packed", type=pathlib.Path, default=ROOT / "runs/demo/gq4.gqpk")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max_examples", type=int, default=64)
    args = parser.parse_args()
    absl_logging.set_verbosity(absl_logging.WARNING)
    if not args.packed.exists():
        sys.exit(f"no packed model {args.packed}; run `make demo` or `eval.py --export` first")

    run, float_load_s = timed(lambda: runs.load(args.workdir))
    packed_params, packed_load_s = timed(lambda: gq_jax.dequantize(gq_jax.load_packed(args.packed)))
    examples = input_pipeline.source(run.config.data, args.split, args.max_examples)
    audio_s = float(examples.metadata.durations_s.sum())
    float_rtf = decode_seconds(run, run.params, examples) / audio_s
    packed_rtf = decode_seconds(run, packed_params, examples) / audio_s
    print(f"{len(examples)} utterances, {audio_s:.1f} s of audio, greedy, batch {run.config.eval_batch_size}")
    print(f"{'model':<8} {'load s':>8} {'RTF':>8}")
    print(f"{'float':<8} {float_load_s:>8.3f} {float_rtf:>8.4f}")
    print(f"{'packed':<8} {packed_load_s:>8.3f} {packed_rtf:>8.4f}")
    print(f"packed/float: load {packed_load_s / float_load_s:.2f}x, RTF {packed_rtf / float_rtf:.2f}x")


if __name__ == "__main__":
    main()
