"""Bit-packing and the packed file format (`save_packed`, `load_packed`); no pickle anywhere.

File layout, format version 2 (all integers little-endian):

    offset 0   8 bytes   magic b"GQJAXPK\\n"
    offset 8   uint32    format version (2)
    offset 12  uint64    header length H in bytes
    offset 20  uint32    CRC-32 of bytes 0..19 followed by the header
    offset 24  H bytes   header: UTF-8 JSON (below)
    offset 24+H          payload: the sections of every entry, back to back

Header JSON:
    {"tree": NODE, "payload_bytes": int, "entries": [ENTRY, ...]}
    NODE  = {"type": "dict", "keys": [str, ...], "children": [NODE, ...]}
          | {"type": "list" | "tuple", "children": [NODE, ...]} | {"type": "none"}
          | {"type": "leaf", "entry": int}
    ENTRY = {"path": str, "kind": "quantized" | "array", "shape": [int, ...], "dtype": str,
             "bits": int (quantized only), "sections": {NAME: {"offset", "nbytes", "crc32",
             "dtype", "shape"}}}
A quantized entry has sections "indices" (N = prod(shape) indices at `bits` bits each, packed
little-endian bit order, ceil(N · bits / 8) bytes), "codebook" ([K] float32, K <= 2**bits) and
"scale" (float32, a shape that broadcasts to `shape`); an array entry has one section "data" (raw
little-endian values). Offsets are relative to the payload start; the sections tile the payload in
order and every section carries the CRC-32 of its bytes. Files are written to a temporary name and
renamed, so a crash never leaves a half-written file under the target name.

What a reader guarantees: every byte of a file is covered by a check (the preamble and header by the
header CRC, the payload by the section CRCs, the length by `payload_bytes`), and the header is
validated against the layout above before anything is decoded, so a damaged file raises
ValueError naming the file (and the leaf when known) instead of loading other values. What no
checksum can rule out, a corruption that leaves both CRCs intact, is a chance of 2**-32 per check.

Version 2 added the header CRC (and 4 bytes to the preamble); version 1 files are rejected by the
version check.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
import zlib
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from gq_jax.artifact import QuantizedArray, check_scale_shape

MAGIC = b"GQJAXPK\n"
FORMAT_VERSION = 2
_PREAMBLE = struct.Struct("<8sIQ")
_HEADER_CRC = struct.Struct("<I")
_HEADER_START = _PREAMBLE.size + _HEADER_CRC.size
# dtypes an "array" entry may hold (what `str(array.dtype)` gives); `object` never.
DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "bfloat16", "float32", "float64", "complex64", "complex128")
_SECTION_DTYPES = {"indices": "uint8", "codebook": "float32", "scale": "float32"}


def pack_bits(indices: np.ndarray, bits: int) -> np.ndarray:
    """Pack N integers < 2**bits into ceil(N · bits / 8) bytes (little-endian bit order).

    Args:
      indices: any shape, integer values in [0, 2**bits).
      bits: 1..8.
    Returns:
      [ceil(N · bits / 8)] uint8.
    """
    flat = np.asarray(indices).ravel().astype(np.uint8)
    if flat.size and int(flat.max()) >= 2**bits:
        raise ValueError(f"pack_bits: index {int(flat.max())} does not fit in {bits} bits")
    planes = (flat[:, None] >> np.arange(bits, dtype=np.uint8)) & 1
    return np.packbits(planes.ravel(), bitorder="little")


def unpack_bits(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of `pack_bits`: [count] uint8 indices from the packed bytes."""
    planes = np.unpackbits(np.asarray(packed, np.uint8), count=count * bits, bitorder="little")
    weights = (1 << np.arange(bits, dtype=np.uint16)).astype(np.uint16)
    return (planes.reshape(count, bits).astype(np.uint16) @ weights).astype(np.uint8)


def _encode_tree(tree: Any, path: str, leaves: list[tuple[str, Any]]) -> dict:
    """The JSON NODE of `tree`, appending its leaves (path, value) to `leaves` in order."""
    if isinstance(tree, Mapping):
        keys = list(tree.keys())
        for key in keys:
            if not isinstance(key, str):
                raise ValueError(f"save_packed: dict key {key!r} under {path or '<root>'!r} is not a str")
        children = [_encode_tree(tree[k], _child(path, k), leaves) for k in keys]
        return {"type": "dict", "keys": keys, "children": children}
    if isinstance(tree, (list, tuple)) and not hasattr(tree, "_fields"):
        children = [_encode_tree(child, _child(path, str(i)), leaves) for i, child in enumerate(tree)]
        return {"type": "list" if isinstance(tree, list) else "tuple", "children": children}
    if tree is None:
        return {"type": "none"}
    if isinstance(tree, QuantizedArray) or isinstance(tree, (np.ndarray, np.generic, jnp.ndarray)):
        leaves.append((path, tree))
        return {"type": "leaf", "entry": len(leaves) - 1}
    raise ValueError(
        f"save_packed: cannot store {type(tree).__name__} at {path or '<root>'!r}; "
        "supported: dict, list, tuple, None, arrays and QuantizedArray"
    )


def _child(path: str, key: str) -> str:
    return f"{path}/{key}" if path else key


def _sections_of(value: Any) -> dict[str, np.ndarray]:
    if isinstance(value, QuantizedArray):
        return {
            "indices": pack_bits(np.asarray(value.indices), value.bits),
            "codebook": np.asarray(value.codebook, np.float32),
            "scale": np.asarray(value.scale, np.float32),
        }
    return {"data": np.asarray(value)}


def save_packed(path: str | os.PathLike, hardened: Any) -> int:
    """Write a hardened tree (from `harden` or a baseline) to `path`; returns the file size in bytes.

    Indices are stored at exactly `bits` bits per weight; see the module docstring for the format.
    """
    leaves: list[tuple[str, Any]] = []
    tree = _encode_tree(hardened, "", leaves)
    entries, blobs, offset = [], [], 0
    for leaf_path, value in leaves:
        sections = {}
        for name, array in _sections_of(value).items():
            data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
            sections[name] = {
                "offset": offset,
                "nbytes": len(data),
                "crc32": zlib.crc32(data),
                "dtype": str(array.dtype),
                "shape": list(array.shape),
            }
            blobs.append(data)
            offset += len(data)
        entry = {
            "path": leaf_path,
            "kind": "quantized" if isinstance(value, QuantizedArray) else "array",
            "shape": list(np.shape(value.indices if isinstance(value, QuantizedArray) else value)),
            "dtype": value.dtype if isinstance(value, QuantizedArray) else str(np.asarray(value).dtype),
            "sections": sections,
        }
        if isinstance(value, QuantizedArray):
            entry["bits"] = value.bits
        entries.append(entry)
    header = json.dumps({"tree": tree, "payload_bytes": offset, "entries": entries}).encode()
    preamble = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header))
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(prefix=".gqpk-", dir=directory)
    os.fchmod(fd, 0o644)  # mkstemp's 0600 would make a published model unreadable to other users
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(preamble)
            f.write(_HEADER_CRC.pack(zlib.crc32(header, zlib.crc32(preamble))))
            f.write(header)
            for blob in blobs:
                f.write(blob)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    return _HEADER_START + len(header) + offset


class _Reader:
    """Validates a header against the layout and decodes entries; `fail` raises the ValueError."""

    def __init__(self, where: str, payload: bytes):
        self.where, self.payload, self.end = where, payload, 0

    def fail(self, message: str, leaf: str | None = None) -> None:
        at = f" (leaf {leaf!r})" if leaf is not None else ""
        raise ValueError(f"{self.where}: corrupted header{at}: {message}")

    def field(self, mapping: Any, key: str, kind: type | tuple[type, ...], leaf: str | None = None) -> Any:
        """mapping[key], checked to be a `kind` (never a bool where an int is asked for)."""
        if not isinstance(mapping, dict) or key not in mapping:
            self.fail(f"missing field {key!r}", leaf)
        value = mapping[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            self.fail(f"field {key!r} is {value!r}", leaf)
        return value

    def shape(self, mapping: Any, leaf: str | None) -> tuple[int, ...]:
        shape = self.field(mapping, "shape", list, leaf)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            self.fail(f"shape {shape!r} is not a list of sizes", leaf)
        return tuple(shape)

    def dtype(self, mapping: Any, leaf: str | None) -> str:
        dtype = self.field(mapping, "dtype", str, leaf)
        if dtype not in DTYPES:
            self.fail(f"dtype {dtype!r} is not one of {DTYPES}", leaf)
        return dtype

    def section(self, entry: dict, name: str, leaf: str) -> np.ndarray:
        """The section `name` of `entry`: it starts where the previous one ended, its shape and dtype
        fill exactly its bytes, and its CRC-32 matches."""
        spec = self.field(self.field(entry, "sections", dict, leaf), name, dict, leaf)
        offset, nbytes = (self.field(spec, key, int, leaf) for key in ("offset", "nbytes"))
        crc = self.field(spec, "crc32", int, leaf)
        shape, dtype = self.shape(spec, leaf), self.dtype(spec, leaf)
        if offset != self.end or nbytes != math.prod(shape) * jnp.dtype(dtype).itemsize:
            self.fail(f"section {name!r} at {offset} of {nbytes} bytes does not follow the previous "
                      f"one (ending at {self.end}) or does not hold {shape} {dtype}", leaf)
        data = self.payload[offset : offset + nbytes]
        if len(data) != nbytes or zlib.crc32(data) != crc:
            raise ValueError(f"{self.where}: section {name!r} of leaf {leaf!r} is corrupted (CRC-32 mismatch)")
        self.end = offset + nbytes
        return np.frombuffer(data, dtype=jnp.dtype(dtype)).reshape(shape)

    def entry(self, entry: Any, path: str) -> Any:
        """A QuantizedArray or array from its ENTRY, read at tree position `path`."""
        leaf = self.field(entry, "path", str)
        if leaf != path:
            self.fail(f"entry of leaf {leaf!r} sits at {path!r} in the tree", leaf)
        kind, shape, dtype = self.field(entry, "kind", str, leaf), self.shape(entry, leaf), self.dtype(entry, leaf)
        expected = ["data"] if kind == "array" else ["indices", "codebook", "scale"]
        names = list(self.field(entry, "sections", dict, leaf))
        if kind not in ("array", "quantized") or names != expected:
            self.fail(f"kind {kind!r} with sections {names}", leaf)
        if kind == "array":
            data = self.section(entry, "data", leaf)
            if data.shape != shape or str(data.dtype) != dtype:
                self.fail(f"data {data.shape} {data.dtype} is not the entry's {shape} {dtype}", leaf)
            return data
        bits = self.field(entry, "bits", int, leaf)
        if not 1 <= bits <= 8 or not jnp.issubdtype(jnp.dtype(dtype), jnp.floating):
            self.fail(f"{bits} bits of a {dtype} weight", leaf)
        sections = {name: self.section(entry, name, leaf) for name in expected}
        count = math.prod(shape)
        if any(str(sections[name].dtype) != want for name, want in _SECTION_DTYPES.items()):
            self.fail("indices must be uint8, codebook and scale float32", leaf)
        if sections["indices"].shape != (-(-count * bits // 8),):
            self.fail(f"{sections['indices'].shape} index bytes for {count} weights at {bits} bits", leaf)
        codebook = sections["codebook"]
        if codebook.ndim != 1 or not 1 <= codebook.shape[0] <= 2**bits:
            self.fail(f"codebook of shape {codebook.shape} at {bits} bits", leaf)
        try:
            check_scale_shape(sections["scale"].shape, shape)
        except ValueError as err:
            self.fail(str(err), leaf)
        indices = unpack_bits(sections["indices"], bits, count)
        if count and int(indices.max()) >= codebook.shape[0]:
            self.fail(f"index {int(indices.max())} beyond its {codebook.shape[0]}-entry codebook", leaf)
        return QuantizedArray(
            indices=jnp.asarray(indices.reshape(shape)),
            codebook=jnp.asarray(codebook),
            scale=jnp.asarray(sections["scale"]),
            bits=bits,
            shape=shape,
            dtype=dtype,
        )

    def tree(self, node: Any, entries: list, used: set, path: str = "") -> Any:
        """The pytree of `node`, each leaf read from `entries` (each entry exactly once)."""
        kind = self.field(node, "type", str)
        if kind == "dict":
            keys, children = self.field(node, "keys", list), self.field(node, "children", list)
            if len(keys) != len(children) or not all(isinstance(k, str) for k in keys) or len(set(keys)) != len(keys):
                self.fail(f"dict node under {path or '<root>'!r} with keys {keys!r}")
            return {k: self.tree(c, entries, used, _child(path, k)) for k, c in zip(keys, children)}
        if kind in ("list", "tuple"):
            children = [self.tree(c, entries, used, _child(path, str(i)))
                        for i, c in enumerate(self.field(node, "children", list))]
            return children if kind == "list" else tuple(children)
        if kind == "none":
            return None
        if kind != "leaf":
            self.fail(f"node type {kind!r}")
        index = self.field(node, "entry", int)
        if not 0 <= index < len(entries) or index in used or index != len(used):
            self.fail(f"leaf {path!r} refers to entry {index} out of order ({len(entries)} entries)")
        used.add(index)
        return self.entry(entries[index], path)


def load_packed(path: str | os.PathLike) -> Any:
    """Read a file written by `save_packed` back into a hardened tree (dicts, lists, tuples).

    Raises:
      ValueError naming the file for a wrong magic, another format version, a truncated or padded
      file, a header whose CRC-32 does not match or that breaks the layout, or a section whose
      CRC-32 does not match (naming the leaf). See the module docstring for what is guaranteed.
    """
    where = os.fspath(path)
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < _HEADER_START:
        raise ValueError(f"{where}: truncated ({len(blob)} bytes), not a gq_jax packed file")
    magic, version, header_bytes = _PREAMBLE.unpack_from(blob)
    if magic != MAGIC:
        raise ValueError(f"{where}: not a gq_jax packed file (magic {magic!r})")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{where}: packed format version {version}; this gq_jax reads version {FORMAT_VERSION}"
        )
    header_end = _HEADER_START + header_bytes
    if header_end > len(blob):
        raise ValueError(f"{where}: truncated inside its header ({len(blob)} of >= {header_end} bytes)")
    header_blob = blob[_HEADER_START:header_end]
    (crc,) = _HEADER_CRC.unpack_from(blob, _PREAMBLE.size)
    if zlib.crc32(header_blob, zlib.crc32(blob[: _PREAMBLE.size])) != crc:
        raise ValueError(f"{where}: corrupted header (CRC-32 mismatch)")
    try:
        header = json.loads(header_blob.decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{where}: corrupted header ({err})") from None
    reader = _Reader(where, blob[header_end:])
    payload_bytes = reader.field(header, "payload_bytes", int)
    if len(reader.payload) != payload_bytes:
        raise ValueError(
            f"{where}: truncated or padded: header declares {payload_bytes} payload "
            f"bytes, file holds {len(reader.payload)}"
        )
    entries = reader.field(header, "entries", list)
    try:
        tree = reader.tree(header.get("tree"), entries, used := set())
    except RecursionError:
        reader.fail("tree nested too deeply")
    if len(used) != len(entries) or reader.end != payload_bytes:
        reader.fail(f"{len(entries) - len(used)} entries outside the tree, or payload bytes "
                    f"{reader.end}..{payload_bytes} in no section")
    return tree
