"""The LibriSpeech recipes start, train and score, through TFDS and the folder layout, by running the
commands of the README's "LibriSpeech on GPU/TPU" section on a fake LibriSpeech tree.

Every command of that section runs as written (`python` is this interpreter, `runs/` a temporary
folder) with the RNN-T recipe, except the lines marked [download] or [accelerator install]; the
Conformer recipe runs the ones that train and score it through both kinds (TFDS with its dev
evaluation, the folder with eval.py), not the GQ fine-tune and multi-host lines again.
Shrunk for CI time, and only these fields (appended to each train.py command): the model's sizes
(SHRINK below: widths and depths; the RNN-T keeps its 8 layers so that its 1-bit rule for layers
2-5 still matches), data.max_batch_seconds 2 (the fake utterances last 0.1-0.4 s) with 2 buckets
and the loader in the training process (grain workers are tested elsewhere), num_train_steps 2 with logging, evaluation and checkpoints at step 2,
max_dev_examples 4, eval_batch_size 4, warm-up 1 step, the alpha schedule over the 2 steps. The
data kinds, split union, tokenizer, vocabulary ceiling, SpecAugment, quantization rules and
everything else are the recipe's own.
"""

import json
import os
import pathlib
import re
import shlex
import socket
import subprocess
import sys

import pytest

import fake_librispeech as fake
from corpora import librispeech
from training import checkpoints, metrics

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEADING = "## LibriSpeech on GPU/TPU"
SKIPPED_MARKS = ("[download]", "[accelerator install]")
COMMON_SHRINK = (
    "--config.data.max_batch_seconds=2.0", "--config.data.num_buckets=2", "--config.data.num_workers=0",
    "--config.num_train_steps=2", "--config.log_every_steps=2", "--config.eval_every_steps=2",
    "--config.checkpoint_every_steps=2", "--config.data.max_dev_examples=4", "--config.eval_batch_size=4",
    "--config.optim.warmup_steps=1", "--config.quant.alpha.end_step=2")
CONFORMER_SKIPS = ("ls-gq", "--distributed")
SHRINK = {
    "configs/rnnt_librispeech.py": (
        "--config.model.encoder_hidden_size=16", "--config.model.predictor_hidden_size=16",
        "--config.model.predictor_embed_dim=8", "--config.model.joint_dim=16"),
    "configs/conformer_librispeech.py": (
        "--config.model.encoder_layers=1", "--config.model.model_dim=16", "--config.model.num_heads=2",
        "--config.model.ff_multiplier=2", "--config.model.subsampling_channels=8",
        "--config.model.predictor_hidden_size=16", "--config.model.predictor_embed_dim=8",
        "--config.model.joint_dim=16"),
}


def readme_commands() -> list[str]:
    """The shell lines of the section's code block, without comments and the skipped lines."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text[text.index(HEADING):], re.DOTALL).group(1)
    lines = []
    for line in block.splitlines():
        if any(mark in line for mark in SKIPPED_MARKS):
            continue
        line = line.split(" # ")[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """The seven LibriSpeech splits, fake, under one extracted root."""
    root = tmp_path_factory.mktemp("extracted")
    fake.write_all_splits(root, list(librispeech.SPLITS.values()))
    return root


def test_the_readme_section_covers_both_data_kinds_and_multi_host():
    commands = readme_commands()
    assert any("--config.data.kind=librispeech_folder" in c for c in commands)
    assert any(c.startswith("python -m corpora.librispeech") for c in commands)
    assert any("--distributed" in c for c in commands)


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(SHRINK))
def test_each_librispeech_recipe_trains_and_scores_as_the_readme_says(config, extracted, tmp_path_factory):
    work = tmp_path_factory.mktemp("recipe")
    env = {**os.environ, "LIBRISPEECH": str(extracted), "TFDS_DIR": str(work / "tfds"),
           "CONFIG": config, "JAX_PLATFORMS": "cpu", "NUM_HOSTS": "2",
           "COORDINATOR": f"localhost:{free_port()}"}
    commands = readme_commands()
    if "conformer" in config:
        commands = [c for c in commands if not any(skip in c for skip in CONFORMER_SKIPS)]
    for command in commands:
        if command.startswith("CONFIG="):
            assert command.split("=", 1)[1] == "configs/rnnt_librispeech.py"  # the line the reader sees
            continue
        command = command.replace("runs/", f"{work}/runs/")
        command = re.sub(r"^python ", shlex.quote(sys.executable) + " ", command)
        if "train.py" in command:
            command += " " + " ".join(COMMON_SHRINK + SHRINK[config])
        hosts = int(env["NUM_HOSTS"]) if "--distributed" in command else 1
        processes = [subprocess.Popen(["bash", "-c", command], cwd=ROOT, env={**env, "HOST_ID": str(i)},
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for i in range(hosts)]
        for host, process in enumerate(processes):
            out, err = process.communicate(timeout=600)
            assert process.returncode == 0, f"{command}\n{err[-3000:]}"
            if "train.py" in command and host == 0:
                assert re.search(r"input pipeline: [12] batch shape\(s\) compile", out), out[-2000:]
    runs = work / "runs"
    trained = ("ls-float", "ls-folder") + (() if "conformer" in config else ("ls-gq", "ls-multihost"))
    for name in trained:
        assert checkpoints.manager(runs / name, create=False).latest_step() == 2, name
        assert 0 <= metrics.read(runs / name)[-1]["dev_wer"]
    for name in ("ls-folder",) + (() if "conformer" in config else ("ls-gq",)):
        scored = json.loads((runs / name / "eval.json").read_text())
        assert set(scored) == {"test_clean", "test_other"}
        assert all(s["num_words"] > 0 for by_model in scored.values() for s in by_model.values())
    assert "conformer" in config or (runs / "ls-gq.gqpk").stat().st_size > 0
    saved = json.loads((runs / "ls-float" / "config.json").read_text())
    assert saved["data"]["train_split"] == "train_clean100+train_clean360+train_other500"


def test_preparing_tfds_names_the_missing_split_folders(tmp_path):
    fake.write_split(tmp_path, "dev-clean", fake.split_utterances(0))
    with pytest.raises(FileNotFoundError, match="lacks the LibriSpeech split folder.*'test-clean'"):
        librispeech.prepare_tfds(tmp_path, tmp_path / "tfds")
