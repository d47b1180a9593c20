"""synth-en generation speed: seconds of audio generated per wall-clock second (x real time).

    python benchmarks/synth.py [--count N] [--jobs J] [--seed S]

Builds a fresh corpus of N train utterances (the seen-voice mix: flite 40 %, festival 30 %,
espeak-ng 30 %) in a temporary folder with `corpora.synth.build` over J worker processes, and
prints the audio duration, the wall time and their ratio. The baseline is real time (1x); the
goal is >= 50x on 2 cores, so run it on an otherwise idle machine. A second pass over the same
folder measures the resume check (it must render nothing).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from corpora import synth, text  # noqa: E402

GOAL_X_REAL_TIME = 50.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=96)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    text.sentence_pool()  # read the text packages before timing (once per process, ~3 s)
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as out:
        start = time.perf_counter()
        report = synth.build(pathlib.Path(out), {"train": args.count}, args.seed, args.jobs, progress=False)
        wall_s = time.perf_counter() - start
        start = time.perf_counter()
        again = synth.build(pathlib.Path(out), {"train": args.count}, args.seed, args.jobs, progress=False)
        resume_s = time.perf_counter() - start
    ratio = report.audio_s / wall_s
    print(f"utterances {report.total}, jobs {args.jobs}")
    print(f"audio {report.audio_s:.1f} s, wall {wall_s:.2f} s -> {ratio:.1f}x real time "
          f"(goal >= {GOAL_X_REAL_TIME:.0f}x: {'met' if ratio >= GOAL_X_REAL_TIME else 'NOT met'})")
    print(f"re-run over the finished folder: {again.generated} rendered, {resume_s:.2f} s")


if __name__ == "__main__":
    main()
