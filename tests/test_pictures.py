"""Pictures: one histogram panel per quantized leaf, and the WER-against-bits chart, as PNGs."""

import jax
import jax.numpy as jnp
import matplotlib.image
import numpy as np
import pytest

import gq_jax
from training import pictures


def params():
    keys = jax.random.split(jax.random.key(0), 3)
    return {"lstm_0": {"kernel": jax.random.normal(keys[0], (16, 8)), "bias": jnp.zeros(8)},
            "lstm_1": {"kernel": jax.random.normal(keys[1], (8, 8))},
            "output": {"kernel": jax.random.normal(keys[2], (8, 4))}}


def test_histograms_draw_exactly_the_quantized_leaves_into_a_png(tmp_path):
    p = params()
    config = gq_jax.GQConfig([gq_jax.Rule("lstm_.*/kernel", bits=2, granularity="channel")])
    hardened = gq_jax.harden(p, gq_jax.init(p, config), config)
    drawn = pictures.weight_histograms(p, hardened, tmp_path / "w.png", "start")
    assert drawn == ["lstm_0/kernel", "lstm_1/kernel"]
    assert matplotlib.image.imread(tmp_path / "w.png").ndim == 3


def test_histograms_of_a_float_model_draw_nothing(tmp_path):
    assert pictures.weight_histograms(params(), params(), tmp_path / "w.png", "float") == []
    assert not (tmp_path / "w.png").exists()


@pytest.mark.parametrize("runs", [{"GQ": [(4.0, 0.2), (1.0, 0.5), (2.0, 0.3)], "uniform": [(8.0, 0.15)]}])
def test_wer_against_bits_writes_a_png(tmp_path, runs):
    pictures.wer_against_bits(runs, tmp_path / "wer.png")
    assert matplotlib.image.imread(tmp_path / "wer.png").shape[-1] in (3, 4)


def test_wer_against_bits_draws_each_baseline(tmp_path):
    runs = {"GQ": [(2.0, 0.3), (4.0, 0.2)]}
    pictures.wer_against_bits(runs, tmp_path / "none.png")
    pictures.wer_against_bits(runs, tmp_path / "one.png", baselines=[("float greedy", 0.18)])
    pictures.wer_against_bits(runs, tmp_path / "two.png", baselines=[("float greedy", 0.18), ("float LM", 0.12)])
    none, one, two = (matplotlib.image.imread(tmp_path / f"{n}.png") for n in ("none", "one", "two"))
    assert not np.array_equal(none, one) and not np.array_equal(one, two)
