"""The benchmark commands run: shrunk only where said (the runtime benchmark on configs/test_tiny.py's
model with 1 s of synthetic audio, 1 utterance, 1 repeat, instead of the large recipe on synth-en)."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(*args: str) -> str:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_gq_gradient_benchmark_reproduces_its_published_figures():
    """Its figures are deterministic: the rows equal results/benchmarks/gq_gradient.txt's."""
    rows = lambda text: [line for line in text.splitlines() if re.match(r"(soft|straight|capped)", line)]
    published = (ROOT / "results" / "benchmarks" / "gq_gradient.txt").read_text()
    assert rows(run("benchmarks/gq_gradient.py")) == rows(published) and len(rows(published)) == 15


@pytest.mark.slow
def test_the_runtime_benchmark_measures_every_variant_against_8_bit():
    out = run("benchmarks/runtime.py", "--config", "configs/test_tiny.py", "--corpus", "", "--utterances", "1",
              "--repeats", "1", "--seconds", "1", "--lookup_calls", "3")
    ratios = dict(re.findall(r"^(float32|uniform8|gq5|gq4|gq2)\s+([\d.]+)x", out, re.MULTILINE))
    assert set(ratios) == {"float32", "uniform8", "gq5", "gq4", "gq2"}
    assert float(ratios["uniform8"]) == 1.0
    assert float(ratios["gq2"]) < float(ratios["gq4"]) < float(ratios["gq5"]) < 1.0 < float(ratios["float32"])
    # the 8-bit model's chunks against themselves: ratio and interval exactly 1
    assert re.search(r"^uniform8 .* 1\.000x \[1\.000, 1\.000\]$", out, re.MULTILINE)
    intervals = re.findall(r"^gq\d .* ([\d.]+)x \[([\d.]+), ([\d.]+)\]$", out, re.MULTILINE)
    assert len(intervals) == 3 and all(float(lo) <= float(r) <= float(hi) for r, lo, hi in intervals)
    lookups = re.findall(r"^ +(\d) +[\d.]+ +([\d.]*) +[\d.]+x +(?:[\d.]+x)?  (select|gather) +\| +[\d.]+ +([\d.]*)"
                         r"  (select|gather)$", out, re.MULTILINE)
    assert [int(row[0]) for row in lookups] == list(range(1, 9))  # every width; the float tree up to 6 bits, int8 7
    assert [(bool(row[1]), bool(row[3])) for row in lookups] == [(True, True)] * 6 + [(False, True), (False, False)]
    assert [(row[2], row[4]) for row in lookups] == [("select", "select")] * 4 + [("gather", "select")] * 2 + [
        ("gather", "gather")] * 2


def test_the_synth_benchmark_projects_a_size_from_the_cpu_its_renderers_used():
    """Shrunk to 4 utterances of `tiny` on one worker (the README's projection samples 240 of `large`)."""
    out = run("benchmarks/synth.py", "--size", "tiny", "--count", "4", "--jobs", "1")
    assert "size tiny: 64 utterances (40 train), sample 4, jobs 1" in out
    cpu_ms = float(re.search(r"^cpu (\d+) ms/utterance", out, re.MULTILINE).group(1))
    # Every utterance starts an engine and sox: tens of ms of CPU in the worker's children at least.
    assert cpu_ms >= 10, out
    assert re.search(r"build \d+ min on 1 idle cores", out), out


@pytest.mark.slow
def test_the_train_step_benchmark_times_a_config_and_its_variant_in_one_run(tiny_corpus):
    """Shrunk to configs/test_tiny.py on the tiny corpus, 1 timed step (the recipes' rows are in
    results/benchmarks/train_step.txt)."""
    out = run("benchmarks/train_step.py", "--corpus", str(tiny_corpus), "--configs", "test_tiny,test_tiny+",
              "--set", "model.encoder_hidden_size=8", "--steps", "1")
    assert "overrides: model.encoder_hidden_size=8" in out and re.search(r"matmul: [\d.]+ GFLOP/s", out)
    rows = {m[0]: m for m in re.findall(r"^(test_tiny\+?)\s+([\d,]+) .* ([\d.]+)%", out, re.MULTILINE)}
    assert set(rows) == {"test_tiny", "test_tiny+"}, out
    parameters = {name: int(row[1].replace(",", "")) for name, row in rows.items()}
    assert parameters["test_tiny+"] < parameters["test_tiny"]  # the narrower encoder has fewer parameters
    assert all(float(share) > 0 for _, _, share in rows.values())


def test_the_compile_benchmark_times_one_thread_against_several_in_one_run(tiny_corpus):
    """Shrunk to configs/test_tiny.py on the tiny corpus (the recipes' rows are in
    results/benchmarks/compile.txt)."""
    out = run("benchmarks/compile.py", "--corpus", str(tiny_corpus), "--configs", "test_tiny", "--threads", "2")
    row = re.search(r"^test_tiny\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", out, re.MULTILINE)
    assert row, out
    buckets, serial, parallel, ratio = int(row[1]), float(row[2]), float(row[3]), float(row[4])
    assert buckets >= 1 and serial > 0 and parallel > 0
    # The seconds are printed to 0.1 s and the ratio to 0.01: the ratio of the printed times may differ by that much.
    assert (parallel - 0.05) / (serial + 0.05) - 0.005 <= ratio <= (parallel + 0.05) / max(serial - 0.05, 1e-9) + 0.005
