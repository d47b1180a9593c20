"""Every benchmark command runs, shrunk only where its test says: the quantizer and transducer-loss
benchmarks `--quick` with 1 repeat; the runtime, train-step, dropout, LSTM-backward, compile and
input-pipeline benchmarks on configs/test_tiny.py and the tiny corpus; the beam-search and latency
benchmarks on the 6-step tiny runs of tests/conftest.py. The init-error and gq-gradient benchmarks
run as published."""

import json
import pathlib
import re
import subprocess
import sys

import pytest

from gq_jax import cpu_lookup

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(*args: str) -> str:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def matching_lines(text: str, pattern: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(pattern, line)]


def reproduces_published_rows(name: str, pattern: str) -> list[str]:
    """Runs benchmarks/<name>.py; asserts its lines matching `pattern` equal results/benchmarks/<name>.txt's."""
    rows = matching_lines(run(f"benchmarks/{name}.py"), pattern)
    assert rows == matching_lines((ROOT / "results" / "benchmarks" / f"{name}.txt").read_text(), pattern)
    return rows


def test_the_gq_gradient_benchmark_reproduces_its_published_figures():
    """Its figures are deterministic: the rows equal results/benchmarks/gq_gradient.txt's."""
    assert len(reproduces_published_rows("gq_gradient", r"(soft|straight|capped)")) == 15


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
    assert re.search(r"^gq5 with XLA's lookup .* ratio [\d.]+x \[[\d.]+, [\d.]+\] against uniform 8-bit; "
                     r"the kernel's against it [\d.]+x", out, re.MULTILINE)
    # Fixed-width columns: bits, then float32 gather / select / kernel microseconds (empty where not
    # timed), their ratios and the one used; then the int8 grid's gather / select and the one used.
    rows = [line for line in out[out.index("expansion of one"):].splitlines() if re.match(r"^ +\d ", line)]
    cells = [[line[0:4], line[5:15], line[16:26], line[27:37], line.split("|")[0].split()[-1],
              line.split("|")[1][:21], line.split("|")[1][22:32], line.split()[-1]] for line in rows]
    assert [int(row[0]) for row in cells] == list(range(1, 9))  # every width; the float tree up to 6 bits, int8 7
    kernel = cpu_lookup.available()
    assert all(float(row[1]) > 0 and float(row[5]) > 0 for row in cells)
    assert [(bool(row[2].strip()), bool(row[3].strip()), bool(row[6].strip())) for row in cells] == (
        [(True, kernel, True)] * 5 + [(True, False, True), (False, False, True), (False, False, False)])
    float_uses = (["kernel"] * 5 + ["gather"] * 3) if kernel else ["select"] * 4 + ["gather"] * 4
    assert [(row[4], row[7]) for row in cells] == list(zip(float_uses, ["select"] * 6 + ["gather"] * 2))


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
    rows = {m[0]: m for m in re.findall(r"^(test_tiny\+?)\s+([\d,]+) .* ([\d.]+)% +([\d.]+) +([\d.]+)% \|",
                                        out, re.MULTILINE)}
    assert set(rows) == {"test_tiny", "test_tiny+"}, out
    parameters = {name: int(row[1].replace(",", "")) for name, row in rows.items()}
    assert parameters["test_tiny+"] < parameters["test_tiny"]  # the narrower encoder has fewer parameters
    assert all(float(share) > 0 and float(mm_gflop) > 0 and float(mm_share) > 0
               for _, _, share, mm_gflop, mm_share in rows.values())
    assert re.search(r"^test_tiny\+ step / test_tiny step: [\d.]+$", out, re.MULTILINE), out


def test_the_dropout_benchmark_times_flax_dropout_ours_and_none_in_one_run(tiny_corpus):
    """Shrunk to configs/test_tiny.py (given dropout 0.1) on the tiny corpus, 2 rounds (the recipe's
    rows are in results/benchmarks/dropout.txt)."""
    out = run("benchmarks/dropout.py", "--corpus", str(tiny_corpus), "--config", "test_tiny",
              "--set", "model.dropout_rate=0.1", "--repeats", "2")
    assert "test_tiny: dropout rate 0.1" in out, out
    rows = dict(re.findall(r"^(flax.linen.Dropout|models.dropout.Dropout|no dropout)\s+\d+\s+([\d.]+)", out,
                           re.MULTILINE))
    assert set(rows) == {"flax.linen.Dropout", "models.dropout.Dropout", "no dropout"}, out
    assert float(rows["flax.linen.Dropout"]) == 1.0 and float(rows["no dropout"]) > 0, out


def test_the_lstm_backward_benchmark_times_the_autodiff_and_the_fused_step_in_one_run(tiny_corpus):
    """Shrunk to configs/test_tiny.py on the tiny corpus, 2 rounds (the recipe's rows are in
    results/benchmarks/lstm_backward.txt)."""
    out = run("benchmarks/lstm_backward.py", "--corpus", str(tiny_corpus), "--config", "test_tiny",
              "--repeats", "2")
    assert "test_tiny: train step on cpu, 2 rounds" in out, out
    rows = dict(re.findall(r"^(autodiff scan|fused backward)\s+\d+\s+([\d.]+)", out, re.MULTILINE))
    assert set(rows) == {"autodiff scan", "fused backward"}, out
    assert float(rows["autodiff scan"]) == 1.0 and float(rows["fused backward"]) > 0, out


def test_a_config_without_dropout_is_refused_by_the_dropout_benchmark(tiny_corpus):
    result = subprocess.run([sys.executable, "benchmarks/dropout.py", "--corpus", str(tiny_corpus), "--config",
                             "test_tiny"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "no dropout (model.dropout_rate=0.0)" in result.stderr


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


def test_the_init_error_benchmark_reproduces_its_published_figures():
    """Deterministic (seeded tensors, no timing): its rows equal results/benchmarks/init_error.txt's."""
    assert len(reproduces_published_rows("init_error", r" +\d ")) == 12


def test_the_quantizer_benchmark_states_the_windowed_memory_growth_it_measured():
    """Shrunk to `--quick` (1M weights) and 1 repeat."""
    out = run("benchmarks/quantizer.py", "--quick", "--repeats", "1")
    rows = re.findall(r"^ +(\d) +(dense|windowed) +([\d.]+) ", out, re.MULTILINE)
    assert [(int(b), form) for b, form, _ in rows] == [(b, f) for b in (1, 2, 4, 8) for f in ("dense", "windowed")]
    windowed = {int(b): float(peak) for b, form, peak in rows if form == "windowed"}
    growth = re.search(r"^windowed peak memory, 8 bits / 1 bit: ([\d.]+)x \(goal <= 2x: (met|NOT met)\)$", out,
                       re.MULTILINE)
    assert growth, out
    # The peaks are printed to 0.001 GiB and the ratio to 0.01.
    assert float(growth[1]) == pytest.approx(windowed[8] / windowed[1], abs=0.01 + 0.002 / windowed[1])
    assert growth[2] == ("met" if float(growth[1]) <= 2.0 else "NOT met")


def test_the_transducer_loss_benchmark_measures_the_chunked_loss_below_the_full_one():
    """Shrunk to `--quick` (B=2, T=50, U=12) and 1 repeat."""
    out = run("benchmarks/transducer_loss.py", "--quick", "--repeats", "1")
    assert len(re.findall(r"^\[(logits only|with joint, H=\d+)\]", out, re.MULTILINE)) == 4, out
    assert len(re.findall(r"^  naive / ours time: [\d.]+x$", out, re.MULTILINE)) == 2
    memory = [float(m) for m in re.findall(r"^  chunked / full: time [\d.]+x, peak memory ([\d.]+)x$", out,
                                           re.MULTILINE)]
    assert len(memory) == 2 and all(0 < ratio < 1 for ratio in memory), out
    pruned = [float(m) for m in re.findall(r"^  pruned / full: time [\d.]+x, peak memory ([\d.]+)x$", out,
                                           re.MULTILINE)]
    assert len(pruned) == 2 and all(0 < ratio < 1 for ratio in pruned), out  # [B, T, 4, V] < [B, T, U+1, V]


@pytest.mark.slow
def test_the_beam_search_benchmark_finds_the_same_hypotheses_batched_and_one_at_a_time(float_run):
    """Shrunk to the 6-step tiny float run and 4 test utterances."""
    out = run("benchmarks/beam_search.py", "--workdir", str(float_run), "--split", "test", "--max_examples", "4")
    assert out.startswith("4 utterances") and "same hypotheses: True" in out, out
    assert re.search(r"^speed-up [\d.]+x;", out, re.MULTILINE)


@pytest.mark.slow
def test_the_latency_benchmark_times_the_packed_model_against_its_checkpoint(gq_run, tmp_path):
    """Shrunk to the 6-step tiny GQ run, exported as `eval.py --export` does."""
    import eval as eval_cmd

    packed = tmp_path / "model.gqpk"
    eval_cmd.evaluate_run(str(gq_run), splits=["dev"], export=str(packed))
    out = run("benchmarks/latency.py", "--workdir", str(gq_run), "--packed", str(packed), "--max_examples", "4")
    rows = dict(re.findall(r"^(float|packed) +[\d.]+ +([\d.]+)$", out, re.MULTILINE))
    assert set(rows) == {"float", "packed"} and all(float(rtf) > 0 for rtf in rows.values()), out
    assert re.search(r"^packed/float: load [\d.]+x, RTF [\d.]+x$", out, re.MULTILINE)
    assert subprocess.run([sys.executable, "benchmarks/latency.py", "--workdir", str(gq_run), "--packed",
                           str(tmp_path / "missing.gqpk")], cwd=ROOT, capture_output=True, text=True).returncode != 0


@pytest.mark.slow
def test_the_input_pipeline_benchmark_reports_both_peaks_and_the_delivery_ratio(tiny_corpus):
    """Shrunk to configs/test_tiny.py on the tiny corpus: a 0.01 h subset, 20 steps, 4 delivery batches."""
    out = run("benchmarks/input_pipeline.py", "--corpus", str(tiny_corpus), "--config", "configs/test_tiny.py",
              "--small-hours", "0.01", "--steps", "20", "--delivery-batches", "4")
    figures = json.loads(out.strip().splitlines()[-1])
    peaks = figures["peaks"]
    assert list(peaks) == ["0.01 h subset", "whole split"]
    assert all(p["tree_mb"] >= p["main_mb"] > 0 and 0 <= p["data_wait"] <= 1 for p in peaks.values()), peaks
    ratio = re.search(r"^peak RSS ratio, whole / subset \(\d+x the audio\): tree ([\d.]+), training process ([\d.]+)",
                      out, re.MULTILINE)
    assert ratio, out
    whole, small = peaks["whole split"], peaks["0.01 h subset"]
    assert float(ratio[1]) == pytest.approx(whole["tree_mb"] / small["tree_mb"], abs=5e-4)
    assert float(ratio[2]) == pytest.approx(whole["main_mb"] / small["main_mb"], abs=5e-4)
    delivered = re.search(r"^loader: (\d+) audio-s/s delivered; .* = (\d+) audio-s/s consumed; ratio ([\d.]+)", out,
                          re.MULTILINE)
    assert delivered, out
    assert float(delivered[3]) == pytest.approx(
        figures["delivery_audio_s_per_s"] / figures["consumed_audio_s_per_s"], abs=0.05)
