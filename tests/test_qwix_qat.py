"""Qwix QAT as a training method (training/qwix_qat.py, registered as quant.method = "qwix")."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import gq_jax
from tests.tiny_run import tiny_config
from training import config as config_lib
from training import qwix_qat, runs
from training import state as state_lib

VOCAB = 12
NUM_MEL_BINS = 16
RNNT_QUANTIZED = ("encoder/lstm_0/input_kernel", "encoder/lstm_0/recurrent_kernel",
                  "joint/encoder_proj/kernel", "joint/predictor_proj/kernel",
                  "predictor/lstm_0/input_kernel", "predictor/lstm_0/recurrent_kernel")
RNNT_FLOAT = ("encoder/lstm_0/bias", "joint/encoder_proj/bias", "joint/output/bias",
              "joint/output/kernel", "predictor/embedding/embedding", "predictor/lstm_0/bias")


def small_config(name: str, bits: int = 4, granularity: str = "channel") -> ml_collections.ConfigDict:
    """configs/test_tiny.py (RNN-T), the same with a second LSTM layer ("rnnt2": its input and
    recurrent kernels have one shape, [16, 64]) or a Conformer of the same size, trained with Qwix
    at `bits`."""
    from configs import test_tiny

    config = test_tiny.get_config()
    if name == "rnnt2":
        config.model.encoder_layers = 2
    if name == "conformer":
        config.model = ml_collections.ConfigDict(dict(
            name="conformer", encoder_layers=1, model_dim=16, num_heads=2, ff_multiplier=2,
            conv_kernel_size=3, subsampling_channels=4, predictor_embed_dim=8,
            predictor_hidden_size=16, joint_dim=16))
    config.quant.method = "qwix"
    config.quant.rules = ((r".*kernel", bits, granularity),)
    return config


def method(config: ml_collections.ConfigDict, model) -> config_lib.Method:
    return config_lib.method_for(config.quant, model, NUM_MEL_BINS)


def shipped(config: ml_collections.ConfigDict):
    """(model, random params, hardened tree) of `config` (N(0, 0.3²) weights: no init to compile)."""
    model = config_lib.model_from_config(config.model, VOCAB)
    shapes = jax.eval_shape(lambda: state_lib.random_params(model, config))
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map(
        lambda s: jnp.asarray(0.3 * rng.standard_normal(s.shape), s.dtype), shapes)
    quantizer = method(config, model).quantizer
    return model, params, gq_jax.export(quantizer, params, quantizer.init(params)).hardened


@pytest.fixture(scope="module")
def rnnt_int4():
    return shipped(small_config("rnnt"))


def example_batch():
    key_feats, key_labels = jax.random.split(jax.random.key(3))
    feats = jax.random.normal(key_feats, (2, 48, NUM_MEL_BINS))
    labels = jax.random.randint(key_labels, (2, 5), 1, VOCAB)
    return feats, jnp.array([48, 31]), labels, jnp.array([5, 3])


@pytest.mark.parametrize("name, bits, granularity", [("rnnt", 4, "channel"), ("rnnt2", 4, "channel"),
                                                     ("conformer", 8, "tensor")])
def test_the_wrapped_forward_equals_the_plain_forward_with_the_shipped_weights(name, bits, granularity):
    config = small_config(name, bits, granularity)
    model, params, hardened = shipped(config)
    wrapped = method(config, model).training_model
    batch = example_batch()
    qwix_nll = jax.jit(wrapped.apply)({"params": params}, *batch)
    shipped_nll = jax.jit(lambda h: model.apply({"params": gq_jax.dequantize(h)}, *batch))(hardened)
    np.testing.assert_allclose(shipped_nll, qwix_nll, rtol=1e-6)
    assert len(gq_jax.size_report(hardened).quantized_leaves) >= 6


def test_int4_shipped_weights_take_at_most_16_values_per_output_channel(rnnt_int4):
    _, params, hardened = rnnt_int4
    report = gq_jax.size_report(hardened)
    dequantized = dict(gq_jax.config.leaves_with_paths(gq_jax.dequantize(hardened)))
    original = dict(gq_jax.config.leaves_with_paths(params))
    for path in report.quantized_leaves:
        w = np.asarray(dequantized[path])
        assert max(len(np.unique(w[:, c])) for c in range(w.shape[-1])) <= 16, path
        assert not np.array_equal(w, original[path]), path
    assert report.average_bits == 4.0
    float_bytes = sum(4 * np.size(original[path]) for path in report.float_leaves)
    channels = sum(np.shape(original[path])[-1] for path in report.quantized_leaves)
    codebooks = 16 * len(report.quantized_leaves)  # Qwix's levels -8..7, stored like any codebook
    assert report.total_bytes == (float_bytes + 4 * (channels + codebooks)
                                  + sum(-(-np.size(original[p]) * 4 // 8) for p in report.quantized_leaves))


def test_coverage_lstm_and_projection_kernels_quantized_joint_output_and_embedding_float(rnnt_int4):
    report = gq_jax.size_report(rnnt_int4[2])
    assert report.quantized_leaves == RNNT_QUANTIZED
    assert report.float_leaves == RNNT_FLOAT


def test_coverage_every_lstm_kernel_even_where_input_and_recurrent_kernels_share_a_shape():
    """encoder/lstm_1's kernels are both [16, 64]: inside the fused recurrence's custom VJP Qwix can
    tell them apart only by shape, so without `with_autodiff_recurrence` it quantized neither
    recurrent kernel of such a layer."""
    hardened = shipped(small_config("rnnt2"))[2]
    quantized = gq_jax.size_report(hardened).quantized_leaves
    for layer in ("encoder/lstm_0", "encoder/lstm_1", "predictor/lstm_0"):
        assert {f"{layer}/input_kernel", f"{layer}/recurrent_kernel"} <= set(quantized), layer


def test_conformer_coverage_every_kernel_but_the_joint_output_and_the_depthwise_conv():
    config = small_config("conformer")
    model = config_lib.model_from_config(config.model, VOCAB)
    params = jax.eval_shape(lambda: state_lib.random_params(model, config))
    kernels = {path for path, _ in gq_jax.config.leaves_with_paths(params) if path.endswith("kernel")}
    intercepted = {w.path for w in qwix_qat.intercepted_weights(model, NUM_MEL_BINS)}
    assert intercepted == kernels - {"joint/output/kernel", "encoder/block_0/convolution/depthwise/kernel"}
    assert "encoder/subsampling/conv_0/kernel" in intercepted


def test_conformer_gradient_reaches_every_quantized_kernel():
    """Qwix's conv backward fails on grouped convs (the depthwise kernel), so they must stay float."""
    config = small_config("conformer")
    model, params, hardened = shipped(config)
    wrapped = method(config, model).training_model
    grads = jax.jit(jax.grad(lambda p: wrapped.apply({"params": p}, *example_batch()).sum()))(params)
    by_path = dict(gq_jax.config.leaves_with_paths(grads))
    for path in gq_jax.size_report(hardened).quantized_leaves:
        assert np.all(np.isfinite(by_path[path])) and np.any(by_path[path] != 0), path


@pytest.mark.slow
def test_training_a_few_steps_from_a_float_run_changes_the_parameters(tiny_corpus, float_run, tmp_path):
    import train

    train.train_and_evaluate(tiny_config(tiny_corpus, **{
        "quant.method": "qwix", "quant.init_from": str(float_run), "num_train_steps": 2}), str(tmp_path))
    start, run = runs.load(float_run, step=6), runs.load(tmp_path)
    assert run.step == 2
    before = dict(gq_jax.config.leaves_with_paths(start.params))
    after = dict(gq_jax.config.leaves_with_paths(run.params))
    for path in RNNT_QUANTIZED + ("joint/output/kernel",):
        assert not np.array_equal(before[path], after[path]), path
    assert run.export().sizes.quantized_leaves == RNNT_QUANTIZED


@pytest.mark.parametrize("bits", [1, 9])
def test_bits_qwix_cannot_represent_are_an_error_naming_the_rule(bits):
    config = small_config("rnnt", bits=bits)
    with pytest.raises(ValueError, match=rf"\('\.\*kernel', {bits}, 'channel'\).*int2\.\.int8"):
        config_lib.check_fields(config)


def test_weights_of_one_module_under_different_rules_are_an_error_naming_the_module():
    config = small_config("rnnt")
    config.quant.rules = ((r".*input_kernel", 4, "channel"), (r".*kernel", 8, "channel"))
    model = config_lib.model_from_config(config.model, VOCAB)
    with pytest.raises(ValueError, match="encoder/lstm_0"):
        method(config, model)


@pytest.mark.parametrize("name", ["rnnt", "conformer"])
def test_gq_default_channel_scales_are_the_axes_qwix_scales(name):
    """GQ-against-Qwix rows are like for like: every weight Qwix quantizes gets its scales over the
    same axes under a "channel" rule without channel_axes (multi-axis for the attention kernels)."""
    config = small_config(name)
    model = config_lib.model_from_config(config.model, VOCAB)
    weights = qwix_qat.intercepted_weights(model, NUM_MEL_BINS)
    rule = gq_jax.Rule(".*kernel", 4, "channel")
    for weight in weights:
        assert rule.axes_for(weight.path, weight.shape) == weight.channel_axes, weight.path
    if name == "conformer":
        by_path = {weight.path: weight for weight in weights}
        assert by_path["encoder/block_0/attention/query/kernel"].channel_axes == (1, 2)


def test_explicit_channel_axes_qwix_cannot_honour_are_an_error_naming_the_weight():
    config = small_config("rnnt")
    config.quant.rules = ((r".*kernel", 4, "channel", (0,)),)
    model = config_lib.model_from_config(config.model, VOCAB)
    with pytest.raises(ValueError, match=r"encoder/lstm_0/input_kernel.*channel_axes=\(0,\).*\(1,\)"):
        method(config, model)
