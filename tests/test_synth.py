"""synth-en: the plan (voices, shares, determinism), rendering and resuming, sox effects, far-field.

The session fixture `tiny_corpus` (tests/conftest.py) builds the tiny corpus once per session;
the `large` size is checked on its plan only (rendering it takes an hour).
"""

import collections
import functools
import hashlib
import pathlib
import shutil

import numpy as np
import pytest
import soundfile as sf

from corpora import deps, farfield, manifest, synth, text, tts


def _audio(path: pathlib.Path) -> np.ndarray:
    return sf.read(str(path), dtype="float32")[0]


def test_tiny_corpus_yields_16khz_examples_matching_the_manifests(tiny_corpus):
    for split, count in synth.SIZES["tiny"].counts.items():
        entries = manifest.read_manifest(tiny_corpus / f"{split}.jsonl")
        examples = list(synth.read_split(tiny_corpus, split))
        assert len(examples) == len(entries) == count
        for entry, ex in zip(entries, examples):
            assert ex["sample_rate"] == 16000 and ex["audio"].dtype == np.float32 and ex["audio"].ndim == 1
            assert np.max(np.abs(ex["audio"])) <= 1.0 and np.max(np.abs(ex["audio"])) > 0.5  # peak-normalised
            assert len(ex["audio"]) == pytest.approx(entry.duration_s * 16000, abs=1)
            assert ex["text"] == entry.text and ex["speaker"] == f"{entry.engine}/{entry.voice}"


def test_readme_states_command_seed_counts_and_vocabulary(tiny_corpus):
    readme = (tiny_corpus / "README.md").read_text()
    assert "python -m corpora.synth --out DIR --size tiny --seed 0" in readme
    for split, count in synth.SIZES["tiny"].counts.items():
        assert f"| {split} | {count} |" in readme
    assert "3,000-word closed vocabulary" in readme and "Out of vocabulary on the `real` split" in readme


def test_readme_oov_rates_count_real_words_outside_the_training_words_and_the_vocabulary():
    utterances = synth.plan(synth.SIZES["tiny"].counts, seed=0)
    train_word = next(u for u in utterances if u.split == "train").text.split()[0]
    vocab_word = next(w for w in sorted(text.pool_vocabulary()) if w not in {
        w for u in utterances if u.split == "train" for w in u.text.split()})
    real = [f"{train_word} {vocab_word} XYZZYQ", f"{train_word} XYZZYQ"]  # 5 words: 3 unheard, 2 outside V
    lines = synth.vocabulary_lines(utterances, text.VOCAB_SIZE, real)
    assert "2 prompts, 5 words): 60.0 % of its words are not in the training sentences, 40.0 % not in the 3,000" in lines[1]
    assert "not measured (apt-get install" in synth.vocabulary_lines(utterances, text.VOCAB_SIZE, None)[1]


@functools.lru_cache(maxsize=4)
def _plan(size: str, seed: int) -> tuple[synth.Utterance, ...]:
    return tuple(synth.size_plan(size, seed))


def _plan_digest(utterances) -> str:
    h = hashlib.sha256()
    for u in utterances:
        h.update(f"{u.id}|{u.text}|{u.voice.engine}/{u.voice.name}|{u.speed}|{u.pitch}\n".encode())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("size,digest", [
    ("tiny", "4eedc0e835adcb92"), ("small", "9ec2d24071e2cb45"), ("full", "a1218407e04b708b")])
def test_tiny_small_and_full_plans_are_those_their_built_corpora_were_made_from(size, digest):
    # Digests of the seed-0 plans before sizes carried a vocabulary: a change would orphan built corpora.
    assert _plan_digest(_plan(size, 0)) == digest


@pytest.mark.parametrize("size", ["full", "large"])
def test_splits_share_no_sentences(size):
    utterances = _plan(size, 0)
    by_split = collections.defaultdict(set)
    for u in utterances:
        by_split[u.split].add(u.text)
    assert sum(len(s) for s in by_split.values()) == len(utterances)


def test_large_demo_is_the_head_of_each_split_of_large_so_large_never_trained_on_its_test():
    large, demo = _plan("large", 0), _plan("large_demo", 0)
    for split, count in synth.SIZES["large_demo"].counts.items():
        assert [u for u in demo if u.split == split] == [u for u in large if u.split == split][:count]
    large_train = {u.text for u in large if u.split == "train"}
    assert not large_train & {u.text for u in demo if u.split != "train"}


def test_a_size_larger_than_its_parent_is_refused_naming_both(monkeypatch):
    monkeypatch.setitem(synth.SIZES, "too_big", synth.Size({"test": 9}, parent="tiny"))
    with pytest.raises(ValueError, match="'too_big' is not a subset of its parent 'tiny'"):
        synth.size_plan("too_big", 0)


def test_plan_is_deterministic_for_a_seed_and_differs_across_seeds():
    assert synth.plan(synth.SIZES["tiny"].counts, seed=3) == synth.plan(synth.SIZES["tiny"].counts, seed=3)
    assert synth.plan(synth.SIZES["tiny"].counts, seed=3) != synth.plan(synth.SIZES["tiny"].counts, seed=4)


def test_large_has_40000_distinct_training_sentences_and_test_splits_of_20000_words():
    utterances = _plan("large", 0)
    split_of = collections.defaultdict(list)
    for u in utterances:
        split_of[u.split].append(u.text)
    assert len(set(split_of["train"])) >= 40_000
    assert len(split_of["dev"]) >= 1_000
    for split in ("test", "test_other"):
        assert len(split_of[split]) >= 2_000
        assert sum(len(s.split()) for s in split_of[split]) >= 20_000, split


def test_large_reads_its_larger_vocabulary_with_speed_and_pitch_varied():
    utterances = _plan("large", 0)
    vocab = text.pool_vocabulary(synth.SIZES["large"].vocab_size)
    words = {w for u in utterances for w in u.text.split()}
    assert words <= vocab and len(words) > 4 * text.VOCAB_SIZE
    speeds, pitches = np.array([u.speed for u in utterances]), np.array([u.pitch for u in utterances])
    for values, (low, high) in ((speeds, synth.SPEED_RANGE), (pitches, synth.PITCH_RANGE_SEMITONES)):
        assert low <= values.min() < low + 0.01 * (high - low) and high - 0.01 * (high - low) < values.max() <= high
        assert np.std(values) == pytest.approx((high - low) / np.sqrt(12), rel=0.02)  # uniform


@pytest.mark.parametrize("size", ["tiny", "small", "full", "large"])
def test_flite_and_festival_read_at_least_60_percent_of_every_split(size):
    for split in synth.SPLITS:
        engines = [u.voice.engine for u in _plan(size, 1) if u.split == split]
        assert sum(e != "espeak-ng" for e in engines) / len(engines) >= 0.6


@pytest.mark.parametrize("size", ["full", "large"])
def test_test_other_is_read_only_by_held_out_voices(size):
    utterances = _plan(size, 0)
    other = {u.voice for u in utterances if u.split == "test_other"}
    seen = {u.voice for u in utterances if u.split != "test_other"}
    assert not other & seen
    assert {v.name for v in other if v.engine == "flite"} == {"rms"}
    assert {v.name.split("+")[0] for v in other if v.engine == "espeak-ng"} == {"en-gb-scotland", "en-029"}
    assert {v.engine for v in seen} == {"flite", "festival", "espeak-ng"}


def test_engine_counts_sum_to_n_and_never_exceed_the_espeak_share():
    for n in range(1, 300):
        for shares in (synth.SEEN_SHARES, synth.HELD_OUT_SHARES):
            counts = synth.engine_counts(n, shares)
            assert sum(counts.values()) == n
            assert counts["espeak-ng"] <= shares["espeak-ng"] * n


def test_rerun_renders_nothing_and_a_deleted_file_alone_is_rerendered_identically(tiny_corpus, tmp_path):
    corpus = tmp_path / "copy"
    shutil.copytree(tiny_corpus, corpus)
    assert synth.build(corpus, "tiny", seed=0, progress=False).generated == 0
    entries = manifest.read_manifest(corpus / "train.jsonl")
    # One file per engine, so flite, festival and espeak-ng are each shown to be deterministic.
    victims = {e.engine: e for e in entries}.values()
    before = {e.id: _audio(corpus / e.path) for e in victims}
    mtimes = {p: p.stat().st_mtime_ns for p in corpus.glob("*/*.flac")}
    for e in victims:
        (corpus / e.path).unlink()
    assert synth.build(corpus, "tiny", seed=0, progress=False).generated == len(victims)
    for e in victims:
        np.testing.assert_array_equal(_audio(corpus / e.path), before[e.id])
    untouched = {p: t for p, t in mtimes.items() if p.stem not in before}
    assert all(p.stat().st_mtime_ns == t for p, t in untouched.items())


def test_building_into_a_folder_made_with_other_options_raises(tiny_corpus, tmp_path):
    corpus = tmp_path / "copy"
    shutil.copytree(tiny_corpus, corpus)
    with pytest.raises(ValueError, match="use a fresh --out"):
        synth.build(corpus, "tiny", seed=1, progress=False)


def test_far_field_build_adds_the_reverberant_tail(tmp_path):
    condition = farfield.FarField(rt60_s=0.4, snr_db=20.0)
    synth.build(tmp_path / "near", {"dev": 2}, seed=5, progress=False)
    synth.build(tmp_path / "far", {"dev": 2}, seed=5, far_field=condition, progress=False)
    near = manifest.read_manifest(tmp_path / "near" / "dev.jsonl")
    far = manifest.read_manifest(tmp_path / "far" / "dev.jsonl")
    for n, f in zip(near, far):
        assert f.text == n.text
        assert f.duration_s * 16000 == pytest.approx(n.duration_s * 16000 + 0.4 * 16000 - 1, abs=1)
    assert "RT60 0.40 s, SNR 20.0 dB" in (tmp_path / "far" / "README.md").read_text()


def test_missing_engine_package_raises_with_the_apt_get_line(monkeypatch, tmp_path):
    monkeypatch.setitem(deps.PROBES, "flite", str(tmp_path / "no-flite"))
    with pytest.raises(deps.MissingPackageError, match="apt-get install -y --no-install-recommends flite"):
        tts.synthesise(["HELLO THERE"], [tts.Voice("flite", "kal16")], [tmp_path / "x.wav"])


def test_unknown_voices_are_rejected_where_they_enter():
    with pytest.raises(ValueError, match="flite voice 'kal'"):
        tts.Voice("flite", "kal")
    with pytest.raises(ValueError, match="espeak-ng voice"):
        tts.Voice("espeak-ng", "en-us")


def _dominant_hz(audio: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * sample_rate / len(audio))


@pytest.mark.parametrize("speed,pitch", [(1.0, 0.0), (1.25, 0.0), (1.0, 12.0), (0.8, -5.0)])
def test_sox_scales_duration_by_speed_and_frequency_by_pitch(tmp_path, speed, pitch):
    rate_hz, tone_hz, duration_s = 22050, 220.0, 2.0
    t = np.arange(int(rate_hz * duration_s)) / rate_hz
    wav = tmp_path / "tone.wav"
    sf.write(str(wav), 0.5 * np.sin(2 * np.pi * tone_hz * t), rate_hz)
    audio = tts.to_16k(wav, speed, pitch)
    assert len(audio) / 16000 == pytest.approx(duration_s / speed, rel=0.02)
    assert _dominant_hz(audio, 16000) == pytest.approx(tone_hz * 2 ** (pitch / 12), rel=0.02)
    assert np.max(np.abs(audio)) == pytest.approx(10 ** (tts.PEAK_DBFS / 20), rel=0.01)


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 30.0])
def test_add_noise_sets_the_snr(snr_db):
    rng = np.random.default_rng(0)
    signal = np.sin(np.linspace(0, 300, 16000)) * np.linspace(0, 1, 16000)
    noise = farfield.add_noise(signal, snr_db, rng) - signal
    assert 10 * np.log10(np.mean(signal**2) / np.mean(noise**2)) == pytest.approx(snr_db, abs=1e-9)


def test_add_noise_refuses_silence():
    with pytest.raises(ValueError, match="silent"):
        farfield.add_noise(np.zeros(100), 10.0, np.random.default_rng(0))


def test_rir_energy_decays_60_db_per_rt60():
    rt60_s, rate_hz = 1.0, 16000
    rir = farfield.exponential_rir(rt60_s, rate_hz, np.random.default_rng(0))
    assert rir[0] == 1.0 and len(rir) == rt60_s * rate_hz
    window = rate_hz // 10
    early, late = np.mean(rir[1 : 1 + window] ** 2), np.mean(rir[rate_hz // 2 : rate_hz // 2 + window] ** 2)
    assert 10 * np.log10(early / late) == pytest.approx(30.0, abs=1.5)  # 0.5 RT60 apart -> 30 dB


def test_fft_convolution_matches_direct_convolution():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(1000), rng.standard_normal(77)
    np.testing.assert_allclose(farfield.convolve(a, b), np.convolve(a, b), atol=1e-9)


def test_far_field_output_never_clips_and_is_reproducible():
    audio = np.sin(np.linspace(0, 2000, 16000)).astype(np.float32)
    condition = farfield.FarField(rt60_s=0.5, snr_db=0.0)
    out = farfield.apply(audio, condition, 16000, synth.utterance_rng(0, "x"))
    assert out.dtype == np.float32 and np.max(np.abs(out)) <= farfield.PEAK + 1e-6
    np.testing.assert_array_equal(out, farfield.apply(audio, condition, 16000, synth.utterance_rng(0, "x")))


def test_a_package_without_a_probe_is_a_key_error_listing_the_known_ones():
    with pytest.raises(KeyError, match="no probe file known for Debian package"):
        deps.require("not-a-package")
