"""A packed runtime: decode with the quantized weights resident as b-bit indices, codebook and scales.

`gq_jax.dequantize` turns every `QuantizedArray` into a float32 array at load, so a GQ model then
takes the memory of the float model. Here the device buffers that stay resident between calls are
the packed ones, and each weight is expanded inside the jitted computation that uses it:

    model, params = runtime.resident_model(model), runtime.load_resident("model.gqpk")
    decoding.greedy_decode(model, {"params": params}, features, lengths)   # or beam_search

Resident forms of a quantized leaf W of shape S (N weights, b bits, K-entry codebook):

  `PackedArray`  planes: the indices split into bit planes of 1, 2 and 4 bits (b's binary digits,
                 low bits first: 5 bits = a 1-bit plane + a 4-bit plane; 8 bits = one byte plane),
                 each [B = ceil(N · w / 8)] uint8 for width w, strided: byte i holds the w-bit digits
                 of indices i, i + B, i + 2B, ... at bits 0, w, 2w, ... (repacked once at load from
                 the file's b-bit groups); codebook [2^b] float32 (the file's K <= 2^b entries,
                 padded with the last one, so every b-bit index is in bounds); scale (broadcastable
                 to S) float32. Resident bytes = `QuantizedArray.packed_bytes` plus at most 2 (each
                 plane rounds up to whole bytes) plus 4 · (2^b − K). Expanded as
                 codebook[Σ plane · 2^offset] · scale: unpacking a plane is its bytes shifted by
                 0, w, 2w, ... and masked, [8 / w, B] rows that are the flat indices in order, so
                 shifts and or are one vectorised loop (the file's groups, where an index can
                 cross a byte boundary, made XLA interleave 8 columns: 2-3x slower; planes packed
                 as `pack_bits` packs them, 8 / w neighbours to a byte, 1.3-1.6x slower). On an
                 x86 CPU with AVX-512 unpacking and lookup are one compiled kernel
                 (`gq_jax.cpu_lookup`, b <= 5: a register permute per 16 weights; `kernel=True`,
                 set by `resident_leaf` where it serves); elsewhere the codebook lookup is a tree of
                 selects fused with that loop for b <= 4 (`select_tree`; b <= 6 for the int8 grid
                 of `int8_matmuls`, which never takes the kernel), a gather above.
  `Int8Array`    values [S] int8 in [-127, 127] and scale float32: an 8-bit leaf whose codebook is the
                 symmetric uniform grid k / 127 (`baselines.uniform_levels`: the "8-bit QAT" and
                 8-bit round-to-nearest artifact). Expanded as (values / L) · scale, L = 127.
                 Resident bytes = N + 4 · scales + 4 (`SizeReport.uint8_bytes`' count plus L; the
                 255-entry codebook is not needed).

Both expansions equal `dequantize_leaf` bit for bit, so decoding from the resident tree gives the
transcripts of the in-memory hard-quantized model (`tests/test_runtime.py`). `int8_matmuls=True`
instead runs each weight matmul as int8 × int8 with int32 accumulation (`int8_dot`): the weights on
a per-channel int8 grid, the activations quantized per row on the fly; an approximation whose WER
cost `benchmarks/runtime.py` reports.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core

from gq_jax import cpu_lookup
from gq_jax.artifact import QuantizedArray, is_quantized
from gq_jax.baselines import uniform_levels
from gq_jax.packed import load_packed, pack_bits


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PackedArray:
    """A quantized weight resident as bit planes of its indices: W = codebook[unpack(planes)] · scale."""

    planes: tuple[jax.Array, ...]
    codebook: jax.Array
    scale: jax.Array
    bits: int = dataclasses.field(metadata=dict(static=True))
    shape: tuple[int, ...] = dataclasses.field(metadata=dict(static=True))
    dtype: str = dataclasses.field(metadata=dict(static=True))
    kernel: bool = dataclasses.field(default=False, metadata=dict(static=True))  # `cpu_lookup` on a CPU

    def indices(self) -> jax.Array:
        """[N] uint8 indices from the planes (traceable)."""
        return unpack_planes(self.planes, self.bits, math.prod(self.shape))

    def lookup(self, table: jax.Array) -> jax.Array:
        """table[indices] in the weight's shape, for a [2^b] table (the padded codebook, or its int8
        grid): a tree of selects where `select_tree_wins` for b and the table's dtype, else a gather
        (every b-bit index is in bounds, so it skips the bounds check)."""
        index = self.indices()
        if select_tree_wins(self.bits, table.dtype):
            return select_tree(table, index, self.bits).reshape(self.shape)
        return table.at[index].get(mode="promise_in_bounds").reshape(self.shape)

    def expand(self) -> jax.Array:
        """codebook[indices] · scale in the weight's dtype: where `kernel` and the computation runs on
        a CPU, by the compiled `cpu_lookup` kernel; elsewhere by XLA (`lookup`). Equal bit for bit."""
        by_xla = lambda: self.lookup(self.codebook) * self.scale
        if not self.kernel:
            return by_xla().astype(self.dtype)
        by_kernel = lambda: cpu_lookup.lookup(self.planes, self.codebook, self.scale, self.bits, self.shape)
        return jax.lax.platform_dependent(cpu=by_kernel, default=by_xla).astype(self.dtype)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Int8Array:
    """A weight on the symmetric uniform grid, resident as int8: W = (values / levels) · scale.

    `levels` (L, a float32 scalar) is an array, not a constant of the computation, so XLA divides
    by it exactly as `uniform_levels` does instead of multiplying by a rounded 1 / L.
    """

    values: jax.Array
    scale: jax.Array
    levels: jax.Array
    dtype: str = dataclasses.field(metadata=dict(static=True))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    def expand(self) -> jax.Array:
        return (self.values.astype(jnp.float32) / self.levels * self.scale).astype(self.dtype)


# The widest index at which `select_tree` beats XLA's CPU gather, by the table's dtype
# (benchmarks/runtime.py's lookup table): a vector select takes 16 float32 lanes, or 64 int8 ones.
SELECT_MAX_BITS = {"float32": 4, "int8": 6}


def select_tree_wins(bits: int, dtype: Any) -> bool:
    """Whether a `bits`-bit lookup into a table of `dtype` takes `select_tree` (else a gather)."""
    return bits <= SELECT_MAX_BITS.get(jnp.dtype(dtype).name, 0)


def select_tree(table: jax.Array, index: jax.Array, bits: int) -> jax.Array:
    """table[index] for a [2^bits] table and unsigned `index` (traceable), as 2^bits − 1 selects:
    level j = 0 .. bits − 1 pairs the 2^(bits−j) candidates left and keeps, per element, the one
    whose bit j is that of its index (candidate 2k + 1 where bit j is set, else 2k), so one remains.

    Elementwise, so XLA vectorises it and fuses it with the unpacking, where its CPU gather is a
    scalar loop: the cheaper lookup up to `SELECT_MAX_BITS` (4 bits for float32, 6 for int8 tables);
    wider ones cost more selects than the gather.
    """
    values = [table[k] for k in range(2**bits)]
    for j in range(bits):
        bit = ((index >> j) & 1).astype(bool)
        values = [jnp.where(bit, high, low) for low, high in zip(values[0::2], values[1::2])]
    return values[0]


def is_resident(x: Any) -> bool:
    return isinstance(x, (PackedArray, Int8Array))


def plane_widths(bits: int) -> tuple[int, ...]:
    """Widths of the bit planes of a `bits`-bit index, low bits first: its binary digits (5 -> (1, 4),
    7 -> (1, 2, 4)), each dividing 8; 8 -> (8,)."""
    if not 1 <= bits <= 8:
        raise ValueError(f"bits={bits}; expected 1..8")
    return (8,) if bits == 8 else tuple(w for w in (1, 2, 4) if bits & w)


def pack_planes(indices: np.ndarray, bits: int) -> tuple[np.ndarray, ...]:
    """The strided bit planes of `indices` (integers < 2**bits, any shape, flattened): for each width
    w of `plane_widths(bits)`, the next w bits of every index, [B = ceil(N · w / 8)] uint8 with byte
    i holding those of indices i, i + B, ... (index s · B + i at bits s · w, zero past N)."""
    flat, planes, offset = np.asarray(indices).ravel().astype(np.uint8), [], 0
    for w in plane_widths(bits):
        per = 8 // w
        digits = np.zeros(-(-flat.size // per) * per, np.uint8)
        digits[:flat.size] = (flat >> offset) & ((1 << w) - 1)
        rows = digits.reshape(per, -1)
        planes.append(np.bitwise_or.reduce(rows << (np.arange(per, dtype=np.uint8)[:, None] * w), axis=0))
        offset += w
    return tuple(planes)


def unpack_planes(planes: tuple[jax.Array, ...], bits: int, count: int) -> jax.Array:
    """Inverse of `pack_planes` inside jit: the planes -> [count] uint8 indices.

    A w-bit plane's bytes shifted right by 0, w, 2w, ... and masked are [8 / w, B] rows whose
    concatenation is the w-bit digits of indices 0, 1, 2, ... in order; the planes' digits are then
    or-ed at their offsets.
    """
    index, offset = None, 0
    for plane, w in zip(planes, plane_widths(bits)):
        if w < 8:
            plane = ((plane[None, :] >> jnp.arange(0, 8, w, dtype=jnp.uint8)[:, None]) & ((1 << w) - 1)).reshape(-1)
        value = plane[:count]
        index = value if index is None else index | (value << offset)
        offset += w
    return index


def _is_uniform_grid(q: QuantizedArray) -> bool:
    return np.array_equal(np.asarray(q.codebook), np.asarray(uniform_levels(q.bits)))


def resident_leaf(q: QuantizedArray) -> PackedArray | Int8Array:
    """The resident form of one hardened leaf: `Int8Array` for the 8-bit uniform grid (1 byte per
    weight either way, and a cheaper expansion), else `PackedArray` (b bits per weight, as bit planes)."""
    if q.bits == 8 and _is_uniform_grid(q):
        half = 2 ** (q.bits - 1) - 1
        values = (np.asarray(q.indices).astype(np.int16) - half).astype(np.int8)
        return Int8Array(jnp.asarray(values), jnp.asarray(q.scale, jnp.float32), jnp.float32(half), q.dtype)
    planes = tuple(map(jnp.asarray, pack_planes(np.asarray(q.indices), q.bits)))
    codebook = np.asarray(q.codebook, np.float32)
    codebook = np.concatenate([codebook, np.repeat(codebook[-1:], 2**q.bits - codebook.size)])
    return PackedArray(planes, jnp.asarray(codebook), jnp.asarray(q.scale, jnp.float32), q.bits, tuple(q.shape),
                       q.dtype, kernel=cpu_lookup.serves(q.bits, tuple(q.shape), np.shape(q.scale)))


def resident(hardened: Any) -> Any:
    """A hardened tree with every `QuantizedArray` in its resident form (other leaves as arrays)."""
    return jax.tree_util.tree_map(lambda x: resident_leaf(x) if is_quantized(x) else jnp.asarray(x),
                                  hardened, is_leaf=is_quantized)


def load_resident(path: str | os.PathLike) -> Any:
    """The packed file at `path` as a resident tree (`resident(load_packed(path))`).

    Raises the ValueError of `gq_jax.load_packed` (naming the file, and the leaf when known) for any
    damaged or foreign file; the file is validated in full before anything becomes resident.
    """
    return resident(load_packed(path))


@jax.jit
def expand_leaf(leaf: PackedArray | Int8Array) -> jax.Array:
    """The float weight of one resident leaf (`leaf.expand()`), as a jitted call of its own: a traced
    program shows each expansion as one `expand_leaf` call, and XLA inlines it."""
    return leaf.expand()


def expand(tree: Any) -> Any:
    """Float params from a resident tree (call it inside the jitted function that uses them)."""
    return jax.tree_util.tree_map(lambda x: expand_leaf(x) if is_resident(x) else x, tree, is_leaf=is_resident)


def resident_bytes(tree: Any) -> int:
    """Bytes of the arrays a resident tree holds: what stays in memory between calls."""
    return sum(int(x.nbytes) for x in jax.tree_util.tree_leaves(tree))


def to_int8(x: PackedArray | Int8Array) -> Int8Array:
    """`x` on the int8 grid of its channels (traceable): an `Int8Array` stays as it is; a
    `PackedArray`'s codebook is snapped to k / 127 (each weight then moves by at most half a step,
    scale / 254, from its codebook value) and gathered as int8."""
    if isinstance(x, Int8Array):
        return x
    grid = jnp.clip(jnp.round(x.codebook * 127.0), -127, 127).astype(jnp.int8)
    return Int8Array(x.lookup(grid), x.scale, jnp.float32(127.0), x.dtype)


def int8_dot(lhs: jax.Array, weight: Int8Array, dimension_numbers: Any) -> jax.Array | None:
    """`lhs @ W` for a kernel W [D, N] as int8 × int8 -> int32 (`lax.dot_general` with
    `preferred_element_type=int32`), or None where the contraction is not `[..., D] x [D, N]`.

    Each row of `lhs` is quantized on the fly to round(lhs / a · 127), a = max |row| (weight-only
    quantization in training, so this is the one approximation besides the weights' int8 grid);
    the int32 product is rescaled by a / 127 per row and scale / levels per output channel.
    """
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    n = weight.values.shape[-1]
    if (weight.values.ndim != 2 or tuple(rhs_contract) != (0,) or tuple(lhs_contract) != (lhs.ndim - 1,)
            or lhs_batch or rhs_batch or weight.scale.shape not in ((), (n,))):
        return None
    amax = jnp.max(jnp.abs(lhs), axis=-1, keepdims=True)
    row_scale = jnp.where(amax > 0, amax, 1.0) / 127.0
    lhs8 = jnp.clip(jnp.round(lhs / row_scale), -127, 127).astype(jnp.int8)
    acc = jax.lax.dot_general(lhs8, weight.values, dimension_numbers, preferred_element_type=jnp.int32)
    return acc.astype(jnp.float32) * row_scale * (weight.scale / weight.levels)


def _bind(eqn: Any, invals: list) -> list:
    with eqn.ctx.manager:
        out = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
    return list(out) if eqn.primitive.multiple_results else [out]


def _after(leaf: PackedArray | Int8Array, anchor: jax.Array) -> PackedArray | Int8Array:
    """`leaf` with a data dependency on `anchor`: its scale plus min(|anchor₀|, 0), which is 0 (NaN
    only for a NaN anchor₀) and which XLA cannot fold, so the expansion cannot run before `anchor`
    exists. (`lax.optimization_barrier` does not order anything on XLA's CPU backend.)"""
    zero = jnp.minimum(jnp.abs(anchor.ravel()[0]), 0).astype(leaf.scale.dtype)
    return dataclasses.replace(leaf, scale=leaf.scale + zero)


_CALLS = ("jit", "pjit", "closed_call", "core_call", "custom_vjp_call", "custom_jvp_call")


def _called(eqn: Any) -> Any:
    """The closed jaxpr that a call equation (one of `_CALLS`) runs."""
    return eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))


def _is_loop(eqn: Any) -> bool:
    """A loop of more than one iteration, or a call holding one: a value computed after it need not
    be live during it."""
    name = eqn.primitive.name
    if name in _CALLS:
        return any(map(_is_loop, _called(eqn).jaxpr.eqns))
    return name == "while" or (name == "scan" and eqn.params["length"] > 1)


class _Interpreter:
    """Evaluates a jaxpr whose weight inputs are resident leaves (see `ResidentModel`).

    A resident leaf is expanded where an equation first consumes it, once per call (later consumers
    reuse it): inline through nested jits and custom-derivative calls (decoding runs their primal,
    e.g. `models.transducer_parts.lstm_recurrence`), before a scan for the scan's constants, and, with
    `int8`, never for a 2-D matmul kernel (`int8_dot`, on its int8 form, also made once).
    An expansion whose consumer depends on an earlier loop of this call is made to depend on that
    loop's result (`_after`), so XLA cannot schedule it earlier: a layer's float weights are live
    from its input to its last use, not for the whole call.
    """

    def __init__(self, int8: bool):
        self.int8 = int8
        self.cache: dict[tuple[str, int], tuple[Any, Any]] = {}  # (form, id(leaf)) -> (leaf, value)

    def once(self, form: str, leaf: PackedArray | Int8Array, make: Any) -> Any:
        """`make()` the first time `leaf` is asked for in this `form` ("float" or "int8"), then the
        same value: a leaf consumed by several equations is expanded once per call."""
        key = (form, id(leaf))
        if key not in self.cache:
            self.cache[key] = (leaf, make())
        return self.cache[key][1]

    def run(self, jaxpr: Any, consts: list, args: list, after_loop: list[bool]) -> tuple[list, list[bool]]:
        env, late = {}, {}

        def read(v):
            return (v.val, False) if isinstance(v, jex_core.Literal) else (env[v], late[v])

        for v, x, flag in zip(list(jaxpr.constvars) + list(jaxpr.invars), list(consts) + list(args),
                              [False] * len(consts) + list(after_loop)):
            env[v], late[v] = x, flag
        for eqn in jaxpr.eqns:
            invals, flags = map(list, zip(*map(read, eqn.invars))) if eqn.invars else ([], [])
            outs = self.equation(eqn, invals, flags)
            flag = _is_loop(eqn) or any(flags)
            for v, x in zip(eqn.outvars, outs):
                env[v], late[v] = x, flag
        results = [read(v) for v in jaxpr.outvars]
        return [x for x, _ in results], [f for _, f in results]

    def equation(self, eqn: Any, invals: list, flags: list[bool]) -> list:
        if not any(map(is_resident, invals)):
            return _bind(eqn, invals)
        name = eqn.primitive.name
        if name in _CALLS:
            closed = _called(eqn)
            return self.run(closed.jaxpr, closed.consts, invals, flags)[0]
        anchors = [x for x, flag in zip(invals, flags) if flag and not is_resident(x)]
        tie = lambda leaf: _after(leaf, anchors[0]) if anchors else leaf
        as_int8 = lambda leaf: self.once("int8", leaf, lambda: to_int8(tie(leaf)))
        if self.int8 and name == "dot_general" and is_resident(invals[1]) and not is_resident(invals[0]):
            out = int8_dot(invals[0], as_int8(invals[1]), eqn.params["dimension_numbers"])
            if out is not None:
                return [out.astype(eqn.outvars[0].aval.dtype)]
        if self.int8 and name == "scan":
            return self.scan(eqn, [as_int8(x) if is_resident(x) else x for x in invals])
        return _bind(eqn, [self.once("float", x, lambda x=x: expand_leaf(tie(x))) if is_resident(x) else x
                           for x in invals])

    def scan(self, eqn: Any, invals: list) -> list:
        """The scan again, its body interpreted (so int8 constants reach the body's matmuls)."""
        params, body = eqn.params, eqn.params["jaxpr"]
        num_consts, num_carry = params["num_consts"], params["num_carry"]
        consts, init, xs = invals[:num_consts], invals[num_consts:num_consts + num_carry], invals[num_consts + num_carry:]

        def step(carry, x):  # a fresh cache: what the body expands stays inside the body's trace
            outs, _ = _Interpreter(self.int8).run(body.jaxpr, body.consts, consts + list(carry) + list(x),
                                                  [False] * len(invals))
            return outs[:num_carry], outs[num_carry:]

        carry, ys = jax.lax.scan(step, init, xs, length=params["length"], reverse=params["reverse"],
                                 unroll=params["unroll"])
        return list(carry) + list(ys)


def resident_apply(apply: Any, variables: Any, *args, int8: bool = False) -> Any:
    """`apply(float variables, *args)` evaluated with the resident `variables` (see `_Interpreter`).

    `apply` is traced once with abstract float weights of the resident leaves' shapes; its jaxpr is
    then evaluated with the resident leaves themselves, so only the expansions it needs run, each
    just before its use.
    """
    leaves, treedef = jax.tree_util.tree_flatten(variables, is_leaf=is_resident)
    abstract = [jax.ShapeDtypeStruct(x.shape, x.dtype) if is_resident(x) else x for x in leaves]
    closed, out_shape = jax.make_jaxpr(
        lambda flat, rest: apply(jax.tree_util.tree_unflatten(treedef, flat), *rest),
        return_shape=True)(abstract, args)
    flat_args = jax.tree_util.tree_leaves(args)
    outs, _ = _Interpreter(int8).run(closed.jaxpr, closed.consts, leaves + flat_args,
                                     [False] * (len(leaves) + len(flat_args)))
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), outs)


@dataclasses.dataclass(frozen=True)
class ResidentModel:
    """A model (anything with `apply(variables, *args, method=...)`, e.g. a Flax module) whose
    `apply` takes resident variables (`resident`, `load_resident`) and expands each weight inside the
    (jitted) call, where it is used (`resident_apply`).

    Every other attribute is the wrapped model's, so decoders that read `model.blank_id` or pass
    `method=model.encode` work unchanged; a decoder with loops runs its body through `run`
    (`models.decoding.run_decoder`). Hashable, so it serves as a static jit argument.
    `int8_matmuls`: run 2-D weight matmuls as int8 × int8 -> int32 (`int8_dot`) instead.
    """

    model: Any
    int8_matmuls: bool = False

    def apply(self, variables: Any, *args, **kwargs) -> Any:
        return resident_apply(lambda v, *a: self.model.apply(v, *a, **kwargs), variables, *args,
                              int8=self.int8_matmuls)

    def run(self, fn: Any, variables: Any, *args) -> Any:
        """`fn(model, float variables, *args)` evaluated with the resident `variables`: a whole
        decoder traced on the wrapped model, so a weight used inside its loops is expanded once,
        before the loop (`resident_apply`), where `apply` called in a loop body would expand it on
        every iteration. `args` are arrays (pytrees of them); bind static ones into `fn`."""
        return resident_apply(lambda v, *a: fn(self.model, v, *a), variables, *args, int8=self.int8_matmuls)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def resident_model(model: Any, int8_matmuls: bool = False) -> ResidentModel:
    """`model` taking resident variables (see `ResidentModel`)."""
    return ResidentModel(model, int8_matmuls)
