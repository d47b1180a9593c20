"""Test-wide set-up: the repository root on sys.path, one XLA compilation cache for the session, and
the session fixtures several modules share.

`tiny_corpus` (the tiny synth-en corpus), `float_run` and `gq_run` (6-step training runs on it) are
built once per session.

The compilation cache: most of a tiny training run's CPU time is XLA compiling the same programs
(the tiny config's train and eval steps, a recipe's steps) that other tests, other pytest-xdist
workers and the train.py / eval.py subprocesses compile again. JAX's persistent cache, in one fresh
folder per `pytest` invocation that every worker and subprocess inherits through the environment,
compiles each program once; a cache hit runs the same executable, so nothing a test checks changes.
A JAX_COMPILATION_CACHE_DIR already set is used as it is.
"""

import atexit
import os
import pathlib
import shutil
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # the first process (xdist's controller) makes it
    _cache = tempfile.mkdtemp(prefix="gq-jax-tests-xla-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
if "jax" in sys.modules:  # imported before this file (a plugin): its config has read the environment
    import jax

    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes",
                      int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"]))

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
