"""LibriSpeech loaders on generated trees: the folder reader and the real TFDS prepare path, offline."""

import logging

import numpy as np
import pytest

import fake_librispeech as fake
from corpora import librispeech


def utterances_of(split_index: int) -> list[fake.FakeUtterance]:
    return fake.split_utterances(split_index)


def assert_matches(example: dict, utterance: fake.FakeUtterance) -> None:
    assert example["id"] == utterance.id and example["text"] == utterance.text
    assert example["sample_rate"] == 16000 and example["audio"].dtype == np.float32
    np.testing.assert_array_equal(example["audio"], utterance.audio)
    speaker, chapter, _ = utterance.id.split("-")
    assert (example["speaker_id"], example["chapter_id"]) == (int(speaker), int(chapter))


@pytest.fixture(scope="module")
def dev_clean(tmp_path_factory):
    utterances = utterances_of(0)
    root = fake.write_split(tmp_path_factory.mktemp("folder"), "dev-clean", utterances)
    return root, {u.id: u for u in utterances}


def test_read_folder_round_trips_audio_text_and_ids_in_id_order(dev_clean):
    root, expected = dev_clean
    examples = list(librispeech.read_folder(root, "dev-clean", process_index=0, process_count=1))
    assert [e["id"] for e in examples] == sorted(expected)
    for example in examples:
        assert_matches(example, expected[example["id"]])


@pytest.mark.parametrize("where,split", [("root", "dev_clean"), ("LibriSpeech", "dev-clean"),
                                         ("LibriSpeech/dev-clean", None)])
def test_read_folder_finds_the_split_from_any_level(dev_clean, where, split):
    root, expected = dev_clean
    base = root if where == "root" else root / where
    ids = [e["id"] for e in librispeech.read_folder(base, split)]
    assert ids == sorted(expected)


def test_a_missing_split_is_named_with_the_split_folders_there(dev_clean):
    root, _ = dev_clean
    with pytest.raises(FileNotFoundError, match="'dev-dirty'.*split folders there: \\['dev-clean'\\]"):
        list(librispeech.read_folder(root, "dev-dirty"))
    with pytest.raises(FileNotFoundError, match="'test-clean'"):
        list(librispeech.read_folder(root, "test_clean"))


def test_a_split_folder_of_any_name_reads_like_a_librispeech_one(tmp_path):
    utterances = fake.make_utterances(19, 198, 3, seed=4)
    root = fake.write_split(tmp_path, "my-test", utterances)
    assert librispeech.split_folders(root) == ["my-test"]
    assert librispeech.is_split_folder(root / "LibriSpeech" / "my-test")
    examples = list(librispeech.read_folder(root, "my-test"))
    for example, utterance in zip(examples, utterances, strict=True):
        assert_matches(example, utterance)


def test_the_folder_index_is_a_manifest_of_header_durations_reused_until_a_transcript_changes(dev_clean):
    root, expected = dev_clean
    source = librispeech.folder_source(root, "dev-clean")
    assert source.path == root / "LibriSpeech" / "dev-clean" / librispeech.MANIFEST_NAME
    for utterance_id, duration in zip(source.metadata.ids, source.metadata.durations_s):
        assert duration == len(expected[utterance_id].audio_int16) / 16000
    made = source.path.stat().st_mtime_ns
    assert librispeech.folder_source(root, "dev-clean").path.stat().st_mtime_ns == made


def test_process_shards_are_disjoint_and_cover_the_split(dev_clean):
    root, expected = dev_clean
    shards = [[e["id"] for e in librispeech.read_folder(root, process_index=p, process_count=5)]
              for p in range(5)]
    flat = [i for shard in shards for i in shard]
    assert len(flat) == len(set(flat)) and set(flat) == set(expected)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_shard_arguments_outside_range_are_rejected():
    with pytest.raises(ValueError, match="process_index=3"):
        librispeech.shard_indices(10, process_index=3, process_count=3)


def test_unreadable_audio_is_skipped_and_named_or_raised_under_strict(tmp_path, caplog):
    utterances = fake.make_utterances(19, 198, 3, seed=1)
    root = fake.write_split(tmp_path, "dev-other", utterances)
    broken = root / "LibriSpeech/dev-other/19/198/19-198-0001.flac"
    broken.write_bytes(broken.read_bytes()[:20])
    with caplog.at_level(logging.WARNING):
        ids = [e["id"] for e in librispeech.read_folder(root, "dev-other")]
    assert ids == ["19-198-0000", "19-198-0002"]
    assert "19-198-0001" in caplog.text
    with caplog.at_level(logging.WARNING):  # a later read of the cached index names it again
        caplog.clear()
        list(librispeech.read_folder(root, "dev-other"))
    assert "left out 1 utterance(s)" in caplog.text and "19-198-0001" in caplog.text
    with pytest.raises(ValueError, match="'19-198-0001'"):
        list(librispeech.read_folder(root, "dev-other", strict=True))


def test_a_transcript_line_without_text_is_left_out_and_named(tmp_path, caplog):
    utterances = fake.make_utterances(19, 198, 2, seed=1)
    utterances[1] = fake.FakeUtterance(utterances[1].id, "", utterances[1].audio_int16, 16000)
    root = fake.write_split(tmp_path, "dev-other", utterances)
    with caplog.at_level(logging.WARNING):
        texts = [e["text"] for e in librispeech.read_folder(root)]
    assert texts == [utterances[0].text]
    assert f"'{utterances[1].id}': empty transcript" in caplog.text


@pytest.fixture(scope="module")
def prepared_tfds(tmp_path_factory):
    """All seven splits prepared by TFDS's own librispeech builder from one extracted fake tree
    (`librispeech.prepare_tfds`, offline)."""
    raw, data_dir = tmp_path_factory.mktemp("raw"), tmp_path_factory.mktemp("tfds")
    by_folder = fake.write_all_splits(raw, list(librispeech.SPLITS.values()))
    librispeech.prepare_tfds(raw, data_dir)
    return data_dir, raw, {split: by_folder[folder] for split, folder in librispeech.SPLITS.items()}


@pytest.mark.slow
def test_tfds_round_trips_audio_and_text_in_every_split(prepared_tfds):
    data_dir, _, expected = prepared_tfds
    for split, utterances in expected.items():
        examples = list(librispeech.read_tfds(split, data_dir, process_index=0, process_count=1))
        assert sorted(e["id"] for e in examples) == sorted(utterances)
        for example in examples:
            assert_matches(example, utterances[example["id"]])


@pytest.mark.slow
def test_tfds_and_folder_loaders_yield_the_same_examples(prepared_tfds):
    data_dir, raw, _ = prepared_tfds
    from_tfds = sorted(librispeech.read_tfds("test-other", data_dir), key=lambda e: e["id"])
    from_folder = list(librispeech.read_folder(raw, "test-other"))
    assert len(from_tfds) == len(from_folder)
    for a, b in zip(from_tfds, from_folder):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.slow
def test_tfds_process_shards_are_disjoint_and_cover_the_split(prepared_tfds):
    data_dir, _, expected = prepared_tfds
    shards = [[e["id"] for e in librispeech.read_tfds("dev_other", data_dir, process_index=p,
                                                      process_count=3)]
              for p in range(3)]
    flat = [i for shard in shards for i in shard]
    assert len(flat) == len(set(flat)) and set(flat) == set(expected["dev_other"])


@pytest.mark.slow
def test_batches_from_tfds_hold_every_utterance_of_the_split(prepared_tfds):
    from corpora import batching
    from corpora.tokenizer import CharTokenizer

    data_dir, _, expected = prepared_tfds
    tok = CharTokenizer()
    batches = batching.one_pass(librispeech.tfds_source("train_clean100", data_dir), tok, batch_size=5)
    texts = [tok.decode(b["labels"][r, :b["label_lengths"][r]])
             for b in batches for r in np.flatnonzero(b["mask"])]
    assert sorted(texts) == sorted(u.text for u in expected["train_clean100"].values())
