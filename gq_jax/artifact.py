"""The shippable form of a quantized model: `QuantizedArray`, `harden`, `dequantize`, `size_report`.

A hardened leaf stores, for W of shape S with b bits:
  indices  [S] uint8, each < 2**b        (bit-packed at b bits per weight in the packed file)
  codebook [K] float32, K <= 2**b          (the centroids in normalised-weight units, expand(c))
  scale    float32, broadcastable to [S]   ([] per tensor; per output channel, S's sizes on the
                                           channel axes and 1 elsewhere, leading 1s dropped: [out]
                                           for Dense [in, out], [heads, head_dim] for a DenseGeneral
                                           [D, heads, head_dim]; `check_scale_shape`)
and W = codebook[indices] · scale (numpy broadcasting), cast to W's dtype. Every quantizer (GQ and the baselines)
produces this artifact, so one size report compares them all.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gq_jax.assignment import nearest_index
from gq_jax.companding import expand
from gq_jax.config import GQConfig, Rule, leaves_with_paths
from gq_jax.quantizer import QuantState, centroids_for, leaf_companded, map_matched_leaves

FLOAT32_BYTES = 4


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class QuantizedArray:
    """A hard-quantized tensor: W = codebook[indices] · scale (see module docstring for shapes)."""

    indices: jax.Array
    codebook: jax.Array
    scale: jax.Array
    bits: int = dataclasses.field(metadata=dict(static=True))
    shape: tuple[int, ...] = dataclasses.field(metadata=dict(static=True))
    dtype: str = dataclasses.field(metadata=dict(static=True))

    @property
    def num_weights(self) -> int:
        return math.prod(self.shape)

    @property
    def packed_bytes(self) -> int:
        """Bytes of the packed form: ceil(N · b / 8) index bytes + float32 codebook and scales."""
        index_bytes = -(-self.num_weights * self.bits // 8)
        return index_bytes + FLOAT32_BYTES * (int(np.size(self.codebook)) + int(np.size(self.scale)))


def is_quantized(x: Any) -> bool:
    return isinstance(x, QuantizedArray)


def harden(params: Any, state: QuantState, config: GQConfig) -> Any:
    """Matched leaves of `params` as QuantizedArray (hard GQ assignment); others unchanged.

    `dequantize(harden(p, s, c))` equals `quantize_params(p, s, c, α, hard=True)` exactly.
    """

    def harden_leaf(path: str, leaf: Any, rule: Rule) -> QuantizedArray:
        centroids = centroids_for(path, rule, state)
        v, s = leaf_companded(path, leaf, rule, config.mu)
        indices = nearest_index(v.ravel(), centroids).reshape(np.shape(leaf))
        return QuantizedArray(
            indices=indices.astype(jnp.uint8),
            codebook=expand(centroids, config.mu).astype(jnp.float32),
            scale=s.astype(jnp.float32),
            bits=rule.bits,
            shape=tuple(np.shape(leaf)),
            dtype=str(jnp.result_type(leaf)),
        )

    return map_matched_leaves(harden_leaf, params, config)


def check_scale_shape(scale_shape: tuple[int, ...], shape: tuple[int, ...]) -> None:
    """ValueError unless scales of `scale_shape` broadcast to `shape` without changing it (each of
    its axes, aligned from the right, is 1 or the weight's size there)."""
    trailing = shape[len(shape) - len(scale_shape):] if scale_shape else ()
    if len(scale_shape) > len(shape) or any(s not in (1, n) for s, n in zip(scale_shape, trailing)):
        raise ValueError(f"scales of shape {tuple(scale_shape)} do not broadcast to weights of shape "
                         f"{tuple(shape)}")


def dequantize_leaf(q: QuantizedArray) -> jax.Array:
    """codebook[indices] · scale in the original dtype."""
    return (q.codebook[q.indices.astype(jnp.int32)] * q.scale).astype(q.dtype)


def dequantize(hardened: Any) -> Any:
    """Float params from a hardened tree: every QuantizedArray becomes an array again."""
    return jax.tree_util.tree_map(
        lambda x: dequantize_leaf(x) if is_quantized(x) else x, hardened, is_leaf=is_quantized
    )


@dataclasses.dataclass(frozen=True)
class LeafSize:
    path: str
    num_weights: int
    bits: int | None
    size_bytes: int


@dataclasses.dataclass(frozen=True)
class SizeReport:
    """Sizes of a hardened tree, and of the same tree stored as float32 and as uniform 8-bit: the
    one size accounting of every method (GQ, the baselines, Qwix: `gq_jax.export`).

    total_bytes counts what the packed file stores (header excluded): per quantized leaf
    ceil(N · b / 8) index bytes plus its float32 codebook and scales, every other leaf its own bytes.
    uint8_bytes counts, for each quantized leaf, one byte per weight plus its float32 scales (what
    8-bit QAT ships); float leaves count their own bytes in every column.
    """

    leaves: tuple[LeafSize, ...]
    total_bytes: int
    quantized_weights: int
    average_bits: float
    float32_bytes: int
    uint8_bytes: int

    @property
    def quantized_leaves(self) -> tuple[str, ...]:
        """Paths of the QuantizedArray leaves, in tree order."""
        return tuple(leaf.path for leaf in self.leaves if leaf.bits is not None)

    @property
    def float_leaves(self) -> tuple[str, ...]:
        """Paths of the leaves shipped as they are (not quantized), in tree order."""
        return tuple(leaf.path for leaf in self.leaves if leaf.bits is None)

    @property
    def saving_vs_uint8(self) -> float:
        """Fraction of the uniform 8-bit size saved: 1 − total / uint8."""
        return 1.0 - self.total_bytes / self.uint8_bytes

    def __str__(self) -> str:
        width = max([len(leaf.path) for leaf in self.leaves] + [4])
        lines = [f"{'leaf':<{width}}  {'weights':>10}  {'bits':>4}  {'bytes':>10}"]
        for leaf in self.leaves:
            bits = "-" if leaf.bits is None else str(leaf.bits)
            lines.append(f"{leaf.path:<{width}}  {leaf.num_weights:>10}  {bits:>4}  {leaf.size_bytes:>10}")
        lines.append(
            f"total {self.total_bytes} bytes; {self.quantized_weights} quantized weights at "
            f"{self.average_bits:.3f} bits on average; float32 {self.float32_bytes} bytes; "
            f"uniform 8-bit {self.uint8_bytes} bytes ({100 * self.saving_vs_uint8:.2f} % saved)"
        )
        return "\n".join(lines)


def size_report(hardened: Any) -> SizeReport:
    """Bytes per leaf and in total (packed form, header excluded), average index bits per quantized
    weight, and the float32 and uniform 8-bit sizes of the same tree."""
    leaves, total, float32, uint8, quantized, index_bits = [], 0, 0, 0, 0, 0
    for path, leaf in leaves_with_paths(hardened, is_leaf=is_quantized):
        if is_quantized(leaf):
            size = leaf.packed_bytes
            leaves.append(LeafSize(path, leaf.num_weights, leaf.bits, size))
            quantized += leaf.num_weights
            index_bits += leaf.num_weights * leaf.bits
            float32 += FLOAT32_BYTES * leaf.num_weights
            uint8 += leaf.num_weights + FLOAT32_BYTES * int(np.size(leaf.scale))
        else:
            size = int(np.asarray(leaf).nbytes)
            leaves.append(LeafSize(path, int(np.size(leaf)), None, size))
            float32 += FLOAT32_BYTES * int(np.size(leaf))
            uint8 += size
        total += size
    return SizeReport(
        leaves=tuple(leaves),
        total_bytes=total,
        quantized_weights=quantized,
        average_bits=index_bits / quantized if quantized else 0.0,
        float32_bytes=float32,
        uint8_bytes=uint8,
    )
