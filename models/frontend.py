"""Speech front end in JAX: log-mel features, normalisation and SpecAugment.

The pipeline a training step runs on padded audio `[B, N]` (16 kHz, values in [-1, 1]) is

    features, lengths = log_mel_spectrogram(audio, audio_lengths)      # [B, T, 80]
    features = normalize_per_utterance(features, lengths)               # or normalize_global
    features = spec_augment(key, features, lengths)                     # training only

Frames are 25 ms long every 10 ms without centring, so an utterance of `n` samples has
`1 + (n - 400) // 160` frames (0 when it is shorter than one window). Padded frames (index >= the
utterance's length) are zero after normalisation, the value masks also use.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def hz_to_mel(frequency_hz: jax.typing.ArrayLike) -> jax.Array:
    """HTK mel scale: `mel = 2595 * log10(1 + f / 700)`."""
    return 2595.0 * jnp.log10(1.0 + jnp.asarray(frequency_hz, jnp.float32) / 700.0)


def mel_to_hz(mel: jax.typing.ArrayLike) -> jax.Array:
    """Inverse of `hz_to_mel`: `f = 700 * (10^(mel / 2595) - 1)`."""
    return 700.0 * (10.0 ** (jnp.asarray(mel, jnp.float32) / 2595.0) - 1.0)


def mel_filterbank(
    num_mel_bins: int = 80,
    fft_size: int = 512,
    sample_rate_hz: int = 16000,
    lower_hz: float = 20.0,
    upper_hz: float | None = None,
) -> jax.Array:
    """Triangular mel filters as a matrix `[fft_size // 2 + 1, num_mel_bins]`.

    Filter `j` rises linearly *in mel* from edge `m_j` to its centre `m_{j+1}` and falls to `m_{j+2}`,
    where `m_0 < ... < m_{num_mel_bins + 1}` are equally spaced between `hz_to_mel(lower_hz)` and
    `hz_to_mel(upper_hz)` (Kaldi and `tf.signal.linear_to_mel_weight_matrix` use the same shape).
    FFT bin `k` sits at `k * sample_rate_hz / fft_size` Hz.
    """
    upper_hz = sample_rate_hz / 2 if upper_hz is None else upper_hz
    if not 0.0 <= lower_hz < upper_hz <= sample_rate_hz / 2:
        raise ValueError(
            f"mel_filterbank: need 0 <= lower_hz < upper_hz <= sample_rate_hz / 2, got lower_hz="
            f"{lower_hz}, upper_hz={upper_hz}, sample_rate_hz={sample_rate_hz}")
    bin_mel = hz_to_mel(jnp.arange(fft_size // 2 + 1) * sample_rate_hz / fft_size)  # [K]
    edges = jnp.linspace(hz_to_mel(lower_hz), hz_to_mel(upper_hz), num_mel_bins + 2)
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]  # [M] each
    rising = (bin_mel[:, None] - left) / (centre - left)
    falling = (right - bin_mel[:, None]) / (right - centre)
    return jnp.maximum(0.0, jnp.minimum(rising, falling))


def num_frames(num_samples: jax.typing.ArrayLike, frame_length: int, hop_length: int) -> jax.Array:
    """Frames in `num_samples` samples without centring: `max(0, 1 + (n - frame_length) // hop)`."""
    n = jnp.asarray(num_samples, jnp.int32)
    return jnp.where(n >= frame_length, 1 + (n - frame_length) // hop_length, 0)


@functools.partial(
    jax.jit,
    static_argnames=("sample_rate_hz", "num_mel_bins", "window_s", "hop_s", "lower_hz", "upper_hz",
                     "log_floor"))
def log_mel_spectrogram(
    audio: jax.Array,
    audio_lengths: jax.Array,
    *,
    sample_rate_hz: int = 16000,
    num_mel_bins: int = 80,
    window_s: float = 0.025,
    hop_s: float = 0.010,
    lower_hz: float = 20.0,
    upper_hz: float | None = None,
    log_floor: float = 1e-6,
) -> tuple[jax.Array, jax.Array]:
    """Log-mel features `log(max(|rfft(hann * frame)|^2 @ mel_filterbank, log_floor))`.

    Args:
      audio: `[B, N]` float waveforms, zero-padded after each utterance's `audio_lengths[b]` samples.
      audio_lengths: `[B]` int number of valid samples.
      sample_rate_hz, window_s, hop_s: framing (400-sample windows every 160 samples by default);
        the FFT size is the next power of two above the window (512).
    Returns:
      `features [B, T, num_mel_bins]` with `T = num_frames(N)`, and `feature_lengths [B]` =
      `num_frames(audio_lengths)`.
    """
    if audio.ndim != 2:
        raise ValueError(f"log_mel_spectrogram: audio must be [B, N], got shape {audio.shape}")
    frame_length = int(round(window_s * sample_rate_hz))
    hop_length = int(round(hop_s * sample_rate_hz))
    fft_size = 1 << (frame_length - 1).bit_length()
    if audio.shape[1] < frame_length:
        raise ValueError(
            f"log_mel_spectrogram: audio has {audio.shape[1]} samples, fewer than one "
            f"{frame_length}-sample window")
    total_frames = 1 + (audio.shape[1] - frame_length) // hop_length
    starts = hop_length * np.arange(total_frames)[:, None] + np.arange(frame_length)[None, :]
    frames = audio.astype(jnp.float32)[:, starts]  # [B, T, frame_length]
    window = 0.5 - 0.5 * jnp.cos(2 * jnp.pi * jnp.arange(frame_length) / frame_length)  # Hann
    power = jnp.abs(jnp.fft.rfft(frames * window, n=fft_size)) ** 2  # [B, T, fft_size/2 + 1]
    mel = power @ mel_filterbank(num_mel_bins, fft_size, sample_rate_hz, lower_hz, upper_hz)
    features = jnp.log(jnp.maximum(mel, log_floor))
    return features, num_frames(audio_lengths, frame_length, hop_length)


def frame_mask(lengths: jax.Array, max_length: int) -> jax.Array:
    """`[B, max_length]` bool, True for frames `t < lengths[b]`."""
    return jnp.arange(max_length)[None, :] < jnp.asarray(lengths)[:, None]


def normalize_per_utterance(features: jax.Array, lengths: jax.Array, eps: float = 1e-5) -> jax.Array:
    """`(x - mean) / sqrt(var + eps)` per utterance and bin over its valid frames; padding -> 0.

    Args:
      features: `[B, T, F]`; lengths: `[B]` valid frames.
    """
    mask = frame_mask(lengths, features.shape[1])[..., None]  # [B, T, 1]
    count = jnp.maximum(mask.sum(axis=1, keepdims=True), 1)
    mean = jnp.where(mask, features, 0.0).sum(axis=1, keepdims=True) / count
    var = jnp.where(mask, (features - mean) ** 2, 0.0).sum(axis=1, keepdims=True) / count
    return jnp.where(mask, (features - mean) / jnp.sqrt(var + eps), 0.0)


class FeatureStats(NamedTuple):
    """Running sums for global normalisation: frame `count`, per-bin `total` and `total_sq` [F]."""

    count: jax.Array
    total: jax.Array
    total_sq: jax.Array

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Statistics of the union of both sets of frames."""
        return FeatureStats(*(a + b for a, b in zip(self, other)))

    def mean_std(self, eps: float = 1e-5) -> tuple[jax.Array, jax.Array]:
        """Per-bin mean and `sqrt(var + eps)`, `[F]` each."""
        mean = self.total / self.count
        return mean, jnp.sqrt(jnp.maximum(self.total_sq / self.count - mean**2, 0.0) + eps)


def feature_stats(features: jax.Array, lengths: jax.Array) -> FeatureStats:
    """Sums over the valid frames of `features [B, T, F]`; merge batches with `FeatureStats.merge`."""
    mask = frame_mask(lengths, features.shape[1])[..., None]
    valid = jnp.where(mask, features, 0.0)
    return FeatureStats(mask.sum().astype(jnp.float32), valid.sum(axis=(0, 1)),
                        (valid**2).sum(axis=(0, 1)))


def normalize_global(features: jax.Array, lengths: jax.Array, stats: FeatureStats) -> jax.Array:
    """`(x - mean) / std` with corpus statistics from `feature_stats`; padding -> 0."""
    mean, std = stats.mean_std()
    mask = frame_mask(lengths, features.shape[1])[..., None]
    return jnp.where(mask, (features - mean) / std, 0.0)


def _random_spans(
    key: jax.Array, num_spans: int, max_width: jax.Array, extent: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Per example `num_spans` spans `[start, start + width)` with `width ~ U{0..max_width}` and
    `start ~ U{0..extent - width}`. `max_width`, `extent`: `[B]`. Returns starts, widths `[B, S]`."""
    width_key, start_key = jax.random.split(key)
    shape = (extent.shape[0], num_spans)
    width = jnp.floor(jax.random.uniform(width_key, shape) * (max_width[:, None] + 1)).astype(jnp.int32)
    width = jnp.minimum(width, extent[:, None])
    start = jnp.floor(jax.random.uniform(start_key, shape) * (extent[:, None] - width + 1))
    return start.astype(jnp.int32), width


def _span_mask(starts: jax.Array, widths: jax.Array, size: int) -> jax.Array:
    """`[B, size]` True where index lies inside any span of `starts, widths [B, S]`."""
    index = jnp.arange(size)[None, None, :]
    inside = (index >= starts[..., None]) & (index < (starts + widths)[..., None])
    return inside.any(axis=1)


@functools.partial(
    jax.jit,
    static_argnames=("num_freq_masks", "max_freq_mask_bins", "num_time_masks",
                     "max_time_mask_frames", "max_time_mask_fraction"))
def spec_augment(
    key: jax.Array,
    features: jax.Array,
    lengths: jax.Array,
    *,
    num_freq_masks: int = 2,
    max_freq_mask_bins: int = 27,
    num_time_masks: int = 10,
    max_time_mask_frames: int = 100,
    max_time_mask_fraction: float = 0.05,
) -> jax.Array:
    """SpecAugment (Park et al., 2019) without time warping: zero random bands and frame spans.

    Each example independently gets `num_freq_masks` bands of `U{0..max_freq_mask_bins}` bins and
    `num_time_masks` spans of `U{0..min(max_time_mask_frames, max_time_mask_fraction * length)}`
    frames inside its valid frames. Zero is the mean of normalised features. For training only.

    Args:
      key: PRNG key; features: `[B, T, F]` normalised; lengths: `[B]` valid frames.
    Returns: `[B, T, F]` with the masked entries set to 0.
    """
    batch, max_frames, num_bins = features.shape
    freq_key, time_key = jax.random.split(key)
    freq_starts, freq_widths = _random_spans(
        freq_key, num_freq_masks, jnp.full((batch,), max_freq_mask_bins), jnp.full((batch,), num_bins))
    lengths = jnp.asarray(lengths, jnp.int32)
    max_time = jnp.minimum(max_time_mask_frames,
                           jnp.floor(max_time_mask_fraction * lengths).astype(jnp.int32))
    time_starts, time_widths = _random_spans(time_key, num_time_masks, max_time, lengths)
    masked = (_span_mask(time_starts, time_widths, max_frames)[:, :, None]
              | _span_mask(freq_starts, freq_widths, num_bins)[:, None, :])
    return jnp.where(masked, 0.0, features)
