"""experiments/: the registry is consistent, a run writes every published file and resumes instead of
retraining, and the report is regenerated from those files only ("not yet measured" otherwise)."""

import dataclasses
import json
import re
import pathlib

import jax
import pytest

import eval as eval_cmd
import gq_jax
from experiments import registry, report, run, statistics, step_time
from training import config as config_lib
from training import metrics, published
from training import state as state_lib

# The machinery on a seconds-sized model (recorded in each run's config.json and command.txt).
TINY_MODEL = (("features.num_mel_bins", 16), ("model.encoder_layers", 1), ("model.encoder_hidden_size", 16),
              ("model.frame_stack", 4), ("model.time_reduction_layer", None), ("model.predictor_embed_dim", 8),
              ("model.predictor_hidden_size", 16), ("model.joint_dim", 16), ("batch_size", 4),
              ("eval_batch_size", 4), ("data.max_dev_examples", 2), ("data.num_buckets", 1),
              ("log_every_steps", 1), ("features.spec_augment", False))
PUBLISHED = ("config.json", "command.txt", "metrics.json", "eval.json", "sizes.txt", "training_metrics.jsonl",
             "training_curves.png")


def settings(corpus, root: pathlib.Path, budget: int | None) -> run.Settings:
    return run.Settings(budget_steps=budget, data=str(corpus), overrides=TINY_MODEL, max_examples=1,
                        step_time_steps=1, runs_root=str(root / "runs"), results_root=str(root / "results"))


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return tmp_path_factory.mktemp("experiments")


@pytest.fixture(scope="module")
def float_result(tiny_corpus, tiny_root):
    """rnnt_float trained 3 steps on the tiny corpus; returns the root folder."""
    run.run_experiment("rnnt_float", settings(tiny_corpus, tiny_root, 3))
    return tiny_root


@pytest.fixture(scope="module")
def tiny_results(tiny_corpus, float_result):
    """...then rnnt_gq_4 fine-tuned 2 steps from it."""
    run.run_experiment("rnnt_gq_4", settings(tiny_corpus, float_result, 2))
    return float_result


@pytest.mark.parametrize("scale", registry.SCALES.values(), ids=list(registry.SCALES))
def test_every_registry_entry_is_a_valid_config_whose_rules_all_match_parameters(scale):
    params = {}
    for experiment in registry.EXPERIMENTS.values():
        config = registry.build_config(experiment, scale, "runs/results")  # check_fields inside
        if experiment.model not in params:
            model = config_lib.model_from_config(config.model, 30)
            params[experiment.model] = jax.eval_shape(lambda: state_lib.random_params(model, config))
        if experiment.method != "float":
            assert gq_jax.unused_rules(params[experiment.model], config_lib.gq_config(config.quant)) == ()
        if experiment.kind == "finetune":
            assert config.quant.init_from == scale.float_models.get(
                experiment.model, f"runs/results/{scale.name}/{experiment.parent}")
            assert config.num_train_steps == scale.finetune_steps[experiment.model]
            if "quant.alpha.end_step" not in experiment.overrides:  # the alpha_length ablation sets it
                assert config.quant.alpha.end_step == config.num_train_steps // 2
    lengths = {registry.build_config(registry.get(registry.ablation_name("alpha_length", value, 4)), scale,
                                     "runs/results").quant.alpha.end_step for value in ("budget/4", "whole budget")}
    assert lengths == {scale.finetune_steps["rnnt"] // 4, scale.finetune_steps["rnnt"]}
    # A published float model a scale stands on ships with the repository.
    assert all(published.is_published(pathlib.Path(__file__).parents[1] / folder)
               for folder in scale.float_models.values())


def test_training_hours_of_a_scale_count_the_float_run_and_every_fine_tune():
    scale = registry.SCALES["cpu"]
    finetunes = [e for e in registry.EXPERIMENTS.values() if e.model == "conformer" and e.kind == "finetune"]
    assert len(finetunes) >= 9  # uniform STE x3, GQ x5, the mixed allocation
    assert step_time.training_hours(scale, "conformer", 3.6, 0.0) == 1000 * 3.6 / 3600
    assert step_time.training_hours(scale, "conformer", 0.0, 1.8) == pytest.approx(
        len(finetunes) * scale.finetune_steps["conformer"] * 1.8 / 3600)


def test_an_unknown_scale_is_an_error_naming_the_known_ones():
    with pytest.raises(ValueError, match="'cpu'"):
        registry.get_scale("laptop")


def test_registry_rejects_repeated_names_and_missing_parents():
    float_run = registry.Experiment("f", "rnnt", {})
    child = registry.Experiment("c", "rnnt", {"quant.method": "gq"}, parent="f")
    assert list(registry.index([float_run, child])) == ["f", "c"]
    with pytest.raises(ValueError, match="used twice"):
        registry.index([float_run, float_run])
    with pytest.raises(ValueError, match="parent 'f'"):
        registry.index([child, float_run])


def test_an_unknown_override_is_an_error_naming_the_field():
    bad = registry.Experiment("bad", "rnnt", {"quant.snap_evry": 100})
    with pytest.raises(ValueError, match="quant.snap_evry"):
        registry.build_config(bad, registry.SCALES["recipe"], "runs/results")


def test_the_default_ablation_value_is_the_main_gq_row_and_every_other_value_a_registered_run():
    for setting, (default, others) in registry.ABLATIONS.items():
        for bits in registry.ABLATION_BITS:
            assert registry.ablation_name(setting, default, bits) == f"rnnt_gq_{bits}"
            for value in others:
                name = registry.ablation_name(setting, value, bits)
                if name == f"rnnt_gq_{bits}":  # what "auto" picks at these bits: the main row
                    assert (setting, value, bits) in {("init", "kmeans", 2), ("init", "uniform", 4)}
                    continue
                experiment = registry.get(name)
                assert experiment.table == "ablation" and experiment.parent == "rnnt_float"


def test_the_quantization_frequency_is_the_issues_100_and_1000_steps_at_the_recipe_budget():
    snap_every = lambda name, scale: registry.build_config(
        registry.get(name), registry.get_scale(scale), "runs").quant.snap_every
    assert [snap_every(f"rnnt_abl_snap_every_{v}_2", "recipe") for v in ("budget_40", "budget_4")] == [100, 1000]
    assert [snap_every(f"rnnt_abl_snap_every_{v}_2", "cpu") for v in ("budget_40", "budget_4")] == [7, 75]
    assert snap_every("rnnt_gq_2", "cpu") == 0
    assert "every 7 and 75 steps of the 300-step fine-tune" in report.snap_steps_note(registry.get_scale("cpu"))


def test_all_weight_matrices_and_embeddings_are_quantized_and_nothing_else():
    config = registry.build_config(registry.get("rnnt_gq_4"), registry.SCALES["recipe"], "runs/results")
    model = config_lib.model_from_config(config.model, 30)
    shapes = jax.eval_shape(lambda: state_lib.random_params(model, config))
    plan = gq_jax.summary(shapes, config_lib.gq_config(config.quant))
    for leaf in plan.leaves:
        assert (leaf.rule is not None) == leaf.path.endswith(("kernel", "embedding")), leaf.path


def test_the_config_digest_ignores_the_budget_but_not_a_quantizer_setting():
    gq4 = registry.get("rnnt_gq_4")
    digest = run.config_digest(run.experiment_config(gq4, run.Settings(scale="large")))
    assert run.config_digest(run.experiment_config(gq4, run.Settings(scale="large", budget_steps=3))) == digest
    changed = run.Settings(scale="large", overrides=(("quant.mu", 100.0),))
    assert run.config_digest(run.experiment_config(gq4, changed)) != digest
    # A model field at its factory's default builds the same model, written or not; another value does not.
    config = run.experiment_config(gq4, run.Settings(scale="large"))
    del config.model["prune_range"]
    assert run.config_digest(config) == digest
    pruned = run.Settings(scale="large", overrides=(("model.prune_range", 4),))
    assert run.config_digest(run.experiment_config(gq4, pruned)) != digest


@pytest.mark.slow
def test_a_float_run_publishes_every_file(float_result):
    folder = float_result / "results/recipe/rnnt_float"
    assert {f for f in PUBLISHED if not (folder / f).exists()} == set()
    result = json.loads((folder / "metrics.json").read_text())
    assert (result["average_bits"], result["step_time_ratio"], result["trained_steps"]) == (32.0, 1.0, 3)


@pytest.mark.slow
def test_a_fine_tune_publishes_every_file_with_its_budget_and_sizes(tiny_results):
    folder = tiny_results / "results/recipe/rnnt_gq_4"
    assert {f for f in PUBLISHED + ("weights_start.png", "weights_end.png") if not (folder / f).exists()} == set()
    gq = json.loads((tiny_results / "results/recipe/rnnt_gq_4/metrics.json").read_text())
    assert (gq["budget_steps"], gq["trained_steps"], gq["planned_steps"]) == (2, 2, 4000)
    assert gq["average_bits"] == 4.0 and gq["git_commit"]
    assert gq["saving_vs_8bit"] == pytest.approx(1 - gq["size_bytes"] / gq["reference_8bit_bytes"])
    assert gq["size_bytes"] < gq["reference_8bit_bytes"] < gq["float32_bytes"]
    decodes = json.loads((tiny_results / "results/recipe/rnnt_gq_4/eval.json").read_text())
    assert set(decodes) == {"greedy", "beam4"} and all(set(d) == set(run.SPLITS) for d in decodes.values())
    assert "python -m experiments.run rnnt_gq_4" in (tiny_results / "results/recipe/rnnt_gq_4/command.txt").read_text()


@pytest.mark.slow
def test_rerunning_does_nothing_and_a_larger_budget_continues_from_the_checkpoint(tiny_results, tiny_corpus, capsys):
    workdir = tiny_results / "runs/recipe/rnnt_gq_4"
    before = (workdir / metrics.METRICS_FILE).read_text(), (workdir / run.SESSIONS_FILE).read_text()
    published = (tiny_results / "results/recipe/rnnt_gq_4/metrics.json").read_text()
    run.run_experiment("rnnt_gq_4", settings(tiny_corpus, tiny_results, 2))
    assert "up to date" in capsys.readouterr().out
    assert ((workdir / metrics.METRICS_FILE).read_text(), (workdir / run.SESSIONS_FILE).read_text()) == before
    assert (tiny_results / "results/recipe/rnnt_gq_4/metrics.json").read_text() == published

    result = run.run_experiment("rnnt_gq_4", settings(tiny_corpus, tiny_results, 3))
    sessions = run.read_jsonl(workdir / run.SESSIONS_FILE)
    assert [(s["start_step"], s["end_step"]) for s in sessions] == [(0, 2), (2, 3)]
    assert (result["trained_steps"], result["train_sessions"]) == (3, 2)
    assert [r["step"] for r in metrics.read(workdir)] == [1, 2, 3]


@pytest.mark.slow
def test_a_finished_row_rerun_with_a_publish_root_is_published_without_rescoring(tiny_results, tiny_corpus, capsys):
    models = tiny_results / "models_later"
    metrics_file = tiny_results / "results/recipe/rnnt_gq_4/metrics.json"
    before = metrics_file.read_text()
    # A budget below the steps trained (2, or 3 after the test above) trains nothing and scores nothing.
    run.run_experiment("rnnt_gq_4", dataclasses.replace(settings(tiny_corpus, tiny_results, 1), publish_root=str(models)))
    assert f"published {models / 'rnnt_gq_4_recipe'}" in capsys.readouterr().out
    assert metrics_file.read_text() == before  # not scored again
    decodes = json.loads((tiny_results / "results/recipe/rnnt_gq_4/eval.json").read_text())
    card = published.load_card(models / "rnnt_gq_4_recipe")
    assert (card["experiment"], card["test_wer"]) == ("rnnt_gq_4", decodes["greedy"]["test"]["wer"])


@pytest.mark.slow
def test_a_qwix_fine_tune_names_the_weights_qwix_kept_float(tiny_results, tiny_corpus):
    result = run.run_experiment("rnnt_qwix_4", settings(tiny_corpus, tiny_results, 1))
    assert result["float_weights"] == ["joint/output/kernel", "predictor/embedding/embedding"]
    assert (result["average_bits"], result["trained_steps"]) == (4.0, 1) and result["step_time_ratio"] > 0
    gq = json.loads((tiny_results / "results/recipe/rnnt_gq_4/metrics.json").read_text())
    assert gq["float_weights"] == []


@pytest.mark.slow
def test_post_training_run_quantizes_the_parent_without_training(tiny_results, tiny_corpus):
    models = tiny_results / "models"
    result = run.run_experiment("rnnt_ptq_kmeans_2", dataclasses.replace(
        settings(tiny_corpus, tiny_results, None), publish_root=str(models)))
    assert (result["kind"], result["budget_steps"], result["average_bits"]) == ("post", 0, 2.0)
    assert not (tiny_results / "runs/recipe/rnnt_ptq_kmeans_2/checkpoints").exists()
    assert result["step_time_ratio"] is None
    # --publish-root: the shipped model as a published folder, which eval.py --model scores.
    model = published.load(models / "rnnt_ptq_kmeans_2_recipe")
    assert (model.card["experiment"], model.card["method"], model.sizes.average_bits) == ("rnnt_ptq_kmeans_2", "ptq_kmeans", 2.0)
    scored = eval_cmd.evaluate_published(str(models / "rnnt_ptq_kmeans_2_recipe"), str(tiny_corpus), ["test"], max_examples=1)
    assert scored["results"]["test"]["published"]["wer"] == pytest.approx(model.card["test_wer"])


@pytest.mark.slow
def test_a_finished_row_whose_config_changed_is_scored_again(tiny_results, tiny_corpus, capsys):
    row = settings(tiny_corpus, tiny_results, None)
    run.run_experiment("rnnt_ptq_kmeans_2", row)
    before = json.loads((tiny_results / "results/recipe/rnnt_ptq_kmeans_2/metrics.json").read_text())
    capsys.readouterr()
    changed = run.run_experiment("rnnt_ptq_kmeans_2", dataclasses.replace(row, overrides=row.overrides + (("quant.mu", 100.0),)))
    assert "up to date" not in capsys.readouterr().out
    assert changed["eval_settings"]["config"] != before["eval_settings"]["config"]
    assert {k: v for k, v in changed["eval_settings"].items() if k != "config"} == {
        k: v for k, v in before["eval_settings"].items() if k != "config"}


@pytest.fixture
def published_scale(float_result, monkeypatch):
    """A scale like "recipe" whose RNN-T float model is the tiny float run, published."""
    from training import runs

    folder = float_result / "published_float"
    workdir = float_result / "runs/recipe/rnnt_float"
    if not published.is_published(folder):
        trained = runs.load(workdir)
        eval_cmd.publish_run(trained, trained.export(), workdir, folder)
    scale = dataclasses.replace(registry.SCALES["recipe"], name="published", float_models={"rnnt": str(folder)})
    monkeypatch.setitem(registry.SCALES, "published", scale)
    return folder


@pytest.mark.slow
def test_a_scale_standing_on_a_published_float_model_scores_it_and_starts_every_row_from_it(
        float_result, tiny_corpus, published_scale):
    at_scale = dataclasses.replace(settings(tiny_corpus, float_result, None), scale="published",
                                   publish_root=str(float_result / "models"))
    float_row = run.run_experiment("rnnt_float", at_scale)
    # Nothing trains: the row scores the published weights and reports the training on its card.
    assert not (float_result / "runs/published/rnnt_float/checkpoints").exists()
    assert (float_row["trained_steps"], float_row["budget_steps"], float_row["published_model"]) == (
        3, 3, str(published_scale))
    line = report.setup_line("rnnt", report.load_results(float_result / "results/published"))
    assert f"float model the published {published_scale} (3/3 steps)" in line
    finetune = run.run_experiment("rnnt_gq_2", dataclasses.replace(at_scale, budget_steps=1))
    config = json.loads((float_result / "results/published/rnnt_gq_2/config.json").read_text())
    assert config["quant"]["init_from"] == str(published_scale)
    assert (finetune["trained_steps"], finetune["eval_settings"]["parent_step"]) == (1, 3)
    post = run.run_experiment("rnnt_ptq_round_2", at_scale)
    assert (post["kind"], post["average_bits"]) == ("post", 2.0)
    card = published.load_card(float_result / "models/rnnt_ptq_round_2_published")
    assert (card["quantized_from"], card["checkpoint"], card["method"]) == (str(published_scale), 3, "ptq_round")


def test_a_scale_whose_published_float_model_is_missing_is_an_error_naming_it(tmp_path, tiny_corpus, monkeypatch):
    scale = dataclasses.replace(registry.SCALES["recipe"], name="published",
                                float_models={"rnnt": str(tmp_path / "nowhere")})
    monkeypatch.setitem(registry.SCALES, "published", scale)
    with pytest.raises(FileNotFoundError, match="published float model .*nowhere"):
        run.run_experiment("rnnt_gq_2", dataclasses.replace(settings(tiny_corpus, tmp_path, 2), scale="published"))


def test_a_fine_tune_without_its_float_run_is_an_error_naming_the_parent(tmp_path, tiny_corpus):
    with pytest.raises(FileNotFoundError, match="experiments.run rnnt_float --scale recipe"):
        run.run_experiment("rnnt_gq_2", settings(tiny_corpus, tmp_path, 2))


@pytest.mark.slow
def test_report_is_generated_from_the_files_and_marks_missing_runs(tiny_results, tmp_path):
    # With the workdirs and no results, the rows in training say how far they are.
    running = report.write_report(tmp_path, tiny_results / "runs").read_text()
    rows = [line for line in running.splitlines() if line.startswith("| rnnt_gq_4 |")]
    assert any(re.match(r"\| rnnt_gq_4 \| running: checkpoint \d+ of 4000 steps \|", row) for row in rows), rows

    path = report.write_report(tiny_results / "results")
    text = path.read_text()
    gq = json.loads((tiny_results / "results/recipe/rnnt_gq_4/metrics.json").read_text())
    row = next(line for line in text.splitlines() if line.startswith("| [rnnt_gq_4]"))
    assert str(gq["size_bytes"]) in row and f"{gq['trained_steps']}/4000 steps (partial)" in row
    assert "| rnnt_gq_2 | not yet measured |" in text
    # The recipe scale is an appendix: the model it did not measure is left out, not listed as missing.
    assert "conformer_float" not in text.split("## Appendix: scale `recipe`")[1]
    assert "not the published set-up" in text  # the tiny rows are flagged
    assert (tiny_results / "results/recipe/wer_against_bits_rnnt.png").exists()
    assert not (tiny_results / "results/recipe/wer_against_bits_conformer.png").exists()


def test_comparison_with_qwix_names_the_weights_qwix_kept_float():
    row = lambda wer, kept: {"eval": {"greedy": {"test": {"wer": wer}}}, "float_weights": kept}
    results = {"rnnt_gq_8": row(0.30, []), "rnnt_qwix_8": row(0.25, ["joint/output/kernel"]),
               "rnnt_gq_4": row(0.31, []), "rnnt_qwix_4": row(0.40, ["joint/output/kernel"])}
    text = report.comparison("rnnt", "qwix", results)
    assert "8 bits: GQ 30.00 % vs 25.00 % (+5.00 points, GQ not better, qwix kept joint/output/kernel float)" in text
    assert "4 bits: GQ 31.00 % vs 40.00 % (-9.00 points, GQ better, qwix kept joint/output/kernel float)" in text
    assert "kept" not in report.comparison("rnnt", "uniform_ste", {
        "rnnt_gq_4": row(0.31, []), "rnnt_uniform_ste_4": row(0.35, [])})


def test_an_ablation_matters_only_when_its_spread_exceeds_twice_the_standard_error():
    row = lambda wer: {"eval": {"greedy": {"test": {"wer": wer, "num_words": 2500}}}}
    results = {registry.ablation_name("mode", value, bits): row(wer)  # twice the SE at 50 % is 2 points
               for value, bits, wer in (("ste", 4, 0.50), ("soft", 4, 0.51), ("ste", 2, 0.50), ("soft", 2, 0.53))}
    line = next(line for line in report.ablation_headline(results) if line.startswith("- mode:"))
    assert "4 bits: spread 1.00 WER points (within noise: twice the standard error is 2.00), lowest WER ste, within noise" in line
    assert "2 bits: spread 3.00 WER points (matters: twice the standard error is 2.00), best ste" in line


def test_the_headline_states_how_much_the_same_budget_of_float_training_changes_wer():
    row = lambda wer: {"eval": {"greedy": {"test": {"wer": wer}}}}
    missing = report.control_line("rnnt", {"rnnt_float": row(0.5)})
    assert "not yet measured" in missing and "extra training" in missing
    line = report.control_line("rnnt", {"rnnt_float": row(0.5), "rnnt_float_finetune": row(0.45)})
    assert "has WER 45.00 % against 50.00 % (-10.0 % relative)" in line


def test_a_low_bit_gq_row_is_judged_against_float_and_against_the_control():
    def row(name: str, method: str, wer: float) -> dict:
        return {"eval": {"greedy": {"test": {"wer": wer}}}, "name": name, "model": "rnnt", "method": method,
                "table": "main", "kind": "finetune", "average_bits": 4.0 if method == "gq" else 32.0,
                "saving_vs_8bit": 0.48, "trained_steps": 300, "planned_steps": 300}

    results = {"rnnt_float": row("rnnt_float", "float", 0.50),
               "rnnt_float_finetune": row("rnnt_float_finetune", "float", 0.45),
               "rnnt_gq_4": row("rnnt_gq_4", "gq", 0.505)}
    line = next(line for line in report.headline("rnnt", results) if line.startswith("- rnnt_gq_4"))
    assert "vs float 50.00 % (+1.0 % relative: yes), vs the control 45.00 % (+12.2 % relative: no)" in line


def test_standard_error_is_the_binomial_approximation():
    assert report.standard_error(0.5, 2500) == pytest.approx(0.01)
    assert report.standard_error(1.2, 100) == 0.0  # a WER above 100 % is capped


def test_report_of_an_empty_folder_measures_nothing(tmp_path):
    text = report.write_report(tmp_path).read_text()
    assert "| rnnt_float | not yet measured |" in text and "yes" not in text.lower().split("### rnnt")[0]


def test_several_runs_go_on_past_a_failure_and_exit_naming_every_failed_run(tmp_path, tiny_corpus, capfd):
    with pytest.raises(SystemExit, match="2 of 2 failed: rnnt_gq_2, rnnt_uniform_ste_4"):
        run.main(["rnnt_gq_2", "rnnt_uniform_ste_4", "--data", str(tiny_corpus), "--runs-root", str(tmp_path)])
    err = capfd.readouterr().err  # each run's own process wrote its error
    assert err.count("which has no checkpoint") == 2 and "experiments.run: rnnt_gq_2 failed" in err


def test_override_values_are_parsed_as_literals_or_kept_as_text():
    assert run.parse_override("quant.mu=8.0") == ("quant.mu", 8.0)
    assert run.parse_override("model.time_reduction_layer=None") == ("model.time_reduction_layer", None)
    assert run.parse_override("data.path=data/x") == ("data.path", "data/x")
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        run.parse_override("novalue")


def test_the_differences_table_has_a_paired_interval_per_split_and_decode_where_scores_exist():
    def row(name: str, errors: list[int], beam: bool) -> dict:
        scores = {split: {"wer": sum(errors) / 40, statistics.UTTERANCE_ERRORS: errors,
                          statistics.UTTERANCE_WORDS: [10] * 4} for split in run.SPLITS}
        return {"name": name, "average_bits": 4.0, "eval": {"greedy": scores, **({"beam4": scores} if beam else {})}}

    results = {"rnnt_float": row("rnnt_float", [1, 2, 0, 1], True), "rnnt_gq_4": row("rnnt_gq_4", [3, 2, 1, 2], False)}
    lines = report.differences_table("rnnt", results)
    assert lines[0].startswith("| run | bits | Δ test greedy |") and "Δ real beam 4" in lines[0]
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:2] == ["rnnt_gq_4", "4.00"] and cells[2].startswith("+10.00 [")  # (8 - 4) / 40 words
    assert cells[2 + len(run.SPLITS):] == ["-"] * len(run.SPLITS)  # no beam scores for the GQ row
    assert report.differences_table("conformer", results) == []
    assert report.differences_table("rnnt", {"rnnt_float": results["rnnt_float"]}) == []  # nothing to compare


def test_scales_other_than_the_headline_one_are_appendices_named_for_their_operating_point(tmp_path):
    folder = tmp_path / "cpu" / "rnnt_float"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({
        "name": "rnnt_float", "model": "rnnt", "method": "float", "kind": "train", "table": "main",
        "average_bits": 32.0, "size_bytes": 4, "saving_vs_8bit": -3.0, "greedy_rtf": 0.1, "step_time_ratio": None,
        "trained_steps": 10, "planned_steps": 10, "float32_bytes": 4, "best_dev_wer": 0.6, "best_dev_step": 10,
        "settings": {"data": None, "overrides": []}, "eval_settings": {"max_examples": 0, "data": "d"}}))
    (folder / "eval.json").write_text(json.dumps({"greedy": {s: {"wer": 0.563, "num_words": 100} for s in run.SPLITS}}))
    text = report.write_report(tmp_path).read_text()
    headline_at, appendix_at = text.index(f"## Scale `{registry.HEADLINE_SCALE}`"), text.index("## Appendix: scale `cpu`")
    assert headline_at < appendix_at and "an operating point at float test WER rnnt 56.3 %" in text
    assert "## Scales not yet measured" in text and "- `recipe`:" in text
    headline_section, appendix = text[headline_at:appendix_at], text[appendix_at:text.index("## Scales not yet")]
    assert "### conformer" in headline_section and "### RNN-T ablations" in headline_section  # every row listed
    assert "### rnnt" in appendix and "rnnt_float" in appendix
    assert "### conformer" not in appendix and "ablations" not in appendix  # nothing measured there


def test_the_wer_against_bits_picture_draws_the_float_wer_as_its_baseline(tmp_path, monkeypatch):
    float_row = {"name": "rnnt_float", "model": "rnnt", "method": "float", "kind": "train", "table": "main",
                 "average_bits": 32.0, "size_bytes": 4, "saving_vs_8bit": -3.0, "greedy_rtf": 0.1,
                 "step_time_ratio": None, "trained_steps": 10, "planned_steps": 10, "float32_bytes": 4,
                 "best_dev_wer": 0.6, "best_dev_step": 10, "parent": None,
                 "settings": {"data": None, "overrides": []}, "eval_settings": {"max_examples": 0, "data": "d"}}
    gq_row = {**float_row, "name": "rnnt_gq_4", "method": "gq", "kind": "finetune", "average_bits": 4.0,
              "parent": "rnnt_float", "saving_vs_8bit": 0.5}
    for row, wer in ((float_row, 0.25), (gq_row, 0.27)):
        folder = tmp_path / "cpu" / row["name"]
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(row))
        (folder / "eval.json").write_text(json.dumps({"greedy": {s: {"wer": wer, "num_words": 100} for s in run.SPLITS}}))
    drawn = []
    monkeypatch.setattr(report.pictures, "wer_against_bits",
                        lambda points, path, title, baselines=(): drawn.append((points, baselines)))
    report.write_report(tmp_path)
    assert drawn == [({"gq": [(4.0, 0.27)]}, [("float", 0.25)])]
