"""RNN-T: a unidirectional LSTM encoder with frame stacking and time reduction (He et al., 2019).

The encoder concatenates every `frame_stack` consecutive feature frames (stride `frame_stack`),
runs `num_layers` LSTM layers, and after layer `time_reduction_layer` concatenates every
`time_reduction_factor` consecutive outputs, so the output rate is the input rate divided by
`frame_stack * time_reduction_factor`. An output frame reads only its own `frame_stack *
time_reduction_factor` input frames and the LSTM states before them, so the encoder streams
(`LSTMEncoder.stream`). Parameter paths: `encoder/lstm_{i}/{input_kernel,recurrent_kernel,bias}`.
`make_rnnt` joins it with the shared prediction and joint networks.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.dropout import Dropout
from models.frontend import frame_mask
from models.transducer_parts import LSTMLayer, LSTMState, Transducer, make_transducer


def stack_frames(x: jax.Array, lengths: jax.Array, factor: int) -> tuple[jax.Array, jax.Array]:
    """Concatenate every `factor` consecutive frames: `[B, T, D] -> [B, ceil(T/f), f*D]`.

    Output frame `s` is `[x_{fs}, ..., x_{fs+f-1}]`; frames at or past `lengths` are zeroed first, so
    an utterance's output does not depend on its padding. New lengths: `ceil(lengths / f)`.
    """
    if factor < 1:
        raise ValueError(f"stack_frames: factor must be >= 1, got {factor}")
    batch, num_frames, dim = x.shape
    x = jnp.where(frame_mask(lengths, num_frames)[..., None], x, 0.0)
    padded_frames = -(-num_frames // factor) * factor
    x = jnp.pad(x, ((0, 0), (0, padded_frames - num_frames), (0, 0)))
    return x.reshape(batch, padded_frames // factor, factor * dim), -(-lengths // factor)


class LSTMEncoder(nn.Module):
    """features `[B, T, F]` -> (`[B, T', hidden_size]`, lengths), `T' = ceil(ceil(T/s)/r)`.

    Streams by `stream_window`, `initial_stream_state` and `stream` (what `models.streaming` drives).
    """

    num_layers: int = 2
    hidden_size: int = 64
    frame_stack: int = 1
    time_reduction_layer: int | None = None
    time_reduction_factor: int = 2
    dropout_rate: float = 0.0
    fused_backward: bool = True  # LSTMLayer.fused_backward

    def setup(self):
        if self.time_reduction_layer is not None and not 0 <= self.time_reduction_layer < self.num_layers:
            raise ValueError(
                f"LSTMEncoder: time_reduction_layer must be None or in [0, num_layers="
                f"{self.num_layers}), got {self.time_reduction_layer}")
        self.lstm = [LSTMLayer(self.hidden_size, self.fused_backward, name=f"lstm_{i}")
                     for i in range(self.num_layers)]
        self.dropout = Dropout(self.dropout_rate)

    def __call__(self, features: jax.Array, lengths: jax.Array, train: bool = False
                 ) -> tuple[jax.Array, jax.Array]:
        x, lengths, _ = self.stream(features, lengths, None, train)
        return x, lengths

    def stream_window(self) -> tuple[int, int]:
        """(input frames of one output frame, input frames from one to the next) = (s·r, s·r);
        r = 1 without time reduction."""
        frames = self.frame_stack * (1 if self.time_reduction_layer is None else self.time_reduction_factor)
        return frames, frames

    def initial_stream_state(self, batch_size: int, max_frames: int) -> tuple[LSTMState, ...]:
        """Zero states of every layer, `[batch_size, hidden_size]` each (`max_frames`: unused, the
        state does not grow)."""
        zeros = jnp.zeros((batch_size, self.hidden_size), jnp.float32)
        return tuple(LSTMState(zeros, zeros) for _ in range(self.num_layers))

    def stream(self, features: jax.Array, lengths: jax.Array, state: tuple[LSTMState, ...] | None,
               train: bool = False) -> tuple[jax.Array, jax.Array, tuple[LSTMState, ...]]:
        """`__call__` continuing from every layer's LSTM state `state` (None: zeros), also returning
        the states after the last frame: chunk after chunk of `stream_window` frames, it computes
        the frames of one call over them all (a last, partial chunk: zero-padded as `__call__` pads)."""
        x, lengths = stack_frames(features, lengths, self.frame_stack)
        states = []
        for i, layer in enumerate(self.lstm):
            x, layer_state = layer(x, None if state is None else state[i])
            states.append(layer_state)
            x = self.dropout(x, deterministic=not train)
            if i == self.time_reduction_layer:
                x, lengths = stack_frames(x, lengths, self.time_reduction_factor)
        return x, lengths, tuple(states)


def make_rnnt(
    vocab_size: int,
    *,
    encoder_layers: int = 2,
    encoder_hidden_size: int = 64,
    frame_stack: int = 1,
    time_reduction_layer: int | None = None,
    time_reduction_factor: int = 2,
    dropout_rate: float = 0.0,
    **head: Any,
) -> Transducer:
    """An RNN-T transducer from flat sizes (the fields of a `config.model` ConfigDict): the
    encoder's here, the prediction and joint networks' (`head`) those of `make_transducer`."""
    encoder = LSTMEncoder(encoder_layers, encoder_hidden_size, frame_stack, time_reduction_layer,
                          time_reduction_factor, dropout_rate)
    return make_transducer(encoder, vocab_size, **head)
