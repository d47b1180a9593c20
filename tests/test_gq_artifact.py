"""Properties of the shippable artifact: harden, dequantize, bit-packing, the packed file, sizes."""

import json
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gq_jax
from gq_jax import baselines

# The quantizers that harden into QuantizedArray leaves, built from a GQConfig.
METHODS = {"gq": lambda config: gq_jax.gq(config, alpha=1.0), "uniform_ste": gq_jax.uniform_ste,
           "ptq_round": gq_jax.ptq_round, "ptq_kmeans": gq_jax.ptq_kmeans}


def _params(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "encoder": {
            "lstm_0": {"kernel": jnp.asarray(rng.normal(size=(33, 7)), jnp.float32)},
            "lstm_1": {"kernel": jnp.asarray(rng.normal(size=(5, 3, 9)), jnp.float32)},
            "norm": {"scale": jnp.ones(9), "steps": jnp.arange(3)},
        },
        "embed": {"embedding": jnp.asarray(rng.normal(size=(10, 8)), jnp.bfloat16)},
        "layers": [jnp.asarray(rng.normal(size=(4, 4)), jnp.float32), None],
    }


CONFIG = gq_jax.GQConfig(
    [
        gq_jax.Rule("encoder/lstm_0/kernel", 1),
        gq_jax.Rule(".*kernel", 3, "channel"),
        gq_jax.Rule("embed/embedding", 5),
        gq_jax.Rule("layers/0", 8),
    ]
)


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("count", [1, 7, 8, 9, 1001])
def test_bit_packing_round_trip_is_exact(bits, count):
    rng = np.random.default_rng(bits * 1000 + count)
    indices = rng.integers(0, 2**bits, size=count).astype(np.uint8)
    packed = gq_jax.pack_bits(indices, bits)
    assert packed.nbytes == -(-count * bits // 8)
    np.testing.assert_array_equal(gq_jax.unpack_bits(packed, bits, count), indices)


def test_pack_bits_rejects_an_index_that_does_not_fit():
    with pytest.raises(ValueError, match="does not fit in 2 bits"):
        gq_jax.pack_bits(np.array([0, 4]), 2)


def test_dequantize_of_harden_equals_the_hard_quantize_params_output_exactly():
    params = _params()
    state = gq_jax.init(params, CONFIG)
    hard = gq_jax.quantize_params(params, state, CONFIG, alpha=1.0, hard=True)
    hardened = gq_jax.harden(params, state, CONFIG)
    restored = gq_jax.dequantize(hardened)
    for a, b in zip(_leaves(hard), _leaves(restored)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def test_packed_file_round_trip_is_exact_and_stores_bits_per_weight(tmp_path):
    params = _params()
    state = gq_jax.init(params, CONFIG)
    hardened = gq_jax.harden(params, state, CONFIG)
    path = tmp_path / "model.gqpk"
    file_bytes = gq_jax.save_packed(path, hardened)
    assert file_bytes == path.stat().st_size and path.stat().st_mode & 0o777 == 0o644  # readable by all
    loaded = gq_jax.load_packed(path)
    for a, b in zip(_leaves(gq_jax.dequantize(hardened)), _leaves(gq_jax.dequantize(loaded))):
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
        assert a.dtype == b.dtype
    assert loaded["layers"][1] is None and isinstance(loaded["layers"], list)
    report = gq_jax.size_report(loaded)
    sizes = {leaf.path: leaf for leaf in report.leaves}
    assert sizes["encoder/lstm_0/kernel"].size_bytes == -(-33 * 7 // 8) + 4 * (2 + 1)
    assert sizes["encoder/lstm_1/kernel"].size_bytes == -(-135 * 3 // 8) + 4 * (8 + 9)
    assert sizes["embed/embedding"].size_bytes == 80 * 5 // 8 + 4 * (32 + 1)
    assert report.total_bytes < file_bytes < report.total_bytes + 4096
    assert report.quantized_weights == 33 * 7 + 135 + 80 + 16
    assert report.average_bits == pytest.approx((231 * 1 + 135 * 3 + 80 * 5 + 16 * 8) / 462)


def test_multi_axis_scales_round_trip_the_packed_file_and_count_in_the_size_report(tmp_path):
    """A DenseGeneral [D, heads, head_dim] kernel ships heads · head_dim scales, for GQ and baselines."""
    rng = np.random.default_rng(3)
    params = {"attention": {"query": {"kernel": jnp.asarray(rng.normal(size=(16, 4, 8)), jnp.float32)},
                            "output": {"kernel": jnp.asarray(rng.normal(size=(4, 8, 16)), jnp.float32)}}}
    config = gq_jax.GQConfig([gq_jax.Rule(".*kernel", 4, "channel")])
    for name in ("gq", "uniform_ste", "ptq_kmeans"):
        method = METHODS[name](config)
        hardened = method.harden(params, method.init(params))
        query = hardened["attention"]["query"]["kernel"]
        assert np.shape(query.scale) == (4, 8) and np.shape(hardened["attention"]["output"]["kernel"].scale) == (16,)
        path = tmp_path / f"{name}.gqpk"
        gq_jax.save_packed(path, hardened)
        loaded = gq_jax.load_packed(path)
        for a, b in zip(_leaves(gq_jax.dequantize(hardened)), _leaves(gq_jax.dequantize(loaded))):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        sizes = {leaf.path: leaf.size_bytes for leaf in gq_jax.size_report(loaded).leaves}
        codebook = int(np.size(query.codebook))
        assert sizes["attention/query/kernel"] == 512 * 4 // 8 + 4 * (codebook + 32)
        assert sizes["attention/output/kernel"] == 512 * 4 // 8 + 4 * (codebook + 16)
        assert gq_jax.size_report(loaded).uint8_bytes == 2 * 512 + 4 * (32 + 16)


def test_size_report_compares_float32_and_uniform_8bit_for_the_same_tree():
    params = {"w": jnp.ones((100, 10)), "b": jnp.ones(10)}
    config = gq_jax.GQConfig([gq_jax.Rule("w", 4, "channel")])
    report = gq_jax.size_report(gq_jax.harden(params, gq_jax.init(params, config), config))
    assert report.float32_bytes == 4 * 1010
    assert report.uint8_bytes == 1000 + 4 * 10 + 40
    assert report.total_bytes == 500 + 4 * 16 + 4 * 10 + 40
    assert report.saving_vs_uint8 == pytest.approx(1 - report.total_bytes / report.uint8_bytes)
    assert "uniform 8-bit" in str(report)


def test_all_zero_tensor_quantizes_to_zero_without_nan():
    params = {"kernel": jnp.zeros((6, 4))}
    for init in ("uniform", "kmeans"):
        config = gq_jax.GQConfig([gq_jax.Rule("kernel", 2, "channel")], init=init)
        state = gq_jax.init(params, config)
        q = gq_jax.quantize_params(params, state, config, 5.0)
        np.testing.assert_array_equal(np.asarray(q["kernel"]), 0.0)
        np.testing.assert_array_equal(np.asarray(gq_jax.dequantize(gq_jax.harden(params, state, config))["kernel"]), 0.0)
        grads = jax.grad(lambda p, s: jnp.sum(gq_jax.quantize_params(p, s, config, 5.0)["kernel"]), (0, 1))(params, state)
        assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_leaf_is_rejected_naming_it(value):
    params = _params()
    bad = np.asarray(params["encoder"]["lstm_0"]["kernel"]).copy()
    bad[3, 2] = value
    params["encoder"]["lstm_0"]["kernel"] = jnp.asarray(bad)
    with pytest.raises(ValueError, match="encoder/lstm_0/kernel.*NaN/Inf"):
        gq_jax.init(params, CONFIG)
    good_state = gq_jax.init(_params(), CONFIG)
    with pytest.raises(ValueError, match="encoder/lstm_0/kernel"):
        gq_jax.quantize_params(params, good_state, CONFIG, 1.0)
    with pytest.raises(ValueError, match="encoder/lstm_0/kernel"):
        gq_jax.harden(params, good_state, CONFIG)


def test_integer_leaf_matched_by_a_rule_is_rejected_naming_it():
    config = gq_jax.GQConfig([gq_jax.Rule("encoder/norm/.*", 4)])
    with pytest.raises(ValueError, match="encoder/norm/steps.*int32.*floating-point"):
        gq_jax.init(_params(), config)


def test_unused_rules_are_listed_and_rejected_under_strict():
    rules = [gq_jax.Rule(".*kernel", 4), gq_jax.Rule("encoder/lstm_0/kernel", 1), gq_jax.Rule("decoder/.*", 2)]
    params = _params()
    unused = gq_jax.unused_rules(params, gq_jax.GQConfig(rules))
    assert [rule.pattern for rule in unused] == ["encoder/lstm_0/kernel", "decoder/.*"]
    with pytest.raises(ValueError, match="decoder/"):
        gq_jax.init(params, gq_jax.GQConfig(rules, strict=True))
    assert "unused rule: 'decoder/.*'" in str(gq_jax.summary(params, gq_jax.GQConfig(rules)))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: gq_jax.Rule(".*", 0), r"Rule\('\.\*'\).*1\.\.8"),
        (lambda: gq_jax.Rule(".*", 9), r"Rule\('\.\*'\).*1\.\.8"),
        (lambda: gq_jax.Rule("enc(", 4), r"Rule\('enc\('\): invalid regex"),
        (lambda: gq_jax.Rule(".*", 4, "row"), "granularity"),
        (lambda: gq_jax.GQConfig([gq_jax.Rule(".*", 4)], mode="hard"), "GQConfig.mode"),
        (lambda: gq_jax.GQConfig([gq_jax.Rule(".*", 4)], distance="l3"), "GQConfig.distance"),
        (lambda: gq_jax.GQConfig([gq_jax.Rule(".*", 4)], mu=-1.0), "GQConfig.mu"),
        (lambda: gq_jax.GQConfig([gq_jax.Rule(".*", 4)], window=0), "GQConfig.window"),
        (lambda: gq_jax.GQConfig([gq_jax.Rule(".*", 4)], init="random"), "GQConfig.init"),
        (lambda: gq_jax.GQConfig([(".*", 4)]), r"GQConfig.rules\[0\]"),
    ],
)
def test_bad_config_raises_naming_the_rule_or_field(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_state_for_other_bits_is_rejected_naming_the_leaf():
    params = _params()
    state = gq_jax.init(params, CONFIG)
    more_bits = gq_jax.GQConfig([gq_jax.Rule("encoder/lstm_0/kernel", 1), gq_jax.Rule(".*kernel", 2)])
    with pytest.raises(ValueError, match="encoder/lstm_1/kernel.*at most 4"):
        gq_jax.quantize_params(params, state, more_bits, 1.0)


def _write_valid(tmp_path):
    params = _params()
    path = tmp_path / "model.gqpk"
    gq_jax.save_packed(path, gq_jax.harden(params, gq_jax.init(params, CONFIG), CONFIG))
    return path


def test_truncated_packed_file_is_rejected(tmp_path):
    path = _write_valid(tmp_path)
    blob = path.read_bytes()
    for cut in (10, 40, len(blob) - 1):
        path.write_bytes(blob[:cut])
        with pytest.raises(ValueError, match="truncated"):
            gq_jax.load_packed(path)


def test_corrupted_packed_file_is_rejected_naming_the_leaf(tmp_path):
    path = _write_valid(tmp_path)
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="corrupted.*'layers/0'"):
        gq_jax.load_packed(path)


def test_packed_file_of_another_format_version_is_rejected(tmp_path):
    path = _write_valid(tmp_path)
    blob = bytearray(path.read_bytes())
    struct.pack_into("<I", blob, 8, gq_jax.FORMAT_VERSION + 1)
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=f"version {gq_jax.FORMAT_VERSION + 1}; this gq_jax reads "
                                         f"version {gq_jax.FORMAT_VERSION}"):
        gq_jax.load_packed(path)
    path.write_bytes(b"PK\x03\x04" + bytes(blob[4:]))
    with pytest.raises(ValueError, match="not a gq_jax packed file"):
        gq_jax.load_packed(path)


def test_a_failed_save_leaves_no_half_written_file(tmp_path):
    path = _write_valid(tmp_path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="cannot store"):
        gq_jax.save_packed(path, {"ok": jnp.ones(3), "bad": object()})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gqpk"]


def test_packed_header_is_plain_json(tmp_path):
    path = _write_valid(tmp_path)
    blob = path.read_bytes()
    _, _, header_bytes = struct.unpack_from("<8sIQ", blob)
    header = json.loads(blob[24 : 24 + header_bytes])  # after the preamble and the header's CRC-32
    assert {e["path"] for e in header["entries"] if e["kind"] == "quantized"} == {
        "encoder/lstm_0/kernel",
        "encoder/lstm_1/kernel",
        "embed/embedding",
        "layers/0",
    }


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_uniform_baseline_levels_are_symmetric_and_ste_passes_gradients(bits):
    params = {"w": jnp.asarray(np.random.default_rng(0).normal(size=(64, 8)), jnp.float32)}
    config = gq_jax.GQConfig([gq_jax.Rule("w", bits, "channel")])
    method = gq_jax.uniform_ste(config)
    state = method.init(params)
    q = method.apply(params, state, 0)
    levels = np.asarray(baselines.uniform_levels(bits))
    np.testing.assert_array_equal(levels, -levels[::-1])
    assert len(levels) == (2 if bits == 1 else 2**bits - 1)
    s = np.abs(np.asarray(params["w"])).max(axis=0)
    u = np.asarray(q["w"]) / s
    assert np.abs(u[..., None] - levels).min(axis=-1).max() < 1e-5
    grad = jax.grad(lambda p: jnp.sum(method.apply(p, state, 0)["w"] * 3.0))(params)
    np.testing.assert_allclose(np.asarray(grad["w"]), 3.0)
    hardened = method.harden(params, state)
    np.testing.assert_allclose(np.asarray(gq_jax.dequantize(hardened)["w"]), np.asarray(q["w"]), rtol=1e-6)


def test_ptq_kmeans_beats_round_to_nearest_in_squared_error_at_2_bits():
    params = {"w": jnp.asarray(np.random.default_rng(1).normal(size=(512, 16)), jnp.float32)}
    config = gq_jax.GQConfig([gq_jax.Rule("w", 2)])
    errors = {}
    for name in ("ptq_round", "ptq_kmeans"):
        method = METHODS[name](config)
        hardened = method.harden(params, method.init(params))
        assert isinstance(hardened["w"], gq_jax.QuantizedArray)
        errors[name] = float(jnp.mean((gq_jax.dequantize(hardened)["w"] - params["w"]) ** 2))
    assert errors["ptq_kmeans"] < errors["ptq_round"]


def _leaves(tree):
    return jax.tree.leaves(tree)
