"""Bit-packing and the packed file format (`save_packed`, `load_packed`); no pickle anywhere.

File layout, format version 1 (all integers little-endian):

    offset 0   8 bytes   magic b"GQJAXPK\\n"
    offset 8   uint32    format version (1)
    offset 12  uint64    header length H in bytes
    offset 20  H bytes   header: UTF-8 JSON (below)
    offset 20+H          payload: the sections of every entry, back to back

Header JSON:
    {"tree": NODE, "payload_bytes": int, "entries": [ENTRY, ...]}
    NODE  = {"type": "dict", "keys": [str, ...], "children": [NODE, ...]}
          | {"type": "list" | "tuple", "children": [NODE, ...]} | {"type": "none"}
          | {"type": "leaf", "entry": int}
    ENTRY = {"path": str, "kind": "quantized" | "array", "shape": [int, ...], "dtype": str,
             "bits": int (quantized only), "sections": {NAME: {"offset", "nbytes", "crc32",
             "dtype", "shape"}}}
A quantized entry has sections "indices" (N = prod(shape) indices at `bits` bits each, packed
little-endian bit order, ceil(N · bits / 8) bytes), "codebook" and "scale" (raw float32); an array
entry has one section "data" (raw little-endian values). Offsets are relative to the payload start
and every section carries the CRC-32 of its bytes. Files are written to a temporary name and
renamed, so a crash never leaves a half-written file under the target name.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from gq_jax.artifact import QuantizedArray

MAGIC = b"GQJAXPK\n"
FORMAT_VERSION = 1
_PREAMBLE = struct.Struct("<8sIQ")


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
        children = [_encode_tree(tree[k], f"{path}/{k}" if path else k, leaves) for k in keys]
        return {"type": "dict", "keys": keys, "children": children}
    if isinstance(tree, (list, tuple)) and not hasattr(tree, "_fields"):
        children = [
            _encode_tree(child, f"{path}/{i}" if path else str(i), leaves)
            for i, child in enumerate(tree)
        ]
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


def _decode_tree(node: dict, entries: list[Any]) -> Any:
    kind = node["type"]
    if kind == "dict":
        return {k: _decode_tree(c, entries) for k, c in zip(node["keys"], node["children"])}
    if kind in ("list", "tuple"):
        children = [_decode_tree(c, entries) for c in node["children"]]
        return children if kind == "list" else tuple(children)
    if kind == "none":
        return None
    return entries[node["entry"]]


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
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(prefix=".gqpk-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header)))
            f.write(header)
            for blob in blobs:
                f.write(blob)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    return _PREAMBLE.size + len(header) + offset


def _read_section(payload: bytes, entry: dict, name: str, where: str) -> np.ndarray:
    spec = entry["sections"][name]
    data = payload[spec["offset"] : spec["offset"] + spec["nbytes"]]
    if len(data) != spec["nbytes"] or zlib.crc32(data) != spec["crc32"]:
        raise ValueError(f"{where}: section {name!r} of leaf {entry['path']!r} is corrupted (CRC-32 mismatch)")
    return np.frombuffer(data, dtype=jnp.dtype(spec["dtype"])).reshape(spec["shape"])


def _read_entry(payload: bytes, entry: dict, where: str) -> Any:
    shape = tuple(entry["shape"])
    if entry["kind"] == "array":
        return _read_section(payload, entry, "data", where).reshape(shape)
    bits = int(entry["bits"])
    count = int(np.prod(shape, dtype=np.int64))
    indices = unpack_bits(_read_section(payload, entry, "indices", where), bits, count)
    return QuantizedArray(
        indices=jnp.asarray(indices.reshape(shape)),
        codebook=jnp.asarray(_read_section(payload, entry, "codebook", where)),
        scale=jnp.asarray(_read_section(payload, entry, "scale", where)),
        bits=bits,
        shape=shape,
        dtype=entry["dtype"],
    )


def load_packed(path: str | os.PathLike) -> Any:
    """Read a file written by `save_packed` back into a hardened tree (dicts, lists, tuples).

    Raises:
      ValueError naming the file for a wrong magic, another format version, a truncated file, or a
      section whose CRC-32 does not match (naming the leaf).
    """
    where = os.fspath(path)
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < _PREAMBLE.size:
        raise ValueError(f"{where}: truncated ({len(blob)} bytes), not a gq_jax packed file")
    magic, version, header_bytes = _PREAMBLE.unpack_from(blob)
    if magic != MAGIC:
        raise ValueError(f"{where}: not a gq_jax packed file (magic {magic!r})")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{where}: packed format version {version}; this gq_jax reads version {FORMAT_VERSION}"
        )
    header_end = _PREAMBLE.size + header_bytes
    if header_end > len(blob):
        raise ValueError(f"{where}: truncated inside its header ({len(blob)} of >= {header_end} bytes)")
    try:
        header = json.loads(blob[_PREAMBLE.size : header_end].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{where}: corrupted header ({err})") from None
    payload = blob[header_end:]
    if len(payload) != header["payload_bytes"]:
        raise ValueError(
            f"{where}: truncated or padded: header declares {header['payload_bytes']} payload "
            f"bytes, file holds {len(payload)}"
        )
    entries = [_read_entry(payload, entry, where) for entry in header["entries"]]
    return _decode_tree(header["tree"], entries)
