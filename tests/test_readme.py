"""The README's examples run as written and do what they say."""

import pathlib
import re

import numpy as np
import pytest

import gq_jax
from scripts.run_readme_example import readme_example
from tests.tiny_run import tiny_config
from training import metrics, runs


def test_readme_example_runs_and_writes_a_packed_model(tmp_path, capsys):
    code = readme_example().replace("/tmp/model.gqpk", str(tmp_path / "model.gqpk"))
    assert len([line for line in code.splitlines() if line.strip()]) <= 22
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    output = capsys.readouterr().out
    assert "encoder/lstm_0/kernel" in output and "uniform 8-bit" in output
    loaded = gq_jax.load_packed(tmp_path / "model.gqpk")
    kernel_0 = loaded["encoder"]["lstm_0"]["kernel"]
    assert isinstance(kernel_0, gq_jax.QuantizedArray) and kernel_0.bits == 1
    assert loaded["encoder"]["lstm_1"]["kernel"].bits == 4
    assert len(np.unique(np.asarray(gq_jax.dequantize(loaded)["encoder"]["lstm_0"]["kernel"]))) <= 2


def test_readme_documents_the_test_command_that_ci_runs():
    root = pathlib.Path(__file__).resolve().parents[1]
    assert "make test" in (root / "README.md").read_text()
    assert "make test" in (root / ".ci" / "run").read_text()


def readme_block(heading: str) -> str:
    """The first ```python block after `heading` in the README."""
    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    return re.search(r"```python\n(.*?)```", text[text.index(heading):], re.DOTALL).group(1)


def test_readme_streaming_example_streams_the_tokens_of_the_whole_utterance():
    namespace: dict = {}
    exec(compile(readme_block("#### Streaming"), "README.md", "exec"), namespace)  # it asserts the equality
    assert namespace["tokens"] and namespace["decoder"].chunk_samples == 1600


@pytest.mark.slow
def test_readme_custom_quantizer_trains_through_train_py_and_ships_power_of_two_weights(
        tiny_corpus, float_run, tmp_path, monkeypatch):
    import train
    from training import config as config_lib

    monkeypatch.setattr(config_lib, "METHODS", dict(config_lib.METHODS))  # the block registers "pow2"
    exec(compile(readme_block("### Custom quantizer"), "README.md", "exec"), {})
    workdir = tmp_path / "pow2"
    train.train_and_evaluate(tiny_config(tiny_corpus, **{
        "quant.method": "pow2", "quant.init_from": str(float_run), "num_train_steps": 2}), str(workdir))
    run, start = runs.load(workdir), runs.load(float_run)
    assert run.step == 2 and all(np.isfinite(r["loss"]) for r in metrics.read(workdir))
    assert not np.array_equal(run.params["joint"]["output"]["kernel"], start.params["joint"]["output"]["kernel"])
    exported = run.export()
    kernels = [path for path in exported.sizes.leaves if path.path.endswith("kernel")]
    assert kernels and exported.sizes.quantized_leaves == tuple(leaf.path for leaf in kernels)
    hardened = dict(gq_jax.config.leaves_with_paths(exported.hardened, is_leaf=gq_jax.artifact.is_quantized))
    for leaf in kernels:
        q = hardened[leaf.path]
        magnitudes = np.abs(np.asarray(gq_jax.dequantize(q))) / np.asarray(q.scale)
        np.testing.assert_allclose(np.log2(magnitudes), np.round(np.log2(magnitudes)), atol=1e-5)
        assert np.log2(magnitudes).min() >= -(2 ** (leaf.bits - 1)) + 1 - 1e-5 and magnitudes.max() <= 1 + 1e-6
    packed = tmp_path / "pow2.gqpk"
    gq_jax.save_packed(packed, exported.hardened)
    assert gq_jax.size_report(gq_jax.load_packed(packed)) == exported.sizes
