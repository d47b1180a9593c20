"""Test-wide set-up: the repository root on sys.path, and the session fixtures several modules share.

`tiny_corpus` (the tiny synth-en corpus), `float_run` and `gq_run` (6-step training runs on it) are
built once per session.
"""

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.tiny_run import tiny_config  # noqa: E402


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> pathlib.Path:
    """The `tiny` synth-en corpus (seed 0): 40 train, 8 dev, 8 test, 8 test_other utterances."""
    from corpora import synth

    out = tmp_path_factory.getbasetemp() / "synth-en-tiny"
    synth.build(out, "tiny", seed=0, jobs=2, progress=False)
    return out


@pytest.fixture(scope="session")
def float_run(tiny_corpus, tmp_path_factory) -> pathlib.Path:
    """A finished 6-step float run (checkpoints at 2, 4, 6)."""
    import train

    workdir = tmp_path_factory.getbasetemp() / "float-run"
    if not (workdir / "checkpoints" / "6").exists():
        train.train_and_evaluate(tiny_config(tiny_corpus), str(workdir))
    return workdir


@pytest.fixture(scope="session")
def gq_run(tiny_corpus, float_run, tmp_path_factory) -> pathlib.Path:
    """A 6-step GQ 4-bit fine-tune of `float_run`, snapping every 3 steps."""
    import train

    workdir = tmp_path_factory.getbasetemp() / "gq-run"
    if not (workdir / "checkpoints" / "6").exists():
        train.train_and_evaluate(tiny_config(tiny_corpus, **{
            "quant.method": "gq", "quant.init_from": str(float_run), "quant.snap_every": 3}), str(workdir))
    return workdir
