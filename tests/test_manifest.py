"""JSONL manifests and their lazy source: round trip, and bad input named, skipped or refused."""

import dataclasses

import numpy as np
import pytest
import soundfile as sf

from corpora import batching, manifest, sources
from corpora.tokenizer import CharTokenizer


def _entry(i: int, **overrides) -> manifest.ManifestEntry:
    fields = dict(id=f"u{i}", path=f"audio/u{i}.flac", text="HELLO WORLD", duration_s=0.5,
                  engine="flite", voice="kal16", speed=1.0, pitch=0.0)
    return manifest.ManifestEntry(**{**fields, **overrides})


def _corpus(tmp_path, n=3, sample_rate=16000):
    """A manifest of `n` half-second utterances, u_i a constant of level (i + 1) / 10."""
    (tmp_path / "audio").mkdir()
    entries = [_entry(i) for i in range(n)]
    for i, e in enumerate(entries):
        sf.write(str(tmp_path / e.path), np.full(sample_rate // 2, (i + 1) / 10, np.float32), sample_rate)
    manifest.write_manifest(tmp_path / "m.jsonl", entries)
    return tmp_path / "m.jsonl", entries


def test_manifest_round_trips(tmp_path):
    entries = [_entry(i, speed=0.9 + i / 100, pitch=-1.5) for i in range(5)]
    manifest.write_manifest(tmp_path / "m.jsonl", entries)
    assert manifest.read_manifest(tmp_path / "m.jsonl") == entries
    assert not list(tmp_path.glob("*.tmp"))


def test_malformed_line_is_named_by_file_and_line(tmp_path):
    path = tmp_path / "m.jsonl"
    manifest.write_manifest(path, [_entry(0)])
    with path.open("a") as f:
        f.write('{"id": "u1", "path": "x"}\n')
    with pytest.raises(ValueError, match=r"m.jsonl:2: bad manifest entry"):
        manifest.read_manifest(path)


def test_empty_transcript_is_refused_naming_the_utterance():
    with pytest.raises(ValueError, match="'u7' has an empty transcript"):
        _entry(7, text="  ")


def test_source_yields_the_common_example_dict_in_order(tmp_path):
    path, entries = _corpus(tmp_path)
    source = sources.ManifestSource(path)
    assert source.metadata.ids == tuple(e.id for e in entries)
    np.testing.assert_array_equal(source.metadata.durations_s, [0.5] * 3)
    for i, ex in enumerate(source):
        assert ex["sample_rate"] == 16000 and ex["text"] == "HELLO WORLD" and ex["speaker"] == "flite/kal16"
        assert ex["audio"].dtype == np.float32 and ex["audio"].shape == (8000,)
        np.testing.assert_allclose(ex["audio"], (i + 1) / 10, atol=1e-4)


def test_voicing_fields_are_optional_for_a_user_manifest(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "a", "path": "a.flac", "text": "HI THERE", "duration_s": 1.5}\n')
    (entry,) = manifest.read_manifest(path)
    assert (entry.engine, entry.speaker, entry.speed, entry.pitch) == ("", "", 1.0, 0.0)


def _bad_corpus(tmp_path):
    """u0 and u4 good; u1 truncated, u2 unreadable, u3 missing, u5 longer than its recorded duration."""
    path, entries = _corpus(tmp_path, n=6)
    data = (tmp_path / entries[1].path).read_bytes()
    (tmp_path / entries[1].path).write_bytes(data[: len(data) // 2])
    (tmp_path / entries[2].path).write_bytes(b"not audio at all")
    (tmp_path / entries[3].path).unlink()
    manifest.write_manifest(path, entries[:5] + [dataclasses.replace(entries[5], duration_s=0.25)])
    return path


def test_missing_truncated_unreadable_and_mistimed_audio_raise_naming_utterance_and_file(tmp_path):
    source = sources.ManifestSource(_bad_corpus(tmp_path))
    for i, pattern in ((1, "'u1': unreadable audio .*u1.flac"), (2, "'u2': unreadable audio .*u2.flac"),
                       (3, "'u3': unreadable audio .*u3.flac"),
                       (5, "'u5': audio .*u5.flac disagrees with its duration: 8000 samples, manifest says 4000")):
        with pytest.raises(ValueError, match=pattern):
            source[i]


def test_bad_entries_are_skipped_counted_and_named_when_batched_or_raise_under_strict(tmp_path):
    source = sources.ManifestSource(_bad_corpus(tmp_path))
    plan = batching.make_plan(source.metadata, CharTokenizer(), batch_size=6, num_buckets=1)
    loader = batching.BatchLoader(source, CharTokenizer(), plan)
    (loaded,) = batching.stream(plan, loader, 0, 1)
    assert loaded.batch["mask"].sum() == 2
    assert sorted(reason.split("'")[1] for reason in loaded.skipped) == ["u1", "u2", "u3", "u5"]
    strict = batching.BatchLoader(source, CharTokenizer(), plan, strict=True)
    with pytest.raises(ValueError, match="utterance 'u"):
        list(batching.stream(plan, strict, 0, 1))


def test_a_manifest_at_another_sample_rate_is_resampled_when_batched(tmp_path):
    path, _ = _corpus(tmp_path, n=1, sample_rate=8000)
    source = sources.ManifestSource(path)
    plan = batching.make_plan(source.metadata, CharTokenizer(), batch_size=1, num_buckets=1)
    (loaded,) = batching.stream(plan, batching.BatchLoader(source, CharTokenizer(), plan), 0, 1)
    assert loaded.batch["audio_lengths"][0] == 8000 and not loaded.skipped
