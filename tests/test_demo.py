"""`make demo` (scripts/demo.py) and the train.py command of its config, shrunk only where said: a
published model of the tiny session float run (not results/models/rnnt_synth_large), the `tiny`
corpus instead of `large_demo`, GQ at 2 bits only, 2 fine-tune steps, the first 4 test utterances,
beam 2 with an order-3 language model of the tiny corpus (the committed LM fits the large models'
tokenizer, not the tiny run's); two gradient estimators (`--estimators`), so one test covers the
comparison mode as well."""

import json
import pathlib
import re
import subprocess
import sys

import pytest

import eval as eval_cmd
from models import ngram
from training import checkpoints

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def published_tiny(float_run, tmp_path_factory) -> pathlib.Path:
    folder = tmp_path_factory.mktemp("published") / "tiny"
    eval_cmd.evaluate_run(str(float_run), splits=["test"], max_examples=1, publish=str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_lm(published_tiny, tiny_corpus, tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("lm") / "tiny3.npz"
    assert ngram.main(["--tokenizer", str(published_tiny / "tokenizer.json"), "--manifest",
                       str(tiny_corpus / "train.jsonl"), "--order", "3", "--out", str(path)]) == 0
    return path


def run_demo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/demo.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)


@pytest.mark.slow
def test_the_demo_scores_ptq_and_gq_against_the_published_float_model(published_tiny, tiny_corpus, tiny_lm,
                                                                        tmp_path):
    out = tmp_path / "demo"
    result = run_demo("--model", str(published_tiny), "--out", str(out), "--data", str(tiny_corpus), "--size",
                      "tiny", "--bits", "2", "--gq_steps", "2", "--max_examples", "4", "--estimators",
                      "soft_jacobian,straight_through", "--beam", "2", "--lm", str(tiny_lm))
    assert result.returncode == 0, result.stderr[-3000:]
    table = (out / "results.md").read_text()
    assert "| greedy WER % | vs float, greedy (paired) | beam 2 + LM WER % | vs float, beam 2 + LM (paired) |" in table
    names = re.findall(r"^\| (float32 \(published\)|PTQ round \dbit|GQ \d-bit(?: \(\w+\))?) \|", table, re.MULTILINE)
    assert names == ["float32 (published)", "PTQ round 8bit", "PTQ round 2bit", "GQ 2-bit (soft_jacobian)",
                     "GQ 2-bit (straight_through)"]
    # each quantized row against float, paired, under each decoder
    assert len(re.findall(r"95 % interval \[", table)) == 2 * 4
    assert (out / "wer_bits.png").stat().st_size > 0
    scores = json.loads((out / "scores.json").read_text())
    assert list(scores) == names
    for s in scores.values():
        assert list(s["decoders"]) == ["greedy", "beam 2 + LM"]
        assert all(len(d["utterance_errors"]) == 4 for d in s["decoders"].values())
    for estimator in ("soft_jacobian", "straight_through"):
        run = out / f"gq2-{estimator}"
        assert (out / f"gq2-{estimator}.gqpk").stat().st_size > 0
        config = checkpoints.load_config(run)
        assert (config.quant.init_from, config.quant.estimator) == (str(published_tiny), estimator)
        # The demo decodes only what it reports: not the fine-tune's latent float weights.
        assert set(json.loads((run / "eval.json").read_text())["test"]) == {"quantized"}


@pytest.mark.slow
def test_the_demo_rejects_a_language_model_of_another_tokenizer_before_any_work(published_tiny, tmp_path):
    other = tmp_path / "other.npz"
    ngram.save(ngram.count([[1, 2, 3]], 5, 2, "abcd"), other)
    result = run_demo("--model", str(published_tiny), "--out", str(tmp_path / "demo"), "--data",
                      str(tmp_path / "never_built"), "--size", "tiny", "--lm", str(other))
    assert result.returncode == 2 and "was counted with another tokenizer" in result.stderr
    assert not (tmp_path / "never_built").exists()


@pytest.mark.slow
def test_the_demo_config_fine_tunes_a_published_model_from_the_command_line(published_tiny, tiny_corpus, tmp_path):
    workdir = tmp_path / "gq4"
    result = subprocess.run(
        [sys.executable, "train.py", "--config", f"configs/demo_gq.py:{published_tiny}", "--workdir", str(workdir),
         f"--config.data.path={tiny_corpus}", "--config.num_train_steps=1", "--config.eval_every_steps=1",
         "--config.checkpoint_every_steps=1"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert checkpoints.manager(workdir, create=False).latest_step() == 1
    assert (workdir / "tokenizer.json").read_text() == (published_tiny / "tokenizer.json").read_text()
