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
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.frontend import frame_mask
from models.transducer_parts import Transducer, make_transducer

_MASKED_SCORE = -1e30


def subsampled_lengths(lengths: jax.Array) -> jax.Array:
    """Frames left after two 3x3 stride-2 VALID convolutions: `((L - 1) // 2 - 1) // 2`."""
    return jnp.maximum(((lengths - 1) // 2 - 1) // 2, 0)


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
            x = nn.relu(nn.Conv(self.channels, (3, 3), strides=(2, 2), padding="VALID",
                                name=f"conv_{i}")(x))
        batch, frames, bins, channels = x.shape
        return nn.Dense(self.model_dim, name="output")(x.reshape(batch, frames, bins * channels))


def relative_position_encoding(num_frames: int, dim: int) -> jax.Array:
    """Sinusoids `[2T - 1, dim]` for relative distances `T-1, T-2, ..., -(T-1)` (row r: T-1-r).

    `pe[r, 2k] = sin(d / 10000^(2k/dim))`, `pe[r, 2k+1] = cos(...)` with `d = T - 1 - r`.
    """
    if dim % 2:
        raise ValueError(f"relative_position_encoding: dim must be even (sin/cos pairs), got {dim}")
    distance = jnp.arange(num_frames - 1, -num_frames, -1, dtype=jnp.float32)[:, None]
    inverse_freq = 10000.0 ** (-jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
    angle = distance * inverse_freq  # [2T-1, dim/2]
    return jnp.stack([jnp.sin(angle), jnp.cos(angle)], axis=-1).reshape(2 * num_frames - 1, dim)


def relative_shift(by_distance: jax.Array) -> jax.Array:
    """`[..., T, 2T - 1]` scores by relative-distance row -> `[..., T, T]` scores by key frame.

    `out[..., i, j] = x[..., i, T - 1 - (i - j)]` (row r of the encoding is distance T - 1 - r).
    With x flattened to `y` of length T (2T - 1), that is `y[(T - 1) + i (2T - 2) + j]`, so it is
    the flat array from offset T - 1, cut into rows of 2T - 2 and truncated to T columns (the
    Transformer-XL pad-and-reshape shift): slices and reshapes only, no gather, and its backward
    pads instead of scatter-adding.
    """
    *lead, frames, width = by_distance.shape
    if frames == 1:
        return by_distance
    flat = by_distance.reshape(*lead, frames * width)[..., frames - 1:frames - 1 + frames * (width - 1)]
    return flat.reshape(*lead, frames, width - 1)[..., :frames]


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


class RelativeMultiHeadAttention(nn.Module):
    """Multi-head self-attention with Transformer-XL relative positions (Dai et al., 2019).

    `score(i, j) = ((q_i + u) . k_j + (q_i + v) . W_pos pe(i - j)) / sqrt(d_head)` per head, with
    learnt biases `u`, `v` `[H, d_head]`.
    """

    num_heads: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, train: bool = False) -> jax.Array:
        """x `[B, T, D]`, mask `[B, T, T]` (True = may attend) -> `[B, T, D]`."""
        batch, num_frames, dim = x.shape
        if dim % self.num_heads:
            raise ValueError(f"RelativeMultiHeadAttention: model dim {dim} is not divisible by "
                             f"num_heads={self.num_heads}")
        head_dim = dim // self.num_heads
        heads = (self.num_heads, head_dim)
        query, key, value = (nn.DenseGeneral(heads, name=name)(x) for name in ("query", "key", "value"))
        position = nn.DenseGeneral(heads, use_bias=False, name="position")(
            relative_position_encoding(num_frames, dim))  # [2T-1, H, d]
        bias_u = self.param("pos_bias_u", nn.initializers.zeros, heads)
        bias_v = self.param("pos_bias_v", nn.initializers.zeros, heads)
        content = jnp.einsum("bihd,bjhd->bhij", query + bias_u, key)
        by_distance = jnp.einsum("bihd,rhd->bhir", query + bias_v, position)  # [B, H, T, 2T-1]
        positional = relative_shift(by_distance)  # [B, H, T, T]
        scores = (content + positional) / jnp.sqrt(head_dim)
        weights = jax.nn.softmax(jnp.where(mask[:, None], scores, _MASKED_SCORE), axis=-1)
        weights = nn.Dropout(self.dropout_rate)(weights, deterministic=not train)
        context = jnp.einsum("bhij,bjhd->bihd", weights, value)
        return nn.DenseGeneral(dim, axis=(-2, -1), name="output")(context)


class FeedForward(nn.Module):
    """`Dense(D) dropout swish Dense(mult * D) LN(x)` (read right to left)."""

    multiplier: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        dropout = nn.Dropout(self.dropout_rate, deterministic=not train)
        h = nn.swish(nn.Dense(self.multiplier * x.shape[-1], name="hidden")(nn.LayerNorm(name="norm")(x)))
        return dropout(nn.Dense(x.shape[-1], name="output")(dropout(h)))


class ConvolutionModule(nn.Module):
    """LN, pointwise conv + GLU, depthwise conv (kernel K), LN, swish, pointwise conv, dropout."""

    kernel_size: int
    causal: bool = False
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, valid: jax.Array, train: bool = False) -> jax.Array:
        """x `[B, T, D]`, valid `[B, T]` bool -> `[B, T, D]`; invalid frames are zeroed before the
        depthwise convolution so they cannot leak into valid ones."""
        dim = x.shape[-1]
        h = nn.glu(nn.Dense(2 * dim, name="pointwise_in")(nn.LayerNorm(name="norm")(x)))
        h = jnp.where(valid[..., None], h, 0.0)
        k = self.kernel_size
        padding = [(k - 1, 0)] if self.causal else [((k - 1) // 2, k // 2)]
        h = nn.Conv(dim, (k,), padding=padding, feature_group_count=dim, name="depthwise")(h)
        h = nn.swish(nn.LayerNorm(name="depthwise_norm")(h))
        h = nn.Dense(dim, name="pointwise_out")(h)
        return nn.Dropout(self.dropout_rate)(h, deterministic=not train)


class ConformerBlock(nn.Module):
    num_heads: int
    ff_multiplier: int
    conv_kernel_size: int
    causal_convolution: bool = False
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, valid: jax.Array, train: bool = False
                 ) -> jax.Array:
        """x `[B, T, D]`, attention mask `[B, T, T]`, valid frames `[B, T]` -> `[B, T, D]`."""
        x = x + 0.5 * FeedForward(self.ff_multiplier, self.dropout_rate, name="ff_start")(x, train)
        attention = RelativeMultiHeadAttention(self.num_heads, self.dropout_rate, name="attention")(
            nn.LayerNorm(name="attention_norm")(x), mask, train)
        x = x + nn.Dropout(self.dropout_rate)(attention, deterministic=not train)
        x = x + ConvolutionModule(self.conv_kernel_size, self.causal_convolution, self.dropout_rate,
                                  name="convolution")(x, valid, train)
        x = x + 0.5 * FeedForward(self.ff_multiplier, self.dropout_rate, name="ff_end")(x, train)
        return nn.LayerNorm(name="output_norm")(x)


class ConformerEncoder(nn.Module):
    """features `[B, T, F]` -> (`[B, T', model_dim]`, lengths), `T' = ((T - 1)//2 - 1)//2`.

    Padded output frames are zero.
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

    @nn.compact
    def __call__(self, features: jax.Array, lengths: jax.Array, train: bool = False
                 ) -> tuple[jax.Array, jax.Array]:
        if features.shape[1] < 7:
            raise ValueError(f"ConformerEncoder: needs at least 7 input frames for one output "
                             f"frame, got features of shape {features.shape}")
        x = Conv2dSubsampling(self.model_dim, self.subsampling_channels, name="subsampling")(features)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        lengths = subsampled_lengths(lengths)
        valid = frame_mask(lengths, x.shape[1])
        mask = attention_mask(lengths, x.shape[1], self.attention_chunk_size,
                              self.attention_left_chunks)
        for i in range(self.num_layers):
            x = ConformerBlock(self.num_heads, self.ff_multiplier, self.conv_kernel_size,
                               self.causal_convolution, self.dropout_rate, name=f"block_{i}")(
                                   x, mask, valid, train)
        return jnp.where(valid[..., None], x, 0.0), lengths


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
    predictor_embed_dim: int = 32,
    predictor_hidden_size: int = 64,
    predictor_layers: int = 1,
    joint_dim: int = 64,
    blank_id: int = 0,
    loss_chunk_size: int = 32,
    ctc_weight: float = 0.0,
) -> Transducer:
    """A Conformer transducer from flat sizes (the fields of a `config.model` ConfigDict)."""
    encoder = ConformerEncoder(encoder_layers, model_dim, num_heads, ff_multiplier, conv_kernel_size,
                               subsampling_channels, dropout_rate, attention_chunk_size,
                               attention_left_chunks, causal_convolution)
    return make_transducer(
        encoder, vocab_size, predictor_embed_dim=predictor_embed_dim, predictor_hidden_size=predictor_hidden_size,
        predictor_layers=predictor_layers, joint_dim=joint_dim, blank_id=blank_id,
        loss_chunk_size=loss_chunk_size, ctc_weight=ctc_weight)
