"""Conformer encoder (Gulati et al., 2020) for the transducer, with an optional streaming mask.

    features [B, T, F] -> Conv2dSubsampling (x4 in time) -> num_layers x ConformerBlock -> [B, T/4, D]

Each block is `x += FF(x)/2; x += MHSA(LN(x)); x += Conv(x); x += FF(x)/2; x = LN(x)` with
Transformer-XL relative positional attention. Differences from the paper, chosen so the parameters
stay a plain `params` pytree: the convolution module normalises with LayerNorm, not BatchNorm.

Streaming: with `attention_chunk_size = c`, frame `i` attends to frame `j` only if
`j // c <= i // c` (and `j // c >= i // c - attention_left_chunks` when that is set); with
`causal_convolution` the depthwise convolution sees past frames only. Together, encoder outputs in a
chunk do not depend on later chunks beyond the subsampling's look-ahead of 6 input frames.
Padded frames (index >= the utterance's length) never influence valid frames.

Such an encoder also runs chunk by chunk (`ConformerEncoder.stream`, driven by `models.streaming`):
each block remembers the attention keys and values of the frames before the chunk and its
depthwise convolution's last K - 1 inputs (`BlockMemory`), which is all a chunk reads of the past.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.dropout import Dropout
from models.frontend import frame_mask
from models.transducer_parts import Transducer, make_transducer

_MASKED_SCORE = -1e30


def subsampled_lengths(lengths: jax.Array) -> jax.Array:
    """Frames left after two 3x3 stride-2 VALID convolutions: `((L - 1) // 2 - 1) // 2`."""
    return jnp.maximum(((lengths - 1) // 2 - 1) // 2, 0)


class StridedConv2D(nn.Module):
    """A 3x3 stride-2 VALID convolution as one matmul over its patches:
    out[t, f] = Σ_{a, c} x[2t + a, 2f + c] · w[a, c] + b, x `[B, T, F, C_in]` -> `[B, (T - 3)//2 + 1,
    (F - 3)//2 + 1, C_out]`: the 9 strided slices x[a::2, c::2] stacked as patches `[..., 3, 3, C_in]`,
    contracted with the kernel over (a, c, C_in).

    Same parameters (`kernel` [3, 3, C_in, C_out], `bias` [C_out]), initialisation and outputs as
    `nn.Conv(C_out, (3, 3), strides=(2, 2), padding="VALID")`, whose convolution and its backward ran
    1.3-1.5x slower on XLA's CPU backend (the two convolutions of configs/conformer_synth_large.py's
    64-channel stem on [20, 310, 80] features: 268-271 against 183-210 ms forward+backward, best of
    10 in each of two rounds, on the 2-core machine shared with a training run).
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, x.shape[-1], self.features),
                            jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        rows, cols = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
        patches = jnp.stack([x[:, a:a + 2 * rows - 1:2, c:c + 2 * cols - 1:2]
                             for a in range(3) for c in range(3)], axis=-2)
        patches = patches.reshape(*patches.shape[:3], 3, 3, x.shape[-1])  # [B, T', F', 3, 3, C_in]
        # The kernel enters the contraction as it is, so weight-only QAT that intercepts products
        # with a parameter (Qwix) still finds it.
        return jax.lax.dot_general(patches, kernel, (((3, 4, 5), (0, 1, 2)), ((), ()))) + bias


class Conv2dSubsampling(nn.Module):
    """Two 3x3 stride-2 convolutions with ReLU over (time, frequency), then a linear map to D.

    Output frame `i` sees input frames `4i .. 4i + 6`, so it never reads past an utterance's end.
    """

    model_dim: int
    channels: int

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        """`[B, T, F] -> [B, ((T - 1)//2 - 1)//2, model_dim]`."""
        x = features[..., None]
        for i in range(2):
            x = nn.relu(StridedConv2D(self.channels, name=f"conv_{i}")(x))
        batch, frames, bins, channels = x.shape
        return nn.Dense(self.model_dim, name="output")(x.reshape(batch, frames, bins * channels))


def relative_position_encoding(num_frames: int, dim: int, num_memory: int = 0) -> jax.Array:
    """Sinusoids `[M + 2T - 1, dim]` for relative distances `M + T - 1, ..., -(T - 1)` (row r:
    M + T - 1 - r): every distance from T queries to M + T keys, the M frames before them and their own.

    `pe[r, 2k] = sin(d / 10000^(2k/dim))`, `pe[r, 2k+1] = cos(...)` with `d = M + T - 1 - r`.
    """
    if dim % 2:
        raise ValueError(f"relative_position_encoding: dim must be even (sin/cos pairs), got {dim}")
    distance = jnp.arange(num_memory + num_frames - 1, -num_frames, -1, dtype=jnp.float32)[:, None]
    inverse_freq = 10000.0 ** (-jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
    angle = distance * inverse_freq  # [M+2T-1, dim/2]
    return jnp.stack([jnp.sin(angle), jnp.cos(angle)], axis=-1).reshape(num_memory + 2 * num_frames - 1, dim)


def relative_shift(by_distance: jax.Array) -> jax.Array:
    """`[..., T, W]` scores by relative-distance row -> `[..., T, W - T + 1]` scores by key frame.

    With `W = M + 2T - 1` rows of `relative_position_encoding` (row r: distance M + T - 1 - r) and
    keys j = 0 .. M + T - 1 (query i at key position M + i, so at distance M + i - j):
    `out[..., i, j] = x[..., i, T - 1 - i + j]`. With x flattened to `y` of length T W, that is
    `y[(T - 1) + i (W - 1) + j]`, so it is the flat array from offset T - 1, cut into rows of W - 1
    and truncated to M + T columns (the Transformer-XL pad-and-reshape shift): slices and reshapes
    only, no gather, and its backward pads instead of scatter-adding. M = 0 is self-attention.
    """
    *lead, frames, width = by_distance.shape
    if frames == 1:
        return by_distance
    flat = by_distance.reshape(*lead, frames * width)[..., frames - 1:frames - 1 + frames * (width - 1)]
    return flat.reshape(*lead, frames, width - 1)[..., :width - frames + 1]


def attention_mask(lengths: jax.Array, num_frames: int, chunk_size: int | None = None,
                   left_chunks: int | None = None) -> jax.Array:
    """`[B, T, T]` bool, True where query `i` may attend key `j`: `j` valid and, when chunked,
    `i//c - left_chunks <= j//c <= i//c`."""
    allowed = frame_mask(lengths, num_frames)[:, None, :]
    if chunk_size is None:
        return jnp.broadcast_to(allowed, (lengths.shape[0], num_frames, num_frames))
    chunk = jnp.arange(num_frames) // chunk_size
    in_window = chunk[None, :] <= chunk[:, None]
    if left_chunks is not None:
        in_window &= chunk[None, :] >= chunk[:, None] - left_chunks
    return allowed & in_window[None]


class KeyValue(NamedTuple):
    """Attention keys and values of some frames, `[B, T, heads, head_dim]` each."""

    key: jax.Array
    value: jax.Array


class RelativeMultiHeadAttention(nn.Module):
    """Multi-head self-attention with Transformer-XL relative positions (Dai et al., 2019).

    `score(i, j) = ((q_i + u) . k_j + (q_i + v) . W_pos pe(i - j)) / sqrt(d_head)` per head, with
    learnt biases `u`, `v` `[H, d_head]`.
    """

    num_heads: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, train: bool = False,
                 memory: KeyValue | None = None) -> tuple[jax.Array, KeyValue]:
        """x `[B, T, D]`, mask `[B, T, M + T]` (True = may attend) -> (`[B, T, D]`, x's own keys and
        values `[B, T, H, d]`).

        `memory`: the keys and values `[B, M, H, d]` of the M frames just before x (streaming), the
        first M keys of the mask; None: M = 0, self-attention over x alone.
        """
        batch, num_frames, dim = x.shape
        if dim % self.num_heads:
            raise ValueError(f"RelativeMultiHeadAttention: model dim {dim} is not divisible by "
                             f"num_heads={self.num_heads}")
        head_dim = dim // self.num_heads
        heads = (self.num_heads, head_dim)
        query, key, value = (nn.DenseGeneral(heads, name=name)(x) for name in ("query", "key", "value"))
        own = KeyValue(key, value)
        if memory is not None:
            key, value = (jnp.concatenate(pair, axis=1) for pair in zip(memory, own))
        position = nn.DenseGeneral(heads, use_bias=False, name="position")(
            relative_position_encoding(num_frames, dim, key.shape[1] - num_frames))  # [M+2T-1, H, d]
        bias_u = self.param("pos_bias_u", nn.initializers.zeros, heads)
        bias_v = self.param("pos_bias_v", nn.initializers.zeros, heads)
        content = jnp.einsum("bihd,bjhd->bhij", query + bias_u, key)
        by_distance = jnp.einsum("bihd,rhd->bhir", query + bias_v, position)  # [B, H, T, M+2T-1]
        positional = relative_shift(by_distance)  # [B, H, T, M+T]
        scores = (content + positional) / jnp.sqrt(head_dim)
        weights = jax.nn.softmax(jnp.where(mask[:, None], scores, _MASKED_SCORE), axis=-1)
        weights = Dropout(self.dropout_rate)(weights, deterministic=not train)
        context = jnp.einsum("bhij,bjhd->bihd", weights, value)
        return nn.DenseGeneral(dim, axis=(-2, -1), name="output")(context), own


class FeedForward(nn.Module):
    """`Dense(D) dropout swish Dense(mult * D) LN(x)` (read right to left)."""

    multiplier: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        dropout = Dropout(self.dropout_rate)
        h = nn.swish(nn.Dense(self.multiplier * x.shape[-1], name="hidden")(nn.LayerNorm(name="norm")(x)))
        return dropout(nn.Dense(x.shape[-1], name="output")(dropout(h, not train)), not train)


class DepthwiseConv1D(nn.Module):
    """A depthwise convolution over time as K shifted multiply-adds: out[t] = Σ_k x[t + k] w[k] + b
    on `x` padded by `padding` = (before, after) frames, x `[B, T, D]` -> `[B, T + before + after - K
    + 1, D]`.

    Same parameters (`kernel` [K, 1, D], `bias` [D]), initialisation and outputs as
    `nn.Conv(D, (K,), feature_group_count=D)`, whose grouped convolution XLA's CPU backend ran 2-3x
    slower forward+backward (57-79 ms against 26 ms for [20, 77, 128], K = 15, in a one-off
    measurement on a loaded 2-core machine; `benchmarks/train_step.py` times whole encoders).
    """

    kernel_size: int
    padding: tuple[int, int]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, dim = self.kernel_size, x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, 1, dim), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (dim,), jnp.float32)
        x = jnp.pad(x, ((0, 0), self.padding, (0, 0)))
        frames = x.shape[1] - k + 1
        return sum(x[:, i:i + frames] * kernel[i, 0] for i in range(k)) + bias


class ConvolutionModule(nn.Module):
    """LN, pointwise conv + GLU, depthwise conv (kernel K), LN, swish, pointwise conv, dropout."""

    kernel_size: int
    causal: bool = False
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, valid: jax.Array, train: bool = False,
                 history: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """x `[B, T, D]`, valid `[B, T]` bool -> (`[B, T, D]`, the depthwise convolution's input
        `[B, T, D]`); invalid frames are zeroed before the depthwise convolution so they cannot leak
        into valid ones.

        `history`: the depthwise convolution's input over the K - 1 frames before x (streaming, causal
        only); None: zeros before x (causal) or around it.
        """
        dim = x.shape[-1]
        h = nn.glu(nn.Dense(2 * dim, name="pointwise_in")(nn.LayerNorm(name="norm")(x)))
        h = jnp.where(valid[..., None], h, 0.0)
        k = self.kernel_size
        padding = (k - 1, 0) if self.causal else ((k - 1) // 2, k // 2)
        inputs = h
        if history is not None:
            if not self.causal:
                raise ValueError("ConvolutionModule: a history of past inputs needs causal=True")
            padding, inputs = (0, 0), jnp.concatenate([history, h], axis=1)
        out = DepthwiseConv1D(k, padding, name="depthwise")(inputs)
        out = nn.swish(nn.LayerNorm(name="depthwise_norm")(out))
        out = nn.Dense(dim, name="pointwise_out")(out)
        return Dropout(self.dropout_rate)(out, deterministic=not train), h


class BlockMemory(NamedTuple):
    """What a block reads of the frames before a chunk: the attention keys and values of M frames
    (`KeyValue`, `[B, M, H, d]`) and the depthwise convolution's input over K - 1 (`[B, K - 1, D]`)."""

    attention: KeyValue
    convolution: jax.Array


class ConformerBlock(nn.Module):
    num_heads: int
    ff_multiplier: int
    conv_kernel_size: int
    causal_convolution: bool = False
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, valid: jax.Array, train: bool = False,
                 memory: BlockMemory | None = None) -> tuple[jax.Array, BlockMemory]:
        """x `[B, T, D]`, attention mask `[B, T, M + T]`, valid frames `[B, T]` -> (`[B, T, D]`, x's
        own entries: keys and values `[B, T, H, d]`, convolution input `[B, T, D]`).

        `memory`: the entries of the frames before x (streaming); None: M = 0, x alone.
        """
        x = x + 0.5 * FeedForward(self.ff_multiplier, self.dropout_rate, name="ff_start")(x, train)
        attention, keys_values = RelativeMultiHeadAttention(self.num_heads, self.dropout_rate, name="attention")(
            nn.LayerNorm(name="attention_norm")(x), mask, train, None if memory is None else memory.attention)
        x = x + Dropout(self.dropout_rate)(attention, deterministic=not train)
        convolution, conv_inputs = ConvolutionModule(
            self.conv_kernel_size, self.causal_convolution, self.dropout_rate, name="convolution")(
                x, valid, train, None if memory is None else memory.convolution)
        x = x + convolution
        x = x + 0.5 * FeedForward(self.ff_multiplier, self.dropout_rate, name="ff_end")(x, train)
        return nn.LayerNorm(name="output_norm")(x), BlockMemory(keys_values, conv_inputs)


class ConformerMemory(NamedTuple):
    """A streamed encoder's memory before its next chunk: per block the entries of the last M frames
    (`BlockMemory`), and `frames [B]`, how many frames came before (slots `s < M - frames` are empty)."""

    blocks: tuple[BlockMemory, ...]
    frames: jax.Array


class ConformerEncoder(nn.Module):
    """features `[B, T, F]` -> (`[B, T', model_dim]`, lengths), `T' = ((T - 1)//2 - 1)//2`.

    Padded output frames are zero. With a chunked mask and a causal convolution it also streams:
    `stream_window`, `initial_stream_state` and `stream` (the interface `models.streaming` drives).
    """

    num_layers: int = 2
    model_dim: int = 64
    num_heads: int = 4
    ff_multiplier: int = 4
    conv_kernel_size: int = 15
    subsampling_channels: int = 64
    dropout_rate: float = 0.0
    attention_chunk_size: int | None = None
    attention_left_chunks: int | None = None
    causal_convolution: bool = False

    def setup(self):
        self.subsampling = Conv2dSubsampling(self.model_dim, self.subsampling_channels)
        self.dropout = Dropout(self.dropout_rate, name="Dropout_0")  # its name in the compact form: same masks
        self.blocks = [ConformerBlock(self.num_heads, self.ff_multiplier, self.conv_kernel_size,
                                      self.causal_convolution, self.dropout_rate, name=f"block_{i}")
                       for i in range(self.num_layers)]

    def __call__(self, features: jax.Array, lengths: jax.Array, train: bool = False
                 ) -> tuple[jax.Array, jax.Array]:
        if features.shape[1] < 7:
            raise ValueError(f"ConformerEncoder: needs at least 7 input frames for one output "
                             f"frame, got features of shape {features.shape}")
        x = self.dropout(self.subsampling(features), deterministic=not train)
        lengths = subsampled_lengths(lengths)
        valid = frame_mask(lengths, x.shape[1])
        mask = attention_mask(lengths, x.shape[1], self.attention_chunk_size,
                              self.attention_left_chunks)
        for block in self.blocks:
            x, _ = block(x, mask, valid, train)
        return jnp.where(valid[..., None], x, 0.0), lengths

    def stream_window(self) -> tuple[int, int]:
        """(input frames a chunk reads, input frames from one chunk to the next) = (4c + 3, 4c):
        attention chunk k's c output frames read input frames 4kc .. 4kc + 4c + 2 and nothing later.

        Raises ValueError unless `attention_chunk_size` is set and `causal_convolution` is True.
        """
        if self.attention_chunk_size is None:
            raise ValueError("a streamed Conformer needs a chunked attention mask: set "
                             "model.attention_chunk_size (output frames per chunk), got None")
        if not self.causal_convolution:
            raise ValueError("a streamed Conformer needs model.causal_convolution=True (the "
                             "depthwise convolution must not read later frames), got False")
        return 4 * self.attention_chunk_size + 3, 4 * self.attention_chunk_size

    def initial_stream_state(self, batch_size: int, max_frames: int) -> ConformerMemory:
        """The empty memory before the first chunk: of M = c · attention_left_chunks frames, or, with
        unlimited left context, of the chunks of `max_frames` input frames (older ones are forgotten)."""
        stride = self.stream_window()[1]
        chunks = -(-max_frames // stride) if self.attention_left_chunks is None else self.attention_left_chunks
        keys = jnp.zeros((batch_size, stride // 4 * chunks, self.num_heads, self.model_dim // self.num_heads))
        history = jnp.zeros((batch_size, self.conv_kernel_size - 1, self.model_dim))
        return ConformerMemory(tuple(BlockMemory(KeyValue(keys, keys), history) for _ in range(self.num_layers)),
                               jnp.zeros((batch_size,), jnp.int32))

    def stream(self, features: jax.Array, lengths: jax.Array, memory: ConformerMemory
               ) -> tuple[jax.Array, jax.Array, ConformerMemory]:
        """One attention chunk: features `[B, 4c + 3, F]` (the first `lengths [B]` valid) -> (its c
        output frames `[B, c, D]`, valid ones `[B]`, the memory moved on by them).

        Its frames attend to each other and to the remembered frames, as the chunked mask allows,
        and the convolution continues from the remembered inputs, so a chunk equals the same frames
        of `__call__` over the whole utterance (a last, partial chunk: its first `lengths` frames).
        """
        x = self.subsampling(features)
        lengths = subsampled_lengths(lengths)
        valid = frame_mask(lengths, x.shape[1])
        slots = memory.blocks[0].attention.key.shape[1]
        remembered = jnp.arange(slots)[None, :] >= slots - memory.frames[:, None]
        keys = jnp.concatenate([remembered, valid], axis=1)[:, None, :]
        mask = jnp.broadcast_to(keys, (x.shape[0], x.shape[1], keys.shape[2]))
        moved = []
        for block, past in zip(self.blocks, memory.blocks):
            x, own = block(x, mask, valid, memory=past)
            moved.append(jax.tree_util.tree_map(
                lambda old, new: jnp.concatenate([old, new], axis=1)[:, new.shape[1]:], past, own))
        return jnp.where(valid[..., None], x, 0.0), lengths, ConformerMemory(tuple(moved), memory.frames + lengths)


def make_conformer(
    vocab_size: int,
    *,
    encoder_layers: int = 2,
    model_dim: int = 64,
    num_heads: int = 4,
    ff_multiplier: int = 4,
    conv_kernel_size: int = 15,
    subsampling_channels: int = 64,
    dropout_rate: float = 0.0,
    attention_chunk_size: int | None = None,
    attention_left_chunks: int | None = None,
    causal_convolution: bool = False,
    **head: Any,
) -> Transducer:
    """A Conformer transducer from flat sizes (the fields of a `config.model` ConfigDict): the
    encoder's here, the prediction and joint networks' (`head`) those of `make_transducer`."""
    encoder = ConformerEncoder(encoder_layers, model_dim, num_heads, ff_multiplier, conv_kernel_size,
                               subsampling_channels, dropout_rate, attention_chunk_size,
                               attention_left_chunks, causal_convolution)
    return make_transducer(encoder, vocab_size, **head)
