"""Every corruption of a packed file raises ValueError naming the file, or loads the same arrays."""

import collections
import json
import struct
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gq_jax

MUTATIONS = 1000


def _hardened() -> dict:
    """A small hardened tree with every node and entry kind: multi-axis and per-tensor scales,
    float32, bfloat16 and int arrays, dict, list, tuple and None."""
    rng = np.random.default_rng(0)
    params = {"attention": {"query": {"kernel": jnp.asarray(rng.normal(size=(8, 2, 4)), jnp.float32)}},
              "dense": [jnp.asarray(rng.normal(size=(5, 3)), jnp.float32), None],
              "norm": (jnp.ones(3, jnp.bfloat16), jnp.arange(4))}
    config = gq_jax.GQConfig([gq_jax.Rule(".*kernel", 3, "channel"), gq_jax.Rule("dense/0", 2)])
    return gq_jax.harden(params, gq_jax.init(params, config), config)


def _identical(a, b) -> bool:
    """Same tree (node types, keys, QuantizedArray bits/shape/dtype) and bit-identical arrays."""
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    return tree_a == tree_b and all(
        np.asarray(x).dtype == np.asarray(y).dtype and np.asarray(x).shape == np.asarray(y).shape
        and np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(leaves_a, leaves_b))


def _mutate(blob: bytes, rng: np.random.Generator, kind: str) -> bytes:
    out = bytearray(blob)
    if kind == "bit flips":
        for bit in rng.integers(len(out) * 8, size=rng.integers(1, 4)):
            out[bit // 8] ^= 1 << (bit % 8)
    elif kind == "truncation":
        out = out[: rng.integers(len(out))]
    elif kind == "overwrite":
        start, count = int(rng.integers(len(out))), int(rng.integers(1, 9))
        out[start : start + count] = rng.bytes(count)[: len(out) - start]
    else:  # insertion
        start = int(rng.integers(len(out) + 1))
        out[start:start] = rng.bytes(int(rng.integers(1, 9)))
    return bytes(out)


def test_a_thousand_random_corruptions_each_raise_a_value_error_naming_the_file_or_change_nothing(tmp_path):
    path = tmp_path / "model.gqpk"
    hardened = _hardened()
    gq_jax.save_packed(path, hardened)
    blob = path.read_bytes()
    assert _identical(gq_jax.load_packed(path), hardened)
    rng = np.random.default_rng(2024)
    outcomes = collections.Counter()
    kinds = ("bit flips", "truncation", "overwrite", "insertion")
    for i in range(MUTATIONS):
        mutated = _mutate(blob, rng, kinds[i % len(kinds)])
        path.write_bytes(mutated)
        try:
            loaded = gq_jax.load_packed(path)
        except ValueError as err:
            assert str(path) in str(err), err
            outcomes["ValueError"] += 1
        else:
            assert _identical(loaded, hardened), f"mutation {i} ({kinds[i % len(kinds)]}) loaded other values"
            outcomes["unchanged"] += 1
    assert sum(outcomes.values()) == MUTATIONS and outcomes["ValueError"] >= 0.99 * MUTATIONS


def _rewrite(path, edit) -> None:
    """Re-save `path` after `edit(header, sections)` (sections: {(entry, name): bytes}), with the
    offsets, byte counts and every CRC recomputed: a file whose checksums are all valid."""
    blob = path.read_bytes()
    _, version, header_bytes = struct.unpack_from("<8sIQ", blob)
    header = json.loads(blob[24 : 24 + header_bytes])
    payload = blob[24 + header_bytes :]
    sections = {(i, name): payload[spec["offset"] : spec["offset"] + spec["nbytes"]]
                for i, entry in enumerate(header["entries"]) for name, spec in entry["sections"].items()}
    edit(header, sections)
    offset, chunks = 0, []
    for i, entry in enumerate(header["entries"]):
        for name, spec in entry["sections"].items():
            data = sections[(i, name)]
            spec.update(offset=offset, nbytes=len(data), crc32=zlib.crc32(data))
            chunks.append(data)
            offset += len(data)
    header["payload_bytes"] = offset
    encoded = json.dumps(header).encode()
    preamble = struct.pack("<8sIQ", b"GQJAXPK\n", version, len(encoded))
    crc = struct.pack("<I", zlib.crc32(encoded, zlib.crc32(preamble)))
    path.write_bytes(preamble + crc + encoded + b"".join(chunks))


QUERY = 0  # entry index of attention/query/kernel, 3 bits, scales [2, 4]


def _section(header, name):
    return header["entries"][QUERY]["sections"][name]


def _short_codebook(header, sections):
    _section(header, "codebook")["shape"] = [4]
    sections[(QUERY, "codebook")] = sections[(QUERY, "codebook")][:16]


def _entry_twice(header, sections):
    header["entries"].append(json.loads(json.dumps(header["entries"][QUERY])))
    for name in header["entries"][QUERY]["sections"]:
        sections[(len(header["entries"]) - 1, name)] = sections[(QUERY, name)]


def _indices_not_uint8(header, sections):
    _section(header, "indices").update(dtype="int8")


LEAF = "attention/query/kernel"


@pytest.mark.parametrize("edit, message, leaf", [
    (_short_codebook, "index .* beyond its 4-entry codebook", LEAF),
    (lambda h, s: _section(h, "scale").update(shape=[4, 2]), r"scales of shape \(4, 2\) do not broadcast", LEAF),
    (lambda h, s: _section(h, "scale").update(dtype="object"), "dtype 'object' is not one of", LEAF),
    (_indices_not_uint8, "indices must be uint8", LEAF),
    (lambda h, s: h["entries"][QUERY].update(kind="array"), "kind 'array' with sections", LEAF),
    (lambda h, s: h["entries"][QUERY].update(bits=9), "9 bits", LEAF),
    (lambda h, s: h["entries"][QUERY].update(dtype="int32"), "bits of a int32 weight", LEAF),
    (lambda h, s: h["entries"][QUERY].update(shape=[8, 2, 5]), "index bytes for 80 weights", LEAF),
    (lambda h, s: h["entries"][QUERY].pop("bits"), "missing field 'bits'", LEAF),
    (lambda h, s: h["entries"][QUERY].update(path="attention/key/kernel"), f"sits at '{LEAF}'", LEAF),
    (lambda h, s: h["tree"]["children"][0].update(type="set"), "node type 'set'", None),
    (lambda h, s: h["tree"].update(keys=["attention", "attention", "norm"]), "dict node under '<root>'", None),
    (lambda h, s: h["tree"]["children"][0]["children"][0]["children"][0].update(entry=1), "out of order", None),
    (_entry_twice, "entries outside the tree", None),
    (lambda h, s: h.update(tree={"type": "none"}), "entries outside the tree", None),
])
def test_a_file_with_valid_checksums_that_breaks_the_layout_is_a_value_error_naming_file_and_leaf(
        tmp_path, edit, message, leaf):
    path = tmp_path / "model.gqpk"
    gq_jax.save_packed(path, _hardened())
    _rewrite(path, edit)
    with pytest.raises(ValueError, match=message) as err:
        gq_jax.load_packed(path)
    assert str(path) in str(err.value) and (leaf is None or leaf in str(err.value))
