"""Input pipeline at scale: training peak RSS does not grow with the corpus, and the loader delivers
audio several times faster than the train step consumes it.

    python benchmarks/input_pipeline.py --corpus data/synth-en-large [--config configs/rnnt_synth_cpu.py]
        [--small-hours 1.0] [--steps 40] [--delivery-batches 300]

In one run, for a subset of the corpus's training split holding `--small-hours` of audio and for
the whole split: `train.py` trains `--steps` steps of `--config` in a subprocess while this
script samples the resident memory of its process tree (the training process and its grain
workers) every 0.1 s; the peak of the tree and of the training process alone are printed with
their ratio, whole corpus over subset (goal <= 1.2), and the share of wall time the training
loop waited for batches (`data_wait_fraction` of metrics.jsonl, after the first logged interval,
which holds the workers' start-up). Then the loader alone
(`config.data.num_workers` grain workers) streams `--delivery-batches` batches of the whole
corpus, and its delivered audio-seconds per wall-second is divided by what the train step
consumes (mean audio per batch over the median step time, `experiments.step_time`), goal >= 5.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from corpora import batching  # noqa: E402
from training import input_pipeline, metrics  # noqa: E402

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _children(pid: int) -> list[int]:
    """Child processes started by any thread of `pid` (grain starts its workers from a thread)."""
    children = []
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return children


def _rss_kb(pid: int) -> int:
    try:
        return int(pathlib.Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB
    except OSError:
        return 0


def tree_rss_kb(pid: int) -> tuple[int, int]:
    """(resident kB of `pid` and all its descendants, of `pid` alone), from one read of each process, so
    that the tree never counts less than its main process."""
    main = _rss_kb(pid)
    total, todo = main, _children(pid)
    while todo:
        p = todo.pop()
        total += _rss_kb(p)
        todo += _children(p)
    return total, main


def train_peak_rss(config_path: str, corpus: pathlib.Path, max_examples: int, steps: int,
                   workdir: pathlib.Path) -> dict[str, float]:
    """Trains `steps` steps in a subprocess; peak RSS (MB) of its tree and main process, wall time,
    and the mean data_wait_fraction of its logged records."""
    command = [sys.executable, str(ROOT / "train.py"), "--config", config_path, "--workdir", str(workdir),
               f"--config.data.path={corpus}", f"--config.data.max_train_examples={max_examples}",
               f"--config.num_train_steps={steps}", "--config.log_every_steps=10",
               f"--config.eval_every_steps={10 * steps}", "--config.data.max_dev_examples=16",
               f"--config.checkpoint_every_steps={10 * steps}"]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_tree = peak_main = 0
    while process.poll() is None:
        tree, main = tree_rss_kb(process.pid)
        peak_tree, peak_main = max(peak_tree, tree), max(peak_main, main)
        time.sleep(0.1)
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{process.stderr.read()[-3000:]}")
    waits = [r["data_wait_fraction"] for r in metrics.read(workdir)][1:]  # the first holds worker start-up
    return {"tree_mb": peak_tree / 1024, "main_mb": peak_main / 1024, "wall_s": time.perf_counter() - start,
            "data_wait": float(np.mean(waits))}


def delivery(config, num_batches: int) -> tuple[float, float]:
    """(audio-seconds delivered per wall-second by the loader, mean audio-seconds per batch)."""
    train = input_pipeline.source(config.data, config.data.train_split)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = input_pipeline.make_tokenizer(config.data, pathlib.Path(scratch), train)
    plan = input_pipeline.train_plan(config, train, tokenizer)
    warmup = 2 * max(config.data.num_workers, 1)  # the workers' start-up is not delivery
    streamed = config.copy_and_resolve_references()
    streamed.num_train_steps = warmup + num_batches
    stream = input_pipeline.train_stream(streamed, plan, train, tokenizer, start=0)
    try:
        for _ in range(warmup):
            next(stream)
        start, audio_s = time.perf_counter(), 0.0
        for loaded in stream:
            audio_s += float(loaded.batch["audio_lengths"].sum()) / batching.SAMPLE_RATE_HZ
        rate = audio_s / (time.perf_counter() - start)
    finally:
        stream.close()
    per_batch = float(sum(train.metadata.durations_s[b].sum() for b in plan.epoch(0)) / plan.batches_per_epoch)
    return rate, per_batch


def subset_size(durations_s: np.ndarray, hours: float) -> int:
    """Fewest leading utterances holding `hours` of audio."""
    return int(np.searchsorted(np.cumsum(durations_s), hours * 3600.0) + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=pathlib.Path, required=True, help="a synth-en (manifest) folder")
    parser.add_argument("--config", default="configs/rnnt_synth_cpu.py", help="a file under configs/")
    parser.add_argument("--small-hours", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--delivery-batches", type=int, default=300)
    args = parser.parse_args()
    config = importlib.import_module(f"configs.{pathlib.Path(args.config).stem}").get_config()
    config.data.path = str(args.corpus)
    durations = input_pipeline.source(config.data, config.data.train_split).metadata.durations_s
    sizes = {f"{args.small_hours:g} h subset": subset_size(durations, args.small_hours), "whole split": 0}
    print(f"{args.config} on {args.corpus}: {args.steps} training steps per corpus, "
          f"{config.data.num_workers} loader worker(s)")
    print(f"{'train split':<14} {'utterances':>10} {'hours':>7} {'peak RSS tree MB':>17} "
          f"{'main MB':>8} {'data wait':>10} {'wall s':>7}")
    peaks = {}
    for name, count in sizes.items():
        with tempfile.TemporaryDirectory() as workdir:
            peaks[name] = train_peak_rss(args.config, args.corpus, count, args.steps, pathlib.Path(workdir))
        used = durations[:count or None]
        p = peaks[name]
        print(f"{name:<14} {len(used):>10} {used.sum() / 3600:>7.2f} {p['tree_mb']:>17.0f} {p['main_mb']:>8.0f} "
              f"{100 * p['data_wait']:>9.2f}% {p['wall_s']:>7.0f}")
    small, whole = (peaks[name] for name in sizes)
    print(f"peak RSS ratio, whole / subset ({len(durations) / sizes[next(iter(sizes))]:.0f}x the audio): "
          f"tree {whole['tree_mb'] / small['tree_mb']:.3f}, training process "
          f"{whole['main_mb'] / small['main_mb']:.3f} (goal <= 1.2)")

    from experiments import step_time

    rate, per_batch = delivery(config, args.delivery_batches)
    step_s = step_time.seconds_per_step(config)
    consumed = per_batch / step_s
    print(f"loader: {rate:.0f} audio-s/s delivered; train step {step_s * 1000:.0f} ms for {per_batch:.1f} audio-s "
          f"per batch = {consumed:.0f} audio-s/s consumed; ratio {rate / consumed:.1f} (goal >= 5)")
    print(json.dumps({"peaks": peaks, "delivery_audio_s_per_s": rate, "consumed_audio_s_per_s": consumed}))


if __name__ == "__main__":
    main()
