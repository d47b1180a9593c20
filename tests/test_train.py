"""train.py: resume after SIGKILL is exact, pmap over 2 devices matches 1, bad input fails clearly.

The session fixtures `float_run` and `gq_run` (tests/conftest.py) train a tiny RNN-T on the tiny
synth-en corpus in process.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests.tiny_run import tiny_config
from training import checkpoints, metrics, runs

ROOT = pathlib.Path(__file__).resolve().parents[1]


def command(corpus: pathlib.Path, workdir: pathlib.Path, *flags: str) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs/test_tiny.py"),
            "--workdir", str(workdir), f"--config.data.path={corpus}", *flags]


def subprocess_env(devices: int = 1) -> dict[str, str]:
    return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
            "JAX_PLATFORMS": "cpu"}


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_changed_fraction_counts_the_weights_whose_index_moved():
    before = {"a": np.array([0, 1, 2, 3]), "b": np.array([[1, 1], [0, 0]])}
    after = {"a": np.array([0, 1, 3, 3]), "b": np.array([[0, 1], [0, 1]])}
    assert metrics.changed_fraction(before, after) == pytest.approx(3 / 8)
    assert metrics.changed_fraction({}, after) is None


@pytest.mark.slow
def test_float_run_logs_metrics_and_keeps_checkpoints(float_run):
    records = metrics.read(float_run)
    assert [r["step"] for r in records] == [2, 4, 6]
    assert all(np.isfinite(r["loss"]) and r["learning_rate"] > 0 for r in records)
    assert 0.0 <= records[-1]["dev_wer"]
    assert_gradient_metrics(records, float_run=True)
    assert sorted(checkpoints.manager(float_run, create=False).all_steps()) == [2, 4, 6]
    events = list((pathlib.Path(float_run) / metrics.TENSORBOARD_DIR).glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0


@pytest.mark.slow
def test_gq_fine_tuning_starts_from_the_float_run_and_keeps_centroids_sorted(gq_run, float_run):
    run = runs.load(gq_run)
    for path, c in run.quant.centroids.items():
        c = np.asarray(c)
        assert np.all(np.diff(c) >= 0) and np.all(np.abs(c) <= 1), path
    records = metrics.read(gq_run)
    assert all(0.0 <= r["changed_centroid_fraction"] <= 1.0 for r in records)
    assert (gq_run / "weights_start.png").exists() and (gq_run / "weights_end.png").exists()
    assert_gradient_metrics(records, float_run=False)


def assert_gradient_metrics(records: list[dict], float_run: bool) -> None:
    """Every logged record has finite per-module gradient norms (the centroids' too) whose squares sum
    to the global norm, and the share of latent weights receiving gradient: 1 in float training; for
    GQ above 0 at the first log (step 2, α ≈ 11), while after a snap (step 3) every weight sits on a
    centroid, where the soft Jacobian is ≈ exp(−α) and the share can be 0."""
    for r in records:
        groups = {k: v for k, v in r.items() if k.startswith("grad_norm/")}
        assert {"grad_norm/encoder", "grad_norm/quantizer"} <= set(groups), sorted(r)
        assert all(v is not None and np.isfinite(v) and v >= 0 for v in groups.values()), groups
        assert r["grad_norm"] == pytest.approx(np.sqrt(sum(v * v for v in groups.values())), rel=1e-4)
        assert (groups["grad_norm/quantizer"] == 0.0) == float_run and groups["grad_norm/encoder"] > 0
        assert r["grad_share"] == 1.0 if float_run else 0.0 <= r["grad_share"] <= 1.0
    assert float_run or records[0]["grad_share"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("method", ["float", "gq_snapping"])
def test_resume_after_sigkill_ends_with_the_parameters_of_an_uninterrupted_run(
        method, tiny_corpus, float_run, gq_run, tmp_path):
    """Float, and GQ snapping every 3 steps (the gq_run fixture's settings), killed after step 2;
    the killed and resumed runs load with 2 grain worker processes, the references in process."""
    workdir = tmp_path / "killed"
    flags = ("--config.data.num_workers=2",) + (() if method == "float" else (
        "--config.quant.method=gq", f"--config.quant.init_from={float_run}", "--config.quant.snap_every=3"))
    reference_dir = float_run if method == "float" else gq_run
    process = subprocess.Popen(command(tiny_corpus, workdir, *flags), env=subprocess_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 80
    while not (workdir / "checkpoints" / "2").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = checkpoints.manager(workdir, create=False).latest_step()
    assert killed_at is not None and killed_at < 6, f"the run was not interrupted (latest {killed_at})"
    result = subprocess.run(command(tiny_corpus, workdir, *flags), env=subprocess_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resumed from step {killed_at}" in result.stdout
    resumed, reference = runs.load(workdir), runs.load(reference_dir)
    assert resumed.step == reference.step == 6
    assert_trees_equal(resumed.params, reference.params)
    assert_trees_equal(resumed.quant, reference.quant)
    # Records logged after the checkpoint it resumed from are not duplicated.
    records = metrics.read(workdir)
    assert [r["step"] for r in records] == [r["step"] for r in metrics.read(reference_dir)]
    # The run's clock spans both processes, and the resume is counted.
    walls = [r["wall_s"] for r in records]
    assert walls == sorted(walls) and walls[0] > 0 and records[-1]["resumes"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("flag,field", [("--config.seed=1", "seed"),  # every field: tests/test_batching.py
                                        ("--config.data.max_train_examples=30", "corpus_fingerprint")])
def test_resuming_with_another_batch_plan_is_an_error_naming_the_field(flag, field, tiny_corpus, float_run,
                                                                       tmp_path):
    import shutil

    workdir = tmp_path / "copy"
    shutil.copytree(float_run, workdir)
    result = subprocess.run(command(tiny_corpus, workdir, "--config.num_train_steps=8", flag),
                            env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "cannot resume: the batch plan differs" in result.stderr and f"{field}: saved" in result.stderr


@pytest.mark.slow
def test_pmap_over_two_devices_matches_one_device_with_the_same_global_batch(
        tiny_corpus, float_run, tmp_path):
    workdir = tmp_path / "two-devices"
    result = subprocess.run(command(tiny_corpus, workdir, "--config.eval_every_steps=100"),
                            env=subprocess_env(devices=2), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    two, one = runs.load(workdir), runs.load(float_run)
    for x, y in zip(jax.tree_util.tree_leaves(two.params), jax.tree_util.tree_leaves(one.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-5)
    losses = [[r["loss"] for r in metrics.read(w)] for w in (workdir, float_run)]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)


def test_unknown_config_field_on_the_command_line_is_an_error_naming_it(tmp_path):
    result = subprocess.run(command(tmp_path, tmp_path / "w", "--config.quant.snap_evry=3"),
                            env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "snap_evry" in result.stderr
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_incompatible_checkpoint_is_a_clear_error_and_nothing_is_overwritten(tiny_corpus, float_run):
    import train

    before = {p: p.stat().st_mtime_ns for p in float_run.rglob("*")}
    config = tiny_config(tiny_corpus, **{"model.encoder_hidden_size": 8})
    with pytest.raises(ValueError, match="incompatible config.*encoder_hidden_size"):
        train.train_and_evaluate(config, str(float_run))
    assert {p: p.stat().st_mtime_ns for p in float_run.rglob("*")} == before


def test_missing_init_from_is_an_error_naming_it(tiny_corpus, tmp_path):
    import train

    config = tiny_config(tiny_corpus, **{"quant.method": "gq", "quant.init_from": str(tmp_path / "nowhere")})
    with pytest.raises(FileNotFoundError, match="nowhere"):
        train.train_and_evaluate(config, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_a_pruned_loss_fine_tune_keeps_the_parents_weights_and_adds_the_trivial_joiner(tiny_corpus, float_run,
                                                                                       tmp_path, capsys):
    import train
    from training import config as config_lib

    config = tiny_config(tiny_corpus, **{"quant.init_from": str(float_run), "model.prune_range": 2,
                                         "num_train_steps": 2, "eval_every_steps": 2, "checkpoint_every_steps": 2})
    model = config_lib.model_from_config(config.model, runs.load(float_run).tokenizer.vocab_size)
    start, parent = train.initial_params(model, config), checkpoints.restore_params(float_run)
    assert "init_from=" in capsys.readouterr().out  # names the modules that start from random weights
    assert set(start) == set(parent) | {"simple_am", "simple_lm"}
    assert_trees_equal({k: start[k] for k in parent}, dict(parent))
    train.train_and_evaluate(config, str(tmp_path / "pruned"))
    logged = metrics.read(tmp_path / "pruned")
    losses = [r["loss"] for r in logged if "loss" in r]
    assert losses and all(np.isfinite(losses)), logged
    narrower = tiny_config(tiny_corpus, **{"quant.init_from": str(float_run), "model.encoder_hidden_size": 8})
    with pytest.raises(ValueError, match="another model shape"):
        train.initial_params(config_lib.model_from_config(narrower.model, model.vocab_size), narrower)


@pytest.mark.slow
def test_a_fine_tune_starts_from_a_published_model_and_keeps_its_tokenizer(tiny_corpus, float_run, tmp_path):
    import eval as eval_cmd
    import train
    from training import config as config_lib
    from training import published

    folder = tmp_path / "published"
    eval_cmd.evaluate_run(str(float_run), splits=["test"], max_examples=1, publish=str(folder))
    stored = published.load(folder)
    config = tiny_config(tiny_corpus, **{"quant.method": "gq", "quant.init_from": str(folder),
                                         "num_train_steps": 2, "eval_every_steps": 2,
                                         "checkpoint_every_steps": 2})
    model = config_lib.model_from_config(config.model, stored.tokenizer.vocab_size)
    start = train.initial_params(model, config)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(start),
                                                    jax.tree_util.tree_leaves(stored.params)))
    train.train_and_evaluate(config, str(tmp_path / "gq"))
    assert (tmp_path / "gq" / "tokenizer.json").read_text() == (folder / "tokenizer.json").read_text()
    assert checkpoints.manager(tmp_path / "gq", create=False).latest_step() == 2
    config.data.tokenizer = "sentencepiece"
    with pytest.raises(ValueError, match="config.data.tokenizer='sentencepiece', but .* char tokenizer"):
        train.train_and_evaluate(config, str(tmp_path / "mismatch"))


@pytest.mark.slow
def test_nan_loss_stops_naming_the_step_and_the_last_good_checkpoint(tiny_corpus, tmp_path):
    workdir = tmp_path / "nan"
    result = subprocess.run(
        command(tiny_corpus, workdir, "--config.optim.learning_rate=1e38",
                "--config.optim.grad_clip_norm=1e38", "--config.checkpoint_every_steps=1",
                "--config.num_train_steps=20"),
        env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    last = checkpoints.manager(workdir, create=False).latest_step()
    assert f"Last good checkpoint: step {last}" in result.stderr
    assert f"at step {last + 1};" in result.stderr
    assert json.loads((workdir / "config.json").read_text())["optim"]["learning_rate"] == 1e38


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(tiny_corpus, float_run, tmp_path):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    workdir = tmp_path / "two-processes"
    processes = [subprocess.Popen(
        command(tiny_corpus, workdir, "--distributed", f"--coordinator_address=localhost:{port}",
                "--num_processes=2", f"--process_id={i}"),
        env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for process in processes:
        _, stderr = process.communicate(timeout=150)
        assert process.returncode == 0, stderr[-2000:]
    two, one = runs.load(workdir), runs.load(float_run)
    for x, y in zip(jax.tree_util.tree_leaves(two.params), jax.tree_util.tree_leaves(one.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-5)


def test_the_train_steps_compiled_ahead_cover_every_bucket_and_match_the_step_compiled_at_first_use(
        tiny_corpus, tmp_path):
    import train
    from corpora import batching
    from training import config as config_lib
    from training import input_pipeline
    from training import state as state_lib

    config = tiny_config(tiny_corpus, **{"data.num_buckets": 3, "quant.method": "gq"})
    split = input_pipeline.source(config.data, "train")
    tokenizer = input_pipeline.make_tokenizer(config.data, tmp_path, split)
    model = config_lib.model_from_config(config.model, tokenizer.vocab_size)
    method = config_lib.method_for(config.quant, model, config.features.num_mel_bins)
    optimizer = state_lib.make_optimizer(config)
    plan = input_pipeline.train_plan(config, split, tokenizer)
    params = state_lib.random_params(model, config)
    fresh_state = lambda: state_lib.replicate(
        state_lib.create(params, method.quantizer.init(params), optimizer, config.seed))
    step = train.make_p_train_step(config, method.training_model, method.quantizer, optimizer)

    compiled = train.compile_train_steps(step, fresh_state(), plan, threads=2)

    loader = batching.BatchLoader(split, tokenizer, plan)
    planned = batching.PlannedBatches(plan, 0, plan.batches_per_epoch)
    batches = [batching.split_for_devices(loader(planned[k]).batch) for k in range(len(planned))]
    assert len({train.batch_signature(b) for b in batches}) >= 2
    assert set(compiled) == {train.batch_signature(b) for b in batches}
    batch = batches[-1]
    ahead, ahead_metrics = compiled[train.batch_signature(batch)](fresh_state(), batch)
    first_use, first_use_metrics = step(fresh_state(), batch)
    assert_trees_equal(ahead.params, first_use.params)
    np.testing.assert_array_equal(ahead_metrics["loss"], first_use_metrics["loss"])
