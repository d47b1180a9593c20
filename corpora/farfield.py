"""Simulated far-field speech: reverberation by a synthetic room impulse response plus noise at a set SNR.

RIR model (a statistical late-reverberation model): a unit direct path at t = 0 followed by
Gaussian noise whose amplitude decays as exp(-3 ln(10) t / RT60), i.e. by 60 dB after `rt60_s`
seconds; it is truncated at RT60. Noise is white Gaussian scaled so that
10 log10(P_signal / P_noise) equals `snr_db` exactly on the given signal.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Energy of the late reverberant tail relative to the direct path (a direct-to-reverberant ratio
# of about 0 dB, typical for a talker a few metres from the microphone).
TAIL_TO_DIRECT_ENERGY = 1.0
PEAK = 0.99


@dataclasses.dataclass(frozen=True)
class FarField:
    """The far-field condition: reverberation time `rt60_s` and signal-to-noise ratio `snr_db`."""

    rt60_s: float = 0.6
    snr_db: float = 15.0

    def __post_init__(self):
        if not 0 < self.rt60_s <= 5:
            raise ValueError(f"rt60_s must be in (0, 5] seconds, got {self.rt60_s}")


def exponential_rir(rt60_s: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Room impulse response h: [round(rt60_s * sample_rate)], h[0] = 1, tail energy TAIL_TO_DIRECT_ENERGY."""
    n = max(2, round(rt60_s * sample_rate))
    t_s = np.arange(1, n) / sample_rate
    tail = rng.standard_normal(n - 1) * np.exp(-3 * np.log(10) * t_s / rt60_s)
    tail *= np.sqrt(TAIL_TO_DIRECT_ENERGY / np.sum(tail**2))
    return np.concatenate([[1.0], tail])


def convolve(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Full linear convolution by FFT: [N] * [M] -> [N + M - 1]."""
    n = len(audio) + len(rir) - 1
    size = 1 << (n - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(rir, size), size)[:n]


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """audio + white noise with mean power exactly mean(audio^2) / 10^(snr_db / 10).

    Raises:
      ValueError: for silent audio, whose SNR is undefined.
    """
    signal_power = np.mean(np.square(audio, dtype=np.float64))
    if signal_power == 0:
        raise ValueError("cannot set an SNR on silent audio")
    noise = rng.standard_normal(len(audio))
    noise *= np.sqrt(signal_power / 10 ** (snr_db / 10) / np.mean(noise**2))
    return audio + noise


def apply(audio: np.ndarray, condition: FarField, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Far-field version of `audio` [N]: reverberated, noised, peak-scaled to PEAK if it would clip.

    Returns float32 [N + round(rt60_s * sample_rate) - 1] (the reverberant tail is kept).
    """
    reverberant = convolve(audio.astype(np.float64), exponential_rir(condition.rt60_s, sample_rate, rng))
    noisy = add_noise(reverberant, condition.snr_db, rng)
    peak = np.max(np.abs(noisy))
    return (noisy * (PEAK / peak if peak > PEAK else 1.0)).astype(np.float32)
