"""Beam-search speed: a batch searched in lockstep against one utterance at a time.

    python benchmarks/beam_search.py --workdir runs/results/cpu/conformer_float [--split test]

Decodes the same utterances with modified beam search (width 4) twice in the same run: in eval
batches (`models.decoding.beam_search` advances every utterance of a batch together, one joint and
one prediction call per round) and with batch size 1 (one utterance at a time, as the search ran
before). Each is timed after an untimed warm-up pass that compiles its shapes. Prints both
real-time factors (decoding seconds / audio seconds), the speed-up, and whether the hypotheses match.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from absl import logging as absl_logging  # noqa: E402
from training import evaluate, input_pipeline, runs  # noqa: E402


def decode(run: runs.Run, examples: list, batch_size: int, beam: int) -> tuple[list[str], float]:
    """(hypotheses, seconds) of a beam search of `examples`, after a warm-up pass."""
    transcribe = lambda: evaluate.transcribe(run.model, run.params, examples, run.tokenizer,
                                             run.config.features, batch_size, beam=beam,
                                             feature_stats=run.feature_stats)
    transcribe()
    start = time.perf_counter()
    _, hypotheses = transcribe()
    return hypotheses, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=pathlib.Path, required=True, help="a training workdir")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max_examples", type=int, default=32)
    parser.add_argument("--beam", type=int, default=4)
    args = parser.parse_args()
    absl_logging.set_verbosity(absl_logging.WARNING)

    run = runs.load(args.workdir)
    examples = input_pipeline.source(run.config.data, args.split, args.max_examples)
    audio_s = float(examples.metadata.durations_s.sum())
    batch_size = run.config.eval_batch_size
    batched, batched_s = decode(run, examples, batch_size, args.beam)
    # Batch size 1 decodes in another order (bucket by bucket): compare as multisets of texts.
    single, single_s = decode(run, examples, 1, args.beam)
    print(f"{len(examples)} utterances, {audio_s:.1f} s of audio, beam {args.beam}, {args.workdir}")
    print(f"{'search':<22} {'seconds':>8} {'RTF':>8}")
    print(f"{'one utterance at once':<22} {single_s:>8.2f} {single_s / audio_s:>8.4f}")
    print(f"{f'batch {batch_size} in lockstep':<22} {batched_s:>8.2f} {batched_s / audio_s:>8.4f}")
    print(f"speed-up {single_s / batched_s:.2f}x; same hypotheses: {sorted(batched) == sorted(single)}")


if __name__ == "__main__":
    main()
