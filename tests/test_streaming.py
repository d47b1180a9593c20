"""Streaming greedy decoding equals the whole-utterance decode: tokens exactly, features and encoder
frames to float rounding, for the RNN-T and the chunked Conformer, at chunk sizes aligned to the
frame rate or not, on an utterance whose length is a multiple of nothing."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gq_jax
from gq_jax import runtime
from models import decoding, frontend, streaming
from models.conformer import make_conformer
from models.rnnt import make_rnnt

NUM_BINS, VOCAB = 16, 12
SAMPLES = 16000 + 4679  # 1.29 s: not a multiple of the hop, the window, a chunk or a frame stack
RNNT = dict(encoder_layers=2, encoder_hidden_size=16, frame_stack=3, time_reduction_layer=0,
            predictor_embed_dim=8, predictor_hidden_size=16, joint_dim=16)
CONFORMER = dict(encoder_layers=2, model_dim=16, num_heads=2, ff_multiplier=2, conv_kernel_size=5,
                 subsampling_channels=4, predictor_embed_dim=8, predictor_hidden_size=16, joint_dim=16,
                 attention_chunk_size=2, causal_convolution=True)


def _audio(samples: int = SAMPLES) -> np.ndarray:
    """A rising tone in noise: features that change from frame to frame."""
    t = np.arange(samples) / 16000
    noise = np.random.default_rng(0).normal(size=samples)
    return (0.3 * np.sin(2 * np.pi * (200 + 900 * t) * t) + 0.05 * noise).astype(np.float32)


def _whole(audio: np.ndarray, stats: frontend.FeatureStats) -> tuple[jax.Array, jax.Array]:
    """The whole-utterance features `[1, T, F]` and lengths of `audio`, globally normalised."""
    feats, lengths = frontend.log_mel_spectrogram(jnp.asarray(audio)[None], jnp.array([len(audio)]),
                                                  num_mel_bins=NUM_BINS)
    return frontend.normalize_global(feats, lengths, stats), lengths


def _stats(audio: np.ndarray, num_bins: int = NUM_BINS) -> frontend.FeatureStats:
    """The statistics of one utterance's log-mel frames."""
    feats, lengths = frontend.log_mel_spectrogram(jnp.asarray(audio)[None], jnp.array([len(audio)]),
                                                  num_mel_bins=num_bins)
    return frontend.feature_stats(feats, lengths)


def _same(a: frontend.FeatureStats, b: frontend.FeatureStats) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def _model(make, options, seed: int = 0):
    model = make(VOCAB, **options)
    feats = jnp.zeros((1, 64, NUM_BINS))
    params = jax.jit(model.init)(jax.random.key(seed), feats, jnp.array([64]), jnp.ones((1, 2), jnp.int32),
                                 jnp.array([2]))["params"]
    return model, {"params": params}


def _streamed_encoder(model, variables, audio, stats, chunk_samples):
    """Features and encoder frames computed stage by stage, chunk by chunk, as `greedy`'s step does
    (the stages of one chunk jit-compiled once: run eagerly, every chunk recompiles its scans)."""
    window, _ = model.encoder.stream_window()

    @jax.jit
    def stages(samples, frames_left, state, chunk, count):
        frames, num_frames, samples = streaming.audio_to_frames(samples, chunk, count, stats)
        enc, num_enc, frames_left, state = streaming.frames_to_encoder(model, variables, frames_left, frames,
                                                                       num_frames, state)
        return frames, num_frames, enc, num_enc, samples, frames_left, state

    samples, frames_left = streaming.empty_queue(399), streaming.empty_queue(window - 1, (NUM_BINS,))
    state = model.encoder.initial_stream_state(1, 6000)
    features, encoded = [], []
    for start in range(0, len(audio), chunk_samples):
        chunk = np.zeros(chunk_samples, np.float32)
        piece = audio[start:start + chunk_samples]
        chunk[:len(piece)] = piece
        frames, count, enc, num_enc, samples, frames_left, state = stages(
            samples, frames_left, state, jnp.asarray(chunk), jnp.int32(len(piece)))
        features.append(frames[:count])
        encoded.append(enc[:num_enc])
    enc, num_enc = jax.jit(lambda left, state: streaming.encoder_tail(model, variables, left, state))(
        frames_left, state)
    return np.concatenate(features), np.concatenate(encoded + [enc[:num_enc]])


@pytest.mark.parametrize("count_sequence", [[0, 3, 7, 1, 6, 6, 2], [5, 5, 5, 5], [1] * 12])
def test_cut_windows_cuts_the_windows_of_the_concatenation_and_keeps_the_rest(count_sequence):
    window, stride, size = 5, 2, 7
    queue, seen, cut = streaming.empty_queue(window - 1, (3,)), [], []
    rng = np.random.default_rng(1)
    for count in count_sequence:
        items = rng.normal(size=(size, 3)).astype(np.float32)
        seen.append(items[:count])
        windows, complete, queue = streaming.cut_windows(queue, jnp.asarray(items), jnp.int32(count), window, stride)
        cut += list(np.asarray(windows[:int(complete)]))
    x = np.concatenate(seen)
    expected = [x[s:s + window] for s in range(0, len(x) - window + 1, stride)]
    np.testing.assert_array_equal(np.array(cut).reshape(-1, window, 3), np.array(expected).reshape(-1, window, 3))
    left = len(x) - stride * len(expected)
    assert int(queue.count) == left
    np.testing.assert_array_equal(queue.items[:left], x[len(x) - left:])
    assert np.all(np.asarray(queue.items[left:]) == 0)


@pytest.mark.parametrize("make, options, chunk_samples", [
    (make_rnnt, RNNT, 800),  # 5 hops: aligned to the frame rate
    (make_rnnt, RNNT, 1000),
    (make_rnnt, dict(RNNT, time_reduction_layer=None, frame_stack=4), 2731),
    (make_conformer, CONFORMER, 1000),
    (make_conformer, dict(CONFORMER, attention_left_chunks=1), 2731),
    (make_conformer, dict(CONFORMER, attention_chunk_size=3), 479),
])
def test_streamed_greedy_decoding_equals_the_whole_utterance_decode(make, options, chunk_samples):
    audio = _audio()
    stats = _stats(audio)
    model, variables = _model(make, options)
    feats, lengths = _whole(audio, stats)
    expected = decoding.greedy_decode(model, variables, feats, lengths).token_ids[0]
    assert 0 < len(expected)
    decoder = streaming.greedy(model, variables, stats, chunk_samples=chunk_samples)
    assert streaming.decode(decoder, audio) == expected

    streamed_feats, streamed_enc = _streamed_encoder(model, variables, audio, stats, chunk_samples)
    np.testing.assert_allclose(streamed_feats, feats[0], atol=1e-4)
    enc, enc_lengths = decoding._encode(model, variables, feats, lengths)
    assert len(streamed_enc) == int(enc_lengths[0]) > 0
    np.testing.assert_allclose(streamed_enc, enc[0, :int(enc_lengths[0])], atol=1e-4)


def test_a_stream_takes_short_chunks_anywhere_and_an_utterance_shorter_than_a_window():
    audio = _audio()
    stats = _stats(audio)
    model, variables = _model(make_rnnt, RNNT)
    decoder = streaming.greedy(model, variables, stats, chunk_samples=1000)
    state = decoder.init()
    for size in (1000, 17, 1000, 400, 0, 1000):
        state = decoder.step(state, audio[:size])
    pieces = np.concatenate([audio[:size] for size in (1000, 17, 1000, 400, 0, 1000)])
    feats, lengths = _whole(pieces, stats)
    assert streaming.token_ids(decoder.finish(state)) == decoding.greedy_decode(
        model, variables, feats, lengths).token_ids[0]
    assert streaming.decode(decoder, audio[:399]) == []
    with pytest.raises(ValueError, match="chunk_samples"):
        decoder.step(decoder.init(), audio[:1001])


def test_streaming_with_resident_packed_weights_equals_their_whole_utterance_decode():
    audio = _audio()
    stats = _stats(audio)
    model, variables = _model(make_rnnt, RNNT)
    quantizer = gq_jax.gq(gq_jax.GQConfig([gq_jax.Rule(".*kernel", bits=4, granularity="channel")]), alpha=500.0)
    hardened = gq_jax.export(quantizer, variables["params"], quantizer.init(variables["params"])).hardened
    served, resident = runtime.resident_model(model), {"params": runtime.resident(hardened)}
    feats, lengths = _whole(audio, stats)
    expected = decoding.greedy_decode(served, resident, feats, lengths).token_ids[0]
    assert expected == decoding.greedy_decode(model, {"params": gq_jax.dequantize(hardened)}, feats,
                                              lengths).token_ids[0]
    decoder = streaming.greedy(served, resident, stats, chunk_samples=1000)
    assert streaming.decode(decoder, audio) == expected


@pytest.mark.parametrize("options, field", [
    (dict(CONFORMER, attention_chunk_size=None), "model.attention_chunk_size"),
    (dict(CONFORMER, causal_convolution=False), "model.causal_convolution"),
])
def test_a_conformer_that_cannot_stream_is_refused_naming_the_field(options, field):
    model, variables = _model(make_conformer, options)
    with pytest.raises(ValueError, match=field):
        streaming.greedy(model, variables, _stats(_audio(4000)), chunk_samples=1000)


def test_per_utterance_normalisation_is_refused_naming_the_config_field():
    model, variables = _model(make_rnnt, RNNT)
    with pytest.raises(ValueError, match="data.feature_normalization"):
        streaming.greedy(model, variables, None, chunk_samples=1000)


@pytest.mark.slow
def test_a_global_normalisation_run_saves_its_statistics_and_its_published_model_streams(tiny_corpus, float_run,
                                                                                         tmp_path):
    import eval as eval_cmd
    import train
    from corpora import synth
    from tests.tiny_run import tiny_config
    from training import input_pipeline, published, runs

    workdir, folder = tmp_path / "global", tmp_path / "published"
    config = tiny_config(tiny_corpus, **{"data.feature_normalization": "global", "data.normalization_utterances": 9,
                                         "num_train_steps": 2, "eval_every_steps": 2})
    train.train_and_evaluate(config, str(workdir))
    saved = input_pipeline.load_feature_stats(config.data, workdir)
    # The sums over the seeded sample, read in padded batches, equal those of each utterance alone.
    train_split = input_pipeline.source(config.data, "train")
    chosen = np.sort(np.random.default_rng(config.seed).choice(len(train_split), 9, replace=False))
    alone = [_stats(train_split[int(i)]["audio"], config.features.num_mel_bins) for i in chosen]
    total = alone[0]
    for stats in alone[1:]:
        total = total.merge(stats)
    for a, b in zip(saved, total):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    assert _same(runs.load(workdir).feature_stats, saved)  # eval.py normalises alike
    train.train_and_evaluate(tiny_config(tiny_corpus, **{"data.feature_normalization": "global",
                                                         "num_train_steps": 4}), str(workdir))  # resumes
    assert _same(input_pipeline.load_feature_stats(config.data, workdir), saved)
    with pytest.raises(ValueError, match="feature_normalization"):
        train.train_and_evaluate(tiny_config(tiny_corpus, **{"num_train_steps": 6}), str(workdir))
    with pytest.raises(ValueError, match="feature_normalization"):
        train.train_and_evaluate(tiny_config(tiny_corpus, **{"data.feature_normalization": "global"}), str(float_run))

    eval_cmd.evaluate_run(str(workdir), splits=["test"], max_examples=1, publish=str(folder))
    model = published.load(folder)
    assert _same(model.feature_stats, saved)
    audio = synth.read_split(tiny_corpus, "test")[0]["audio"]
    feats, lengths = input_pipeline.features({"audio": audio[None], "audio_lengths": np.array([len(audio)])},
                                             model.config.features, stats=model.feature_stats)
    expected = decoding.greedy_decode(model.model, {"params": model.params}, feats, lengths).token_ids[0]
    decoder = streaming.greedy(model.model, {"params": model.params}, model.feature_stats, chunk_samples=1600)
    assert streaming.decode(decoder, audio) == expected


def test_eval_py_streaming_decoder_scores_the_greedy_transcripts_of_a_trained_run(tiny_corpus, tmp_path):
    """eval.py --decoder streaming on a (2-step) run with global features: every utterance of the
    test split streamed in 100 ms chunks gives greedy decoding's errors, utterance for utterance."""
    import subprocess
    import sys

    import eval as eval_cmd
    import train
    from tests.tiny_run import tiny_config

    workdir = tmp_path / "global"
    train.train_and_evaluate(tiny_config(tiny_corpus, **{"data.feature_normalization": "global",
                                                         "num_train_steps": 2, "eval_every_steps": 2}),
                             str(workdir))
    greedy = eval_cmd.evaluate_run(str(workdir), splits=["test"])["results"]["test"]["float"]
    assert greedy["substitutions"] + greedy["insertions"] > 0  # it emits tokens: the comparison means something
    root = pathlib.Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, str(root / "eval.py"), "--workdir", str(workdir), "--splits", "test",
                             "--decoder", "streaming", "--chunk_ms", "100"],
                            cwd=root, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "streaming 100 ms" in result.stdout
    streamed = json.loads((workdir / "eval.json").read_text())["test"]["float"]
    assert streamed["utterance_errors"] == greedy["utterance_errors"] and streamed["wer"] == greedy["wer"]
    with pytest.raises(ValueError, match="greedily"):
        eval_cmd.evaluate_run(str(workdir), splits=["test"], beam=4, chunk_ms=100)
