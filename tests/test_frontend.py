"""Front end: mel filterbank against a loop reference, tones, normalisation and SpecAugment."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import frontend


def _loop_filterbank(num_bins, fft_size, sample_rate_hz, lower_hz, upper_hz):
    """Triangles in mel, one FFT bin and one filter at a time, with the math module."""
    mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)
    low, high = mel(lower_hz), mel(upper_hz)
    edges = [low + (high - low) * i / (num_bins + 1) for i in range(num_bins + 2)]
    weights = np.zeros((fft_size // 2 + 1, num_bins))
    for k in range(fft_size // 2 + 1):
        m = mel(k * sample_rate_hz / fft_size)
        for j in range(num_bins):
            left, centre, right = edges[j:j + 3]
            if left < m <= centre:
                weights[k, j] = (m - left) / (centre - left)
            elif centre < m < right:
                weights[k, j] = (right - m) / (right - centre)
    return weights


def _bin_centres_hz(num_bins=80, lower_hz=20.0, upper_hz=8000.0):
    edges = np.linspace(frontend.hz_to_mel(lower_hz), frontend.hz_to_mel(upper_hz), num_bins + 2)
    return np.asarray(frontend.mel_to_hz(edges[1:-1]))


@pytest.mark.parametrize("num_bins,lower_hz,upper_hz", [(80, 20.0, 8000.0), (40, 0.0, 4000.0)])
def test_mel_filterbank_matches_loop_reference(num_bins, lower_hz, upper_hz):
    expected = _loop_filterbank(num_bins, 512, 16000, lower_hz, upper_hz)
    actual = np.asarray(frontend.mel_filterbank(num_bins, 512, 16000, lower_hz, upper_hz))
    np.testing.assert_allclose(actual, expected, atol=2e-4)


def test_mel_scale_round_trips():
    hz = jnp.array([0.0, 100.0, 1000.0, 7999.0])
    np.testing.assert_allclose(frontend.mel_to_hz(frontend.hz_to_mel(hz)), hz, rtol=1e-5, atol=1e-3)
    assert float(frontend.hz_to_mel(1000.0)) == pytest.approx(1000.0, abs=0.5)  # by construction


@pytest.mark.parametrize("peak_bin", [10, 45, 70])
def test_tone_energy_peaks_in_the_filter_centred_on_its_frequency(peak_bin):
    frequency_hz = _bin_centres_hz()[peak_bin]
    time_s = np.arange(8000) / 16000
    audio = 0.5 * np.sin(2 * np.pi * frequency_hz * time_s).astype(np.float32)
    features, lengths = frontend.log_mel_spectrogram(audio[None], jnp.array([8000]))
    assert int(lengths[0]) == features.shape[1] == 1 + (8000 - 400) // 160
    assert np.all(np.argmax(np.asarray(features[0]), axis=-1) == peak_bin)


def test_padded_utterance_has_the_same_valid_frames_as_alone():
    audio = np.random.default_rng(0).uniform(-1, 1, 5000).astype(np.float32)
    alone, alone_length = frontend.log_mel_spectrogram(audio[None], jnp.array([5000]))
    padded = np.concatenate([audio, np.zeros(3000, np.float32)])[None]
    batched, batched_length = frontend.log_mel_spectrogram(padded, jnp.array([5000]))
    assert int(alone_length[0]) == int(batched_length[0]) == 1 + (5000 - 400) // 160
    np.testing.assert_allclose(batched[0, :int(alone_length[0])], alone[0], rtol=1e-5, atol=1e-5)


def test_audio_shorter_than_one_window_is_rejected():
    with pytest.raises(ValueError, match="fewer than one 400-sample window"):
        frontend.log_mel_spectrogram(jnp.zeros((1, 399)), jnp.array([399]))
    assert int(frontend.num_frames(399, 400, 160)) == 0


def _random_features(lengths=(9, 5), max_frames=12, num_bins=6, seed=0):
    rng = np.random.default_rng(seed)
    features = rng.normal(3.0, 2.0, (len(lengths), max_frames, num_bins)).astype(np.float32)
    return jnp.asarray(features), jnp.asarray(lengths)


def test_per_utterance_normalisation_standardises_valid_frames_and_zeroes_padding():
    features, lengths = _random_features()
    normalised = np.asarray(frontend.normalize_per_utterance(features, lengths, eps=0.0))
    for b, n in enumerate(np.asarray(lengths)):
        np.testing.assert_allclose(normalised[b, :n].mean(axis=0), 0.0, atol=1e-5)
        np.testing.assert_allclose(normalised[b, :n].std(axis=0), 1.0, atol=1e-4)
        assert np.all(normalised[b, n:] == 0.0)


def test_global_stats_of_merged_batches_equal_stats_of_all_valid_frames():
    first, first_lengths = _random_features((9, 5), seed=1)
    second, second_lengths = _random_features((12, 2), seed=2)
    stats = frontend.feature_stats(first, first_lengths).merge(
        frontend.feature_stats(second, second_lengths))
    valid = np.concatenate([np.asarray(x)[b, :n] for x, ls in ((first, first_lengths), (second, second_lengths))
                            for b, n in enumerate(np.asarray(ls))])
    mean, std = stats.mean_std(eps=0.0)
    np.testing.assert_allclose(mean, valid.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(std, valid.std(axis=0), rtol=1e-4)
    normalised = frontend.normalize_global(first, first_lengths, stats)
    np.testing.assert_allclose(normalised[0, :9], (first[0, :9] - mean) / stats.mean_std()[1], rtol=1e-5)
    assert np.all(np.asarray(normalised)[1, 5:] == 0.0)


def test_spec_augment_only_zeroes_whole_bands_and_spans_inside_the_utterance():
    features, lengths = _random_features(lengths=(200, 120), max_frames=220, num_bins=40)
    augmented = np.asarray(frontend.spec_augment(
        jax.random.key(3), features, lengths, num_freq_masks=2, max_freq_mask_bins=8,
        num_time_masks=4, max_time_mask_frames=30, max_time_mask_fraction=0.1))
    zeroed = augmented == 0.0
    np.testing.assert_array_equal(augmented[~zeroed], np.asarray(features)[~zeroed])
    for b, n in enumerate(np.asarray(lengths)):
        bands = zeroed[b].all(axis=0)  # bins zeroed in every frame
        spans = zeroed[b].all(axis=1)  # frames zeroed in every bin
        assert np.all(zeroed[b] == (bands[None, :] | spans[:, None]))
        assert bands.sum() <= 2 * 8
        assert not spans[n:].any()  # time masks stay inside the valid frames
        assert spans.sum() <= 4 * min(30, int(0.1 * n))
    assert zeroed.any()


def test_spec_augment_is_a_function_of_its_key():
    features, lengths = _random_features(lengths=(100, 80), max_frames=100, num_bins=40)
    first = frontend.spec_augment(jax.random.key(0), features, lengths)
    again = frontend.spec_augment(jax.random.key(0), features, lengths)
    other = frontend.spec_augment(jax.random.key(1), features, lengths)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
