"""synth-en generation speed: seconds of audio generated per wall-clock second (x real time).

    python benchmarks/synth.py [--count N] [--jobs J] [--seed S] [--size NAME]

Builds a fresh corpus of N train utterances (the seen-voice mix: flite 40 %, festival 30 %,
espeak-ng 30 %) in a temporary folder with `corpora.synth.build` over J worker processes, and
prints the audio duration, the wall time and their ratio. The baseline is real time (1x); the
goal is >= 50x on 2 cores, so run it on an otherwise idle machine. A second pass over the same
folder measures the resume check (it must render nothing).

With `--size NAME` it instead renders N utterances drawn at random from that size's plan (its
vocabulary, voices, speeds and pitches) and projects the size's hours of training audio and its
build time from them, without building it: `--size large --count 240` takes about 30 s. It projects
the build twice: from the wall time (valid on an idle machine only) and from the CPU seconds the
renderers used (this process and every engine and sox child), divided over `min(jobs, cores)`
cores, which a shared machine barely changes (the 2-core idle build can be no faster than that).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pathlib
import resource
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from corpora import synth, text  # noqa: E402

GOAL_X_REAL_TIME = 50.0


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of all its waited-for descendants."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_render(args: tuple) -> float:
    """`synth.render(*args)` in a worker; returns the CPU seconds it and its engine/sox children used."""
    start = cpu_seconds()
    synth.render(*args)
    return cpu_seconds() - start


def render_timed(sample: list, out: pathlib.Path, seed: int, jobs: int) -> tuple[float, float]:
    """Renders `sample` as `synth.render_all` does (voice batches over `jobs` forkserver workers);
    returns (wall seconds, CPU seconds summed over the workers and their children)."""
    work = [(batch, out, seed, None) for batch in synth.batches(sample)]
    start = time.perf_counter()
    with multiprocessing.get_context("forkserver").Pool(jobs) as pool:
        cpu_s = sum(pool.imap_unordered(timed_render, work))
    return time.perf_counter() - start, cpu_s


def project_size(size: str, count: int, seed: int, jobs: int) -> None:
    """Renders `count` random utterances of `size`'s plan; prints its projected train hours and build time."""
    counts = synth.SIZES[size].counts
    utterances = synth.size_plan(size, seed)
    sample = [utterances[i] for i in np.random.default_rng(seed).permutation(len(utterances))[:count]]
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as out:
        for split in counts:
            (pathlib.Path(out) / split).mkdir()
        wall_s, cpu_s = render_timed(sample, pathlib.Path(out), seed, jobs)
        duration_s = np.array([sf.info(str(pathlib.Path(out) / u.relative_path)).duration for u in sample])
    train = np.array([u.split == "train" for u in sample])
    train_h = duration_s[train].mean() * counts["train"] / 3600
    print(f"size {size}: {len(utterances)} utterances ({counts['train']} train), sample {len(sample)}, jobs {jobs}")
    print(f"mean {duration_s.mean():.2f} s/utterance ({duration_s.sum() / wall_s:.1f}x real time, "
          f"{wall_s / len(sample) * 1000:.0f} ms/utterance)")
    print(f"projected: {train_h:.1f} h of training audio "
          f"(+- {1.96 * duration_s[train].std() / np.sqrt(train.sum()) * counts['train'] / 3600:.1f} h, 95 %), "
          f"build {wall_s / len(sample) * len(utterances) / 60:.0f} min by wall time")
    cores = min(jobs, os.cpu_count() or 1)
    print(f"cpu {cpu_s / len(sample) * 1000:.0f} ms/utterance ({duration_s.sum() / cpu_s:.1f}x real time per core): "
          f"build {cpu_s / len(sample) * len(utterances) / cores / 60:.0f} min on {cores} idle cores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=96)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", choices=sorted(synth.SIZES), help="project this size from a sample of its plan")
    args = parser.parse_args()
    text.sentence_pool()  # read the text packages before timing (once per process, ~3 s)
    if args.size:
        project_size(args.size, args.count, args.seed, args.jobs)
        return
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
