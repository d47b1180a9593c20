"""The README's example runs as written and does what it says."""

import pathlib

import numpy as np

import gq_jax
from scripts.run_readme_example import readme_example


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
