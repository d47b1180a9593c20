"""The packed runtime: decoding from resident packed weights equals decoding the hard-quantized model."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gq_jax
from gq_jax import cpu_lookup, runtime
from gq_jax.artifact import QuantizedArray, dequantize_leaf, is_quantized
from models import decoding
from models.rnnt import make_rnnt

RULES = [gq_jax.Rule(".*kernel", 4, "channel")]
# (method, bits): GQ at the bit widths, uniform 8-bit (resident as int8) and uniform 4-bit
# (a 15-entry codebook at 4 bits: resident padded to 16).
MODELS = [("gq", 5), ("gq", 4), ("gq", 2), ("ptq_round", 8), ("ptq_round", 4)]


def _quantizer(method: str, bits: int) -> gq_jax.Quantizer:
    config = gq_jax.GQConfig([gq_jax.Rule(".*kernel", bits, "channel")])
    return gq_jax.gq(config, alpha=1.0) if method == "gq" else gq_jax.ptq_round(config)


@pytest.fixture(scope="module")
def rnnt():
    """An untrained 2-layer RNN-T (time reduction after layer 0) with large weights, so its outputs
    are diverse, and a padded batch."""
    model = make_rnnt(6, encoder_layers=2, encoder_hidden_size=32, time_reduction_layer=0,
                      predictor_embed_dim=8, predictor_hidden_size=32, joint_dim=32)
    features = jax.random.normal(jax.random.key(0), (3, 24, 5))
    lengths = jnp.array([24, 17, 9])
    params = jax.jit(lambda key: model.init(key, features, lengths, jnp.ones((3, 1), jnp.int32),
                                            jnp.ones((3,), jnp.int32)))(jax.random.key(1))["params"]
    return model, jax.tree_util.tree_map(lambda p: 3.0 * p, params), features, lengths


@pytest.fixture(scope="module", params=MODELS, ids=[f"{m}{b}" for m, b in MODELS])
def packed(request, rnnt, tmp_path_factory):
    """(export of the model at these bits, path of its packed file)."""
    _, params, _, _ = rnnt
    quantizer = _quantizer(*request.param)
    exported = gq_jax.export(quantizer, params, quantizer.init(params))
    path = tmp_path_factory.mktemp("packed") / "model.gqpk"
    gq_jax.save_packed(path, exported.hardened)
    return exported, path


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("count", [1, 7, 8, 9, 1001])
def test_unpack_planes_inside_jit_inverts_pack_planes(bits, count):
    indices = np.random.default_rng(bits * 1000 + count).integers(0, 2**bits, size=count)
    planes = runtime.pack_planes(indices, bits)
    assert [p.nbytes for p in planes] == [-(-count * w // 8) for w in runtime.plane_widths(bits)]
    assert sum(runtime.plane_widths(bits)) == bits
    unpacked = jax.jit(runtime.unpack_planes, static_argnums=(1, 2))(tuple(map(jnp.asarray, planes)), bits, count)
    assert unpacked.dtype == jnp.uint8
    np.testing.assert_array_equal(unpacked, indices)


def test_bit_planes_are_strided_so_each_shift_yields_consecutive_indices():
    # 5 indices at 4 bits: B = 3 bytes, byte i holds indices i and i + 3; 10 indices at 1 bit: 2
    # bytes, byte i holds indices i, i + 2, i + 4, ...
    assert runtime.pack_planes(np.array([1, 2, 3, 4, 5]), 4)[0].tolist() == [1 | 4 << 4, 2 | 5 << 4, 3]
    assert runtime.pack_planes(np.array([1, 0] * 4 + [0, 1]), 1)[0].tolist() == [0b01111, 0b10000]


def test_expanded_resident_leaves_equal_dequantize_bit_for_bit(packed):
    exported, path = packed
    tree = runtime.load_resident(path)
    kinds = {type(x) for x in jax.tree_util.tree_leaves(tree, is_leaf=runtime.is_resident)}
    assert (runtime.Int8Array in kinds) == (exported.sizes.average_bits == 8)
    expanded = jax.jit(runtime.expand)(tree)
    for a, b in zip(jax.tree_util.tree_leaves(expanded), jax.tree_util.tree_leaves(exported.params)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def _expansions(jaxpr, in_loop: bool = False):
    """(inside a loop, outside) counts of weight expansions (`runtime.expand_leaf` calls) in `jaxpr`
    and its sub-jaxprs."""
    counts = [0, 0]
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if eqn.params.get("name") == "expand_leaf":
            counts[0 if in_loop else 1] += 1
            continue
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else [param]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    a, b = _expansions(inner, in_loop or name in ("scan", "while"))
                    counts[0] += a
                    counts[1] += b
    return tuple(counts)


def test_greedy_search_expands_each_weight_once_before_its_loops(rnnt, packed):
    model, _, features, lengths = rnnt
    resident = runtime.load_resident(packed[1])
    jaxpr = jax.make_jaxpr(lambda v, f, n: decoding.greedy_search(runtime.resident_model(model), v, f, n))(
        {"params": resident}, features, lengths)
    leaves = sum(map(runtime.is_resident, jax.tree_util.tree_leaves(resident, is_leaf=runtime.is_resident)))
    assert _expansions(jaxpr.jaxpr) == (0, leaves)


def test_greedy_and_beam_decoding_from_the_packed_file_equal_the_hard_quantized_model(rnnt, packed):
    model, _, features, lengths = rnnt
    exported, path = packed
    hard = {"params": exported.params}
    resident = {"params": runtime.load_resident(path)}
    served = runtime.resident_model(model)
    greedy = decoding.greedy_decode(model, hard, features, lengths)
    assert greedy.token_ids == decoding.greedy_decode(served, resident, features, lengths).token_ids
    assert len(set(map(tuple, greedy.token_ids))) == 3 and all(greedy.token_ids)  # non-trivial
    beam = decoding.beam_search(model, hard, features, lengths, beam_width=3)
    assert beam.token_ids == decoding.beam_search(served, resident, features, lengths, beam_width=3).token_ids


def test_resident_bytes_equal_the_size_report(packed):
    exported, path = packed
    tree = runtime.load_resident(path)
    int8_leaves = sum(isinstance(x, runtime.Int8Array)
                      for x in jax.tree_util.tree_leaves(tree, is_leaf=runtime.is_resident))
    if int8_leaves:  # int8 values and scales (SizeReport.uint8_bytes) plus one float32 L per leaf
        assert runtime.resident_bytes(tree) == exported.sizes.uint8_bytes + 4 * int8_leaves
    else:  # the packed file's sections, its b-bit index bytes as bit planes (each rounded up to
        # bytes), each codebook padded to 2^b entries
        hardened = gq_jax.load_packed(path)
        quantized = [q for q in jax.tree_util.tree_leaves(hardened, is_leaf=is_quantized)
                     if is_quantized(q)]
        rounding = sum(sum(-(-q.indices.size * w // 8) for w in runtime.plane_widths(q.bits))
                       - -(-q.indices.size * q.bits // 8) for q in quantized)
        assert 0 <= rounding <= 2 * len(quantized)
        padding = sum(4 * (2**q.bits - q.codebook.size) for q in quantized)
        assert runtime.resident_bytes(tree) == gq_jax.size_report(hardened).total_bytes + rounding + padding


def test_the_compiled_decoder_takes_the_packed_buffers_and_expands_each_layer_after_the_one_before(rnnt, packed):
    """XLA's memory analysis of the jitted encoder: its arguments are the resident packed bytes
    (not float32 weights), and the expanded float weights are temporaries of one layer at a time
    (the second layer's are computed after the first layer's loop, not all up front)."""
    model, _, features, lengths = rnnt
    exported, path = packed
    tree = {"params": runtime.load_resident(path)}
    served = runtime.resident_model(model)
    resident = decoding._encode.lower(served, tree, features, lengths).compile().memory_analysis()
    hard = decoding._encode.lower(model, {"params": exported.params}, features, lengths).compile().memory_analysis()
    encoder = {k: v for k, v in tree["params"].items() if k in ("encoder", "joint")}
    used_bytes = runtime.resident_bytes(encoder) + features.nbytes + lengths.nbytes
    assert resident.argument_size_in_bytes <= used_bytes < hard.argument_size_in_bytes
    layer_bytes = [4 * (leaf.size) for leaf in jax.tree_util.tree_leaves(exported.params["encoder"]["lstm_1"])]
    all_bytes = 4 * sum(leaf.size for leaf in jax.tree_util.tree_leaves(exported.params["encoder"]))
    assert resident.temp_size_in_bytes - hard.temp_size_in_bytes < all_bytes
    assert resident.temp_size_in_bytes > hard.temp_size_in_bytes + sum(layer_bytes) // 4  # weights expanded


def test_a_damaged_packed_file_is_a_value_error_naming_the_file(packed, tmp_path):
    _, path = packed
    blob = bytearray(path.read_bytes())
    truncated, flipped = tmp_path / "truncated.gqpk", tmp_path / "flipped.gqpk"
    truncated.write_bytes(blob[:-3])
    blob[-5] ^= 0x10
    flipped.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="truncated.gqpk: truncated"):
        runtime.load_resident(truncated)
    with pytest.raises(ValueError, match="flipped.gqpk: section .* is corrupted"):
        runtime.load_resident(flipped)


def test_int8_dot_is_within_its_rounding_bound_of_the_float_product():
    """|int8_dot(x, W) − x @ W| <= the bound of two roundings: x by a / 254 per row and W's int8
    grid by scale / 254 per channel (each term of the sum: |x| · |δW| + |δx| · |W| + |δx| · |δW|)."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(5, 48)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(48, 16)), jnp.float32)
    exported = gq_jax.export(_quantizer("gq", 5), {"kernel": w}, _quantizer("gq", 5).init({"kernel": w}))
    leaf = runtime.resident(exported.hardened)["kernel"]
    w_hat = np.asarray(exported.params["kernel"])
    got = jax.jit(lambda x, leaf: runtime.int8_dot(x, runtime.to_int8(leaf), (((1,), (0,)), ((), ()))))(x, leaf)
    dx = np.abs(np.asarray(x)).max(axis=1, keepdims=True) / 254
    dw = np.asarray(leaf.scale) / 254
    bound = np.abs(np.asarray(x)).sum(1, keepdims=True) * dw + dx * (np.abs(w_hat).sum(0) + 48 * dw)
    err = np.abs(np.asarray(got) - np.asarray(x) @ w_hat)
    assert np.all(err <= bound * 1.01 + 1e-5) and err.max() > 0


def test_int8_matmul_decoding_runs_every_weight_matmul_in_int8_and_stays_close(rnnt, packed):
    model, _, features, lengths = rnnt
    exported, path = packed
    tree = {"params": runtime.load_resident(path)}
    served = runtime.resident_model(model, int8_matmuls=True)
    hlo = decoding._encode.lower(served, tree, features, lengths).as_text()
    dots = [line for line in hlo.splitlines() if "dot_general" in line]
    assert len(dots) == 5 and all("xi8>" in line and "xi32>" in line for line in dots)  # 2 x 2 LSTM + proj
    enc, _ = decoding._encode(served, tree, features, lengths)
    want, _ = decoding._encode(model, {"params": exported.params}, features, lengths)
    assert float(jnp.max(jnp.abs(enc - want))) < 0.05 * float(jnp.max(jnp.abs(want)))
    int8 = decoding.greedy_decode(served, tree, features, lengths)
    assert [len(ids) > 0 for ids in int8.token_ids] == [True] * 3


@pytest.mark.parametrize("bits", range(1, 8))
def test_the_select_tree_is_the_table_lookup_and_replaces_the_gather_up_to_its_widest_index(bits):
    table = jnp.asarray(np.random.default_rng(bits).normal(size=2**bits), jnp.float32)
    index = jnp.asarray(np.arange(3 * 2**bits) % 2**bits, jnp.uint8)
    np.testing.assert_array_equal(runtime.select_tree(table, index, bits), table[index])
    quantized = QuantizedArray(np.asarray(index)[None], table, np.float32(1.0), bits, (1, index.size), "float32")
    leaf = dataclasses.replace(runtime.resident_leaf(quantized), kernel=False)  # XLA's lookup
    primitives = lambda fn: {e.primitive.name for e in jax.make_jaxpr(fn)().eqns}
    assert ("gather" in primitives(leaf.expand)) == (bits > 4)
    np.testing.assert_array_equal(leaf.expand()[0], table[index])
    # On the int8 grid of `int8_matmuls` the tree serves up to 6 bits: 64 int8 lanes to a vector select.
    assert ("gather" in primitives(lambda: runtime.to_int8(leaf).values)) == (bits > 6)
    grid = np.clip(np.round(np.asarray(table) * 127.0), -127, 127).astype(np.int8)
    np.testing.assert_array_equal(runtime.to_int8(leaf).values[0], grid[np.asarray(index)])


needs_kernel = pytest.mark.skipif(not cpu_lookup.available(), reason=f"the AVX-512 lookup kernel is off here: "
                                  f"{cpu_lookup.unavailable_reason() or 'its build failed'}")
# (weight shape, scale shape): one scale, one per last-axis channel (16-aligned or not, so rows cross
# the kernel's 16-lane blocks), a 3-d depthwise-convolution layout, fewer weights than one block.
LAYOUTS = [((37, 53), (1, 53)), ((64, 1024), (1, 1024)), ((5, 1, 40), (1, 1, 40)), ((301,), ()), ((7,), (1,))]


@needs_kernel
@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("shape,scale_shape", LAYOUTS, ids=[f"{a}-{b}" for a, b in LAYOUTS])
def test_the_cpu_kernel_expands_every_width_and_layout_bit_for_bit_as_xla(bits, shape, scale_shape):
    rng = np.random.default_rng(bits)
    quantized = QuantizedArray(rng.integers(0, 2**bits, shape).astype(np.uint8),
                               np.sort(rng.normal(size=2**bits)).astype(np.float32),
                               rng.uniform(0.5, 2.0, scale_shape).astype(np.float32), bits, shape, "float32")
    leaf = runtime.resident_leaf(quantized)
    assert leaf.kernel == (bits <= cpu_lookup.MAX_BITS)  # above, 2^(b-5) permutes: XLA's gather is cheaper
    hlo = jax.jit(lambda x: x.expand()).lower(leaf).as_text()
    assert (cpu_lookup.TARGET in hlo) == leaf.kernel and ("gather" in hlo) == (bits > 4 and not leaf.kernel)
    expanded = jax.jit(lambda x: x.expand())(leaf)
    np.testing.assert_array_equal(expanded, jax.jit(lambda x: x.expand())(dataclasses.replace(leaf, kernel=False)))
    np.testing.assert_array_equal(expanded, dequantize_leaf(quantized))


def test_the_kernel_serves_only_the_widths_and_scale_layouts_it_reads():
    assert not cpu_lookup.serves(4, (37, 53), (37, 1))  # one scale per row: XLA's lookup
    assert not cpu_lookup.serves(4, (4, 6), (2, 6))
    assert not cpu_lookup.serves(6, (37, 53), (1, 53))
    assert cpu_lookup.serves(5, (37, 53), (1, 53)) == cpu_lookup.available()


def test_without_the_kernel_the_reason_is_named_and_a_failed_build_shows_the_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("GQ_JAX_CPU_LOOKUP", "0")
    assert cpu_lookup.unavailable_reason() == "GQ_JAX_CPU_LOOKUP=0"
    monkeypatch.setenv("GQ_JAX_CACHE", str(tmp_path))
    with pytest.raises(RuntimeError, match="false .*cpu_lookup.cc"):
        cpu_lookup.build("false")
    assert list(tmp_path.iterdir()) == []  # nothing half-written is left to be loaded later
