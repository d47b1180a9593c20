"""Streaming greedy decoding: audio in chunks, state carried between them, the full-utterance tokens.

    decoder = streaming.greedy(model, variables, stats, chunk_samples=1600)   # 0.1 s chunks
    state = decoder.init()
    for chunk in chunks:                        # float32 [<= chunk_samples] each, 16 kHz
        state = decoder.step(state, chunk)      # jit-compiled once, for chunk_samples
    state = decoder.finish(state)               # the tail
    streaming.token_ids(state)                  # == decoding.greedy_decode of the whole utterance

Batch size 1. Each stage keeps what it has not consumed yet in a fixed-capacity `Queue` and
consumes it in complete windows (`cut_windows`), so every shape is fixed by `chunk_samples`:

  samples -> frames   every complete 400-sample window every 160 samples (the framing of
                      `frontend.log_mel_spectrogram`), log-mel, normalised by corpus statistics
                      (`frontend.normalize_global`, frame by frame; per-utterance normalisation
                      reads the whole utterance and is refused);
  frames -> encoder   every complete window of the encoder's `stream_window()` (an LSTM encoder's
                      s·r frames; a Conformer's 4c + 3 frames of one attention chunk, every 4c)
                      through `encoder.stream`, carrying its state: the LSTM states of every
                      layer, or every block's keys, values and convolution inputs of past frames;
  encoder -> tokens   `decoding.greedy_frame` on each encoder frame, carrying the prediction after
                      the last token.

`finish` encodes the frames left as a last, partial window (zero-padded, as the whole-utterance
encoder pads) and drops the samples left (fewer than one window: the whole-utterance front end has
no frame for them either). Each stage computes what the whole-utterance computation does for the
same frames, so the tokens are `decoding.greedy_decode`'s over the whole utterance, and features and
encoder frames equal its to float rounding (tests/test_streaming.py). `model` may be
`gq_jax.runtime.resident_model(model)`, with resident packed `variables`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from models import decoding, frontend
from models.transducer_parts import Transducer

FRAME_SAMPLES, HOP_SAMPLES = 400, 160  # frontend.log_mel_spectrogram's framing at 16 kHz
FRAMES_PER_SECOND = 100


class Queue(NamedTuple):
    """Items not consumed yet: `items[:count]` of a fixed-capacity buffer `[capacity, ...]`, zeros
    after them."""

    items: jax.Array
    count: jax.Array  # [] int32


def empty_queue(capacity: int, item_shape: tuple[int, ...] = ()) -> Queue:
    """A queue of float32 items of `item_shape` holding nothing."""
    return Queue(jnp.zeros((capacity, *item_shape), jnp.float32), jnp.zeros((), jnp.int32))


def _rows(mask: jax.Array, like: jax.Array) -> jax.Array:
    """`mask [N]` broadcastable against `like [N, ...]`."""
    return mask.reshape((-1,) + (1,) * (like.ndim - 1))


def cut_windows(queue: Queue, items: jax.Array, count: jax.Array, window: int, stride: int
                ) -> tuple[jax.Array, jax.Array, Queue]:
    """Append `items[:count]` (`items [N, ...]`) to the queue, cut every complete window, keep the rest.

    With x the queue's items followed by the new ones (n = queue.count + count), window w is
    `x[stride·w : stride·w + window]`, complete when `stride·w + window <= n`. The queue's capacity
    must be `window - 1`, all that can be left.

    Returns:
      windows `[W, window, ...]`, W = (window - 1 + N - window) // stride + 1 (the most there can
      be; those past the complete ones are junk), the number complete, and the queue of
      `x[stride · complete:]`.
    """
    capacity, size = queue.items.shape[0], items.shape[0]
    if capacity != window - 1:
        raise ValueError(f"cut_windows: a queue for windows of {window} needs capacity {window - 1}, "
                         f"got {capacity}")
    new = jnp.where(_rows(jnp.arange(size) < count, items), items, 0.0)
    x = jax.lax.dynamic_update_slice_in_dim(jnp.concatenate([queue.items, jnp.zeros_like(items)]), new,
                                            queue.count, axis=0)
    total = queue.count + count
    complete = jnp.where(total >= window, (total - window) // stride + 1, 0)
    starts = stride * np.arange((capacity + size - window) // stride + 1)
    windows = x[starts[:, None] + np.arange(window)[None, :]]
    padded = jnp.concatenate([x, jnp.zeros((stride,) + x.shape[1:], x.dtype)])
    rest = jax.lax.dynamic_slice_in_dim(padded, stride * complete, capacity, axis=0)
    left = total - stride * complete
    return windows, complete, Queue(jnp.where(_rows(jnp.arange(capacity) < left, rest), rest, 0.0), left)


def audio_to_frames(samples: Queue, chunk: jax.Array, count: jax.Array, stats: frontend.FeatureStats
                    ) -> tuple[jax.Array, jax.Array, Queue]:
    """Audio `chunk[:count]` after the `samples` left -> (normalised log-mel frames `[W, F]` of its
    complete windows, how many, the samples left); `F` = the bins of `stats`."""
    windows, complete, samples = cut_windows(samples, chunk, count, FRAME_SAMPLES, HOP_SAMPLES)
    mel, _ = frontend.log_mel_spectrogram(windows, jnp.full(windows.shape[:1], FRAME_SAMPLES),
                                          num_mel_bins=stats.total.shape[-1])  # [W, 1, F]
    return frontend.normalize_global(mel[:, 0][None], complete[None], stats)[0], complete, samples


def _encode_window(module: Transducer, features: jax.Array, lengths: jax.Array, state: Any
                   ) -> tuple[jax.Array, jax.Array, Any]:
    """(bound to a transducer) `encoder.stream` of one window, projected into the joint space."""
    out, lengths, state = module.encoder.stream(features, lengths, state)
    return module.joint.project_encoder(out), lengths, state


def frames_to_encoder(model: Transducer, variables, frames_left: Queue, frames: jax.Array, count: jax.Array,
                      encoder_state: Any) -> tuple[jax.Array, jax.Array, Queue, Any]:
    """Feature `frames[:count]` (`[N, F]`) after the frames left -> (encoder frames in joint space
    `[E, J]` of every complete window, how many are valid (the first ones), the frames left, the
    encoder state after the complete windows)."""
    window, stride = model.encoder.stream_window()
    windows, complete, frames_left = cut_windows(frames_left, frames, count, window, stride)
    full = jnp.full((1,), window, jnp.int32)

    def one(state, inputs):
        features, index = inputs
        enc, _, new = model.apply(variables, features[None], full, state, method=_encode_window)
        return jax.tree_util.tree_map(lambda n, o: jnp.where(index < complete, n, o), new, state), enc[0]

    encoder_state, enc = jax.lax.scan(one, encoder_state, (windows, jnp.arange(windows.shape[0])))
    return enc.reshape(-1, enc.shape[-1]), complete * enc.shape[1], frames_left, encoder_state


def encoder_tail(model: Transducer, variables, frames_left: Queue, encoder_state: Any
                 ) -> tuple[jax.Array, jax.Array]:
    """The frames left as a last, partial window -> (its encoder frames `[E, J]`, how many valid)."""
    features = jnp.concatenate([frames_left.items, jnp.zeros_like(frames_left.items[:1])])[None]
    enc, lengths, _ = model.apply(variables, features, frames_left.count[None], encoder_state,
                                  method=_encode_window)
    return enc[0], lengths[0]


def greedy_frames(model: Transducer, variables, search: decoding.GreedyState, enc: jax.Array,
                  count: jax.Array, max_symbols_per_frame: int) -> decoding.GreedyState:
    """`decoding.greedy_frame` on the first `count` encoder frames of `enc [E, J]` (batch 1)."""
    def one(search, inputs):
        enc_t, t = inputs
        return decoding.greedy_frame(model, variables, search, enc_t[None], (t < count)[None],
                                     max_symbols_per_frame), None

    search, _ = jax.lax.scan(one, search, (enc, jnp.arange(enc.shape[0])))
    return search


class StreamState(NamedTuple):
    """All an utterance carries from one chunk to the next (a pytree; batch size 1)."""

    samples: Queue  # [399] audio samples after the last complete window
    frames: Queue  # [window - 1, F] normalised feature frames after the last encoded window
    encoder: Any  # `encoder.initial_stream_state`'s structure: LSTM states, or a ConformerMemory
    search: decoding.GreedyState  # the tokens so far and the prediction after the last


class StreamingDecoder(NamedTuple):
    """`init() -> state`, `step(state, audio [<= chunk_samples]) -> state`, `finish(state) -> state`."""

    init: Callable[[], StreamState]
    step: Callable[[StreamState, jax.Array], StreamState]
    finish: Callable[[StreamState], StreamState]
    chunk_samples: int


def greedy(model: Transducer, variables, stats: frontend.FeatureStats | None, *, chunk_samples: int,
           max_symbols_per_frame: int = 3, max_seconds: float = 60.0) -> StreamingDecoder:
    """A streaming greedy decoder of `model` (see the module docstring).

    Args:
      stats: the corpus statistics the model's features were normalised with
        (`data.feature_normalization = "global"`); None (per-utterance normalisation) is refused.
      chunk_samples: the most samples a `step` takes (16 kHz); shorter chunks are padded to it
        and counted exactly, so any chunk size works, aligned to the frame rate or not.
      max_seconds: the state's room: tokens for that much audio, and for a Conformer with unlimited
        left context (`attention_left_chunks = None`) the frames its attention remembers (older ones
        are forgotten, so longer utterances are no longer the whole-utterance decode).
    Raises:
      ValueError for per-utterance features, a bad `chunk_samples`, or an encoder that does not
      stream (a Conformer without `attention_chunk_size` or `causal_convolution`).
    """
    if stats is None:
        raise ValueError("streaming needs features normalised frame by frame: per-utterance "
                         "normalisation reads the whole utterance. Train with "
                         "data.feature_normalization='global' and pass its FeatureStats")
    if chunk_samples < 1:
        raise ValueError(f"chunk_samples must be >= 1, got {chunk_samples}")
    decoding._check_max_symbols(max_symbols_per_frame)
    window, _ = model.encoder.stream_window()
    max_frames = int(np.ceil(max_seconds * FRAMES_PER_SECOND))

    @jax.jit
    def init(variables) -> StreamState:
        return StreamState(empty_queue(FRAME_SAMPLES - 1), empty_queue(window - 1, stats.total.shape),
                           model.encoder.initial_stream_state(1, max_frames),
                           decoding.greedy_start(model, variables, 1, max_symbols_per_frame * max_frames))

    def step_body(model, variables, stats, state: StreamState, chunk: jax.Array, count: jax.Array) -> StreamState:
        frames, num_frames, samples = audio_to_frames(state.samples, chunk, count, stats)
        enc, num_enc, frames_left, encoder = frames_to_encoder(model, variables, state.frames, frames,
                                                               num_frames, state.encoder)
        search = greedy_frames(model, variables, state.search, enc, num_enc, max_symbols_per_frame)
        return StreamState(samples, frames_left, encoder, search)

    def finish_body(model, variables, state: StreamState) -> StreamState:
        enc, num_enc = encoder_tail(model, variables, state.frames, state.encoder)
        search = greedy_frames(model, variables, state.search, enc, num_enc, max_symbols_per_frame)
        return state._replace(samples=empty_queue(FRAME_SAMPLES - 1),
                              frames=empty_queue(window - 1, stats.total.shape), search=search)

    step = jax.jit(lambda *args: decoding.run_decoder(model, step_body, *args))
    finish = jax.jit(lambda *args: decoding.run_decoder(model, finish_body, *args))

    def padded_step(state: StreamState, chunk: jax.Array) -> StreamState:
        chunk = jnp.asarray(chunk, jnp.float32)
        if chunk.ndim != 1 or chunk.shape[0] > chunk_samples:
            raise ValueError(f"a chunk is audio [<= {chunk_samples}] (chunk_samples), got shape {chunk.shape}")
        return step(variables, stats, state, jnp.pad(chunk, (0, chunk_samples - chunk.shape[0])),
                    jnp.int32(chunk.shape[0]))

    return StreamingDecoder(lambda: init(variables), padded_step, lambda state: finish(variables, state),
                            chunk_samples)


def token_ids(state: StreamState) -> list[int]:
    """The tokens a (finished) stream has emitted."""
    tokens, count = jax.device_get((state.search.tokens[0], state.search.num_tokens[0]))
    return tokens[:count].tolist()


def decode(decoder: StreamingDecoder, audio: np.ndarray) -> list[int]:
    """The tokens of one utterance `audio [N]` fed to `decoder` chunk by chunk, then finished."""
    state = decoder.init()
    for start in range(0, len(audio), decoder.chunk_samples):
        state = decoder.step(state, audio[start:start + decoder.chunk_samples])
    return token_ids(decoder.finish(state))
