"""JSONL manifests and the example reader: round trip, and bad input named, skipped or refused."""

import dataclasses
import logging

import numpy as np
import pytest
import soundfile as sf

from corpora import manifest


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


def test_reader_yields_the_common_example_dict_in_order(tmp_path):
    path, entries = _corpus(tmp_path)
    examples = list(manifest.read_examples(path))
    assert [ex["id"] for ex in examples] == [e.id for e in entries]
    for i, ex in enumerate(examples):
        assert ex["sample_rate"] == 16000 and ex["text"] == "HELLO WORLD" and ex["speaker"] == "flite/kal16"
        assert ex["audio"].dtype == np.float32 and ex["audio"].shape == (8000,)
        np.testing.assert_allclose(ex["audio"], (i + 1) / 10, atol=1e-4)


def test_truncated_and_unreadable_audio_are_skipped_counted_and_named(tmp_path, caplog):
    path, entries = _corpus(tmp_path, n=4)
    data = (tmp_path / entries[1].path).read_bytes()
    (tmp_path / entries[1].path).write_bytes(data[: len(data) // 2])  # truncated FLAC
    (tmp_path / entries[2].path).write_bytes(b"not audio at all")  # unreadable
    with caplog.at_level(logging.WARNING, logger="corpora.manifest"):
        ids = [ex["id"] for ex in manifest.read_examples(path)]
    assert ids == ["u0", "u3"]
    assert "skipping utterance u1" in caplog.text and "skipping utterance u2" in caplog.text
    assert "skipped 2 unreadable or truncated utterance(s): ['u1', 'u2']" in caplog.text


def test_a_file_shorter_than_its_manifest_duration_counts_as_truncated(tmp_path):
    path, entries = _corpus(tmp_path, n=1)
    manifest.write_manifest(path, [dataclasses.replace(entries[0], duration_s=0.75)])
    assert list(manifest.read_examples(path)) == []
    with pytest.raises(ValueError, match="truncated audio .*8000 samples, manifest says 12000"):
        list(manifest.read_examples(path, strict=True))


def test_strict_reader_raises_on_unreadable_audio(tmp_path):
    path, entries = _corpus(tmp_path, n=2)
    (tmp_path / entries[1].path).unlink()
    with pytest.raises(ValueError, match="unreadable audio .*u1.flac"):
        list(manifest.read_examples(path, strict=True))


def test_sample_rate_other_than_16khz_is_an_error_naming_the_utterance(tmp_path):
    path, _ = _corpus(tmp_path, n=1, sample_rate=8000)
    manifest.write_manifest(path, [_entry(0)])
    with pytest.raises(ValueError, match="'u0' is sampled at 8000 Hz; expected 16000"):
        list(manifest.read_examples(path))
