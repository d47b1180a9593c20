"""eval.py: scores per split and model, the packed artifact decodes exactly like the in-memory
hard-quantized model, and a workdir without a checkpoint is a clear error."""

import json
import re

import pytest

import eval as eval_cmd
import gq_jax
from corpora import synth
from experiments import statistics
from training import evaluate, input_pipeline, runs


@pytest.mark.slow
def test_decoding_the_packed_artifact_gives_the_in_memory_hard_quantized_transcripts(gq_run, tmp_path):
    export = tmp_path / "model.gqpk"
    output = eval_cmd.evaluate_run(str(gq_run), splits=["dev"], export=str(export))
    run = runs.load(gq_run)
    examples = input_pipeline.source(run.config.data, "dev")
    transcribe = lambda params: evaluate.transcribe(run.model, params, examples, run.tokenizer,
                                                    run.config.features, 4)
    in_memory = transcribe(run.export().params)
    from_file = transcribe(gq_jax.dequantize(gq_jax.load_packed(export)))
    assert from_file == in_memory
    assert output["export"]["file_bytes"] == export.stat().st_size
    saved = json.loads((gq_run / "eval.json").read_text())
    assert set(saved) == {"dev"} and set(saved["dev"]) == {"float", "quantized"}
    per_utterance = statistics.utterance_record(*in_memory)
    row = saved["dev"]["quantized"]
    assert evaluate.scores(*in_memory) == pytest.approx({k: v for k, v in row.items() if k not in per_utterance})
    assert {k: row[k] for k in per_utterance} == per_utterance
    assert "float32" in (tmp_path / "model.gqpk.size.txt").read_text()


@pytest.mark.slow
def test_ptq_rows_use_the_run_rules_at_the_requested_bits(float_run):
    output = eval_cmd.evaluate_run(str(float_run), splits=["dev"], ptq=["ptq_round:8"], max_examples=4)
    assert set(output["results"]["dev"]) == {"float", "ptq_round_8bit"}
    assert output["sizes"]["ptq_round_8bit"]["average_bits"] == 8.0


def test_ptq_keeps_each_rules_granularity_and_channel_axes_at_the_requested_bits():
    """A run's rules as read back from config.json (lists), with and without channel_axes."""
    import types

    import jax.numpy as jnp
    import ml_collections
    import numpy as np

    from configs import default

    config = default.get_config()
    config.quant.method = "gq"
    config.quant.rules = (("a", 4, "channel", (0,)), ("b", 8, "tensor"), ("c", 8, "channel"))
    run = types.SimpleNamespace(config=ml_collections.ConfigDict(json.loads(config.to_json())), model=None)
    name, quantizer = eval_cmd.ptq_quantizer(run, "ptq_round:2")
    params = {key: jnp.arange(18.0).reshape(6, 3) - 8.0 for key in "abc"}
    hardened = quantizer.harden(params, quantizer.init(params))
    assert name == "ptq_round_2bit" and {q.bits for q in hardened.values()} == {2}
    assert [np.shape(hardened[key].scale) for key in "abc"] == [(6, 1), (), (3,)]
    with pytest.raises(ValueError, match="ptq_kmeans"):
        eval_cmd.ptq_quantizer(run, "gq:2")


def test_scores_count_substitutions_deletions_and_insertions():
    s = evaluate.scores(["A B C", "D E"], ["A X C", "D E F"])
    assert (s["substitutions"], s["deletions"], s["insertions"], s["num_words"]) == (1, 0, 1, 5)
    assert s["wer"] == pytest.approx(2 / 5)
    assert evaluate.scores(["AB"], [""])["cer"] == 1.0


def test_eval_on_a_workdir_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a training workdir"):
        eval_cmd.evaluate_run(str(tmp_path))


def test_data_flag_reads_a_manifest_file_as_its_own_split(tiny_corpus):
    from configs import default

    data, splits = eval_cmd.data_for(str(tiny_corpus / "test.jsonl"), default.get_config().data)
    assert (data.kind, splits) == ("manifest", ["test"])
    examples = input_pipeline.source(data, "test")
    assert [e["id"] for e in examples] == [e["id"] for e in synth.read_split(tiny_corpus, "test")]
    folder, splits = eval_cmd.data_for(str(tiny_corpus), default.get_config().data)
    assert (folder.kind, splits) == ("manifest", None)


@pytest.mark.slow
def test_a_published_quantized_model_scores_as_the_run_s_quantized_row_with_no_workdir(gq_run, tiny_corpus,
                                                                                        tmp_path):
    folder = tmp_path / "published"
    output = eval_cmd.evaluate_run(str(gq_run), splits=["test"], publish=str(folder))
    card = json.loads((folder / "card.json").read_text())
    assert card["checkpoint"] == 6 and card["method"] == "gq" and card["resumes"] == 0 and card["wall_s"] > 0
    assert card["file_bytes"] == (folder / "model.gqpk").stat().st_size
    scored = eval_cmd.evaluate_published(str(folder), str(tiny_corpus), ["test"])
    assert scored["results"]["test"]["published"] == output["results"]["test"]["quantized"]
    # Decoding with the packed weights resident gives the same transcripts; int8 matmuls score too.
    resident = eval_cmd.evaluate_published(str(folder), str(tiny_corpus), ["test"], runtime="resident")
    assert resident["results"]["test"]["published"] == output["results"]["test"]["quantized"]
    int8 = eval_cmd.evaluate_published(str(folder), str(tiny_corpus), ["test"], runtime="int8")
    assert int8["results"]["test"]["published"]["num_words"] == output["results"]["test"]["quantized"]["num_words"]
    # eval.json carries the per-utterance counts the paired bootstrap resamples.
    row = output["results"]["test"]["quantized"]
    assert len(row["utterance_errors"]) == len(row["utterance_words"]) == 8
    assert sum(row["utterance_errors"]) == row["substitutions"] + row["deletions"] + row["insertions"]
    assert sum(row["utterance_words"]) == row["num_words"]


@pytest.mark.slow
def test_a_model_trained_in_stages_carries_every_stage_on_its_card(float_run, gq_run, tiny_corpus, tmp_path):
    import train
    from tests.tiny_run import tiny_config
    from training import published

    first = tmp_path / "stage1"
    trained = runs.load(float_run)
    eval_cmd.publish_run(trained, trained.export(), float_run, first)
    assert "init_from" not in published.load_card(first)
    workdir = tmp_path / "stage2-run"
    train.train_and_evaluate(tiny_config(tiny_corpus, **{"quant.init_from": str(first), "num_train_steps": 2}),
                             str(workdir))
    second = tmp_path / "stage2"
    continued = runs.load(workdir)
    eval_cmd.publish_run(continued, continued.export(), workdir, second)
    card, parent = published.load_card(second), published.load_card(first)
    assert (card["init_from"], card["num_train_steps"]) == (str(first), 2)
    assert card["init_training"] == {field: parent[field] for field in eval_cmd.TRAINING_CARD_FIELDS}
    # A fine-tune of a workdir names it; there is no card to copy.
    fine_tuned = runs.load(gq_run)
    eval_cmd.publish_run(fine_tuned, fine_tuned.export(), gq_run, tmp_path / "gq")
    gq_card = published.load_card(tmp_path / "gq")
    assert gq_card["init_from"] == str(float_run) and "init_training" not in gq_card


@pytest.mark.slow
def test_eval_cli_scores_a_published_model_and_names_a_bad_folder(float_run, tiny_corpus, tmp_path):
    import subprocess
    import sys

    folder = tmp_path / "published-float"
    cli = [sys.executable, str(eval_cmd.__file__)]
    run = lambda *args: subprocess.run(cli + list(args), capture_output=True, text=True, timeout=300)
    made = run("--workdir", str(float_run), "--splits", "test", "--average", "2", "--publish", str(folder))
    assert made.returncode == 0, made.stderr[-2000:]
    assert "mean of steps [4, 6]" in made.stdout and f"published to {folder}" in made.stdout
    scored = run("--model", str(folder), "--data", str(tiny_corpus / "test.jsonl"))
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert "published" in scored.stdout and "test" in scored.stdout
    # Its float16 weights resident, and a PTQ row of them: the resident rows equal the float32 ones.
    rows = lambda out: re.findall(r"^test\s+(published|ptq_round_4bit)\s+(.*)$", out, re.MULTILINE)
    resident = run("--model", str(folder), "--data", str(tiny_corpus / "test.jsonl"), "--runtime", "resident",
                   "--ptq", "ptq_round:4")
    assert resident.returncode == 0, resident.stderr[-2000:]
    assert "resident runtime" in resident.stdout and rows(scored.stdout)[0] == rows(resident.stdout)[0]
    assert [name for name, _ in rows(resident.stdout)] == ["published", "ptq_round_4bit"]
    misplaced = run("--workdir", str(float_run), "--runtime", "int8")
    assert misplaced.returncode != 0 and "give it with --model" in misplaced.stderr
    bad = run("--model", str(tmp_path), "--data", str(tiny_corpus))
    assert bad.returncode != 0 and "is not a published model: no model.gqpk" in bad.stderr
    both = run("--model", str(folder), "--workdir", str(float_run))
    assert both.returncode != 0 and "exactly one of --workdir" in both.stderr


@pytest.mark.slow
def test_checkpoint_averaging_is_the_mean_of_the_latest_checkpoints(float_run):
    import jax
    import numpy as np

    averaged = runs.average(float_run, 3)
    assert averaged.averaged_steps == (2, 4, 6) and averaged.step == 6
    loaded = [runs.load(float_run, s).params for s in (2, 4, 6)]
    for got, *each in zip(*map(jax.tree_util.tree_leaves, [averaged.params] + loaded)):
        np.testing.assert_allclose(got, np.mean(each, axis=0), rtol=1e-6)
    with pytest.raises(ValueError, match=r"keeps 2 checkpoint\(s\) up to step 4 \(\[2, 4\]\)"):
        runs.average(float_run, 3, step=4)


@pytest.mark.slow
def test_eval_cli_fuses_a_language_model_and_the_sweep_picks_its_weight(float_run, tiny_corpus, tmp_path):
    import subprocess
    import sys

    from models import ngram
    from scripts import lm_sweep

    folder = tmp_path / "published-float"
    cli = [sys.executable, str(eval_cmd.__file__)]
    run = lambda *args: subprocess.run(cli + list(args), capture_output=True, text=True, timeout=300)
    assert run("--workdir", str(float_run), "--splits", "test", "--publish", str(folder)).returncode == 0
    lm_path = tmp_path / "lm.npz"
    assert ngram.main(["--tokenizer", str(folder / "tokenizer.json"), "--manifest", str(tiny_corpus / "train.jsonl"),
                       "--order", "4", "--out", str(lm_path)]) == 0
    data = ("--data", str(tiny_corpus / "test.jsonl"))
    fused = run("--model", str(folder), *data, "--beam", "2", "--lm", str(lm_path), "--lm_weight", "0.4",
                "--lm_bonus", "0", "--results_json", str(tmp_path / "scores.json"))
    assert fused.returncode == 0, fused.stderr[-2000:]
    assert f"language model {lm_path} with weight 0.4, bonus 0" in fused.stdout
    scores = json.loads((tmp_path / "scores.json").read_text())["test"]["published"]
    assert len(scores["utterance_errors"]) == 8 and 0 <= scores["wer"]
    greedy_lm = run("--model", str(folder), *data, "--lm", str(lm_path))
    assert greedy_lm.returncode != 0 and "give --beam > 1" in greedy_lm.stderr
    other = tmp_path / "other.npz"
    ngram.save(ngram.count([[1, 2, 3]], 5, 2, "abcd"), other)
    mismatch = run("--model", str(folder), *data, "--beam", "2", "--lm", str(other))
    assert mismatch.returncode != 0 and "counted with another tokenizer" in mismatch.stderr

    sweep_out = tmp_path / "sweep.json"
    assert lm_sweep.main(["--model", str(folder), *data, "--lm", str(lm_path), "--split", "test", "--beam", "2",
                          "--max_examples", "0", "--weights", "0,0.4", "--bonuses", "0", "--out", str(sweep_out)]) == 0
    sweep = json.loads(sweep_out.read_text())
    assert sweep["no_lm"]["utterance_errors"] == sweep["w=0 b=0"]["utterance_errors"]
    assert sweep["w=0.4 b=0"] == scores  # the CLI's decode of the same setting
    assert sweep["best"]["wer"] == min(sweep[k]["wer"] for k in ("w=0 b=0", "w=0.4 b=0"))
