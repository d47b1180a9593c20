"""Batching: every example exactly once, fixed shapes, exact resume, bad input named, pmap split."""

import logging

import numpy as np
import pytest

from corpora import batching
from corpora.tokenizer import CharTokenizer

WORDS = ("THE", "QUICK", "BROWN", "FOX", "JUMPS", "OVER", "LAZY", "DOG", "IT'S")


def make_examples(count: int, seed: int = 0) -> list[dict]:
    """Examples of 0.05-0.5 s whose audio encodes the index (audio[0] = index / 1000)."""
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(count):
        audio = rng.uniform(-0.5, 0.5, size=rng.integers(800, 8000)).astype(np.float32)
        audio[0] = i / 1000
        text = " ".join(rng.choice(WORDS, size=rng.integers(1, 6)))
        examples.append({"id": f"utt-{i}", "audio": audio, "sample_rate": 16000, "text": text})
    return examples


def rows(batch):
    """(audio, labels) of every real row of a batch."""
    return [(batch["audio"][r, :batch["audio_lengths"][r]],
             batch["labels"][r, :batch["label_lengths"][r]])
            for r in np.flatnonzero(batch["mask"])]


def take(iterator, count):
    return [next(iterator) for _ in range(count)]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_an_epoch_holds_every_example_once_with_its_audio_and_labels():
    examples = make_examples(37)
    tok = CharTokenizer()
    it = batching.BatchIterator(examples, tok, batch_size=4, drop_remainder=False, num_epochs=1)
    seen = []
    for batch in it:
        for audio, labels in rows(batch):
            i = round(float(audio[0]) * 1000)
            np.testing.assert_array_equal(audio, examples[i]["audio"])
            assert tok.decode(labels) == examples[i]["text"]
            seen.append(i)
    assert sorted(seen) == list(range(37))


def test_batches_take_only_bucket_shapes_and_pad_with_zeros_and_blanks():
    it = batching.BatchIterator(make_examples(60), CharTokenizer(), batch_size=3, num_buckets=3,
                                drop_remainder=False, num_epochs=1)
    shapes = set()
    for batch in it:
        shapes.add((batch["audio"].shape, batch["labels"].shape))
        for r in range(3):
            assert not batch["audio"][r, batch["audio_lengths"][r]:].any()
            assert not batch["labels"][r, batch["label_lengths"][r]:].any()
        assert (batch["mask"] == (batch["audio_lengths"] > 0)).all()
    expected = {((3, b.max_samples), (3, b.max_labels)) for b in it.buckets}
    assert shapes <= expected and len(it.buckets) <= 3


def test_each_example_goes_to_the_first_bucket_that_holds_it():
    rng = np.random.default_rng(1)
    samples, labels = rng.integers(1, 100, 200), rng.integers(1, 20, 200)
    buckets = (batching.Bucket(30, 10), batching.Bucket(60, 15), batching.Bucket(90, 30))
    got = batching.assign_buckets(samples, labels, buckets)
    for s, u, b in zip(samples, labels, got):
        fitting = [k for k, bk in enumerate(buckets) if s <= bk.max_samples and u <= bk.max_labels]
        assert b == (fitting[0] if fitting else -1)


def test_chosen_buckets_hold_every_example():
    rng = np.random.default_rng(2)
    samples, labels = rng.integers(100, 50000, 300), rng.integers(1, 200, 300)
    buckets = batching.choose_buckets(samples, labels, num_buckets=5)
    assert (batching.assign_buckets(samples, labels, buckets) >= 0).all()
    assert [b.max_samples for b in buckets] == sorted({b.max_samples for b in buckets})


def test_full_batches_only_under_drop_remainder():
    it = batching.BatchIterator(make_examples(50), CharTokenizer(), batch_size=4, num_epochs=1)
    assert all(batch["mask"].all() for batch in it)


def test_restored_iterator_yields_exactly_the_original_batches():
    examples, tok = make_examples(30), CharTokenizer()
    original = batching.BatchIterator(examples, tok, batch_size=4, seed=7)
    per_epoch = original.batches_per_epoch
    take(original, per_epoch + 2)  # into the second epoch
    state = original.state()
    expected = take(original, 2 * per_epoch)  # across the next epoch boundary
    restored = batching.BatchIterator(examples, tok, batch_size=4, seed=0)
    restored.restore(state)
    assert state == {"epoch": 1, "position": 2, "seed": 7}
    assert_same_batches(take(restored, 2 * per_epoch), expected)


def test_order_is_set_by_the_seed_and_changes_between_epochs():
    examples, tok = make_examples(30), CharTokenizer()

    def first_epoch_ids(seed):
        it = batching.BatchIterator(examples, tok, batch_size=4, seed=seed)
        return [round(float(a[0]) * 1000) for b in take(it, it.batches_per_epoch) for a, _ in rows(b)]

    assert first_epoch_ids(3) == first_epoch_ids(3)
    assert first_epoch_ids(3) != first_epoch_ids(4)
    def plan(epoch):
        return [list(b) for b in batching.epoch_batches(np.zeros(30, int), 4, seed=3, epoch=epoch)]

    assert plan(0) != plan(1)


def test_resampled_tone_keeps_its_frequency_and_amplitude():
    for rate in (8000, 22050, 44100, 48000):
        t = np.arange(rate) / rate  # 1 s
        tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        out = batching.conform_sample_rate(tone, rate, "tone")
        expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
        assert out.dtype == np.float32 and len(out) == 16000
        np.testing.assert_allclose(out[800:-800], expected[800:-800], atol=5e-3)


def test_examples_at_another_rate_are_resampled_when_batched():
    example = make_examples(1)[0] | {"sample_rate": 8000}
    it = batching.BatchIterator([example], CharTokenizer(), batch_size=1)
    assert next(it)["audio_lengths"][0] == 2 * len(example["audio"])


def test_another_rate_without_resampling_is_an_error_naming_the_utterance():
    example = make_examples(1)[0] | {"sample_rate": 44100}
    with pytest.raises(ValueError, match="'utt-0'.*44100"):
        batching.BatchIterator([example], CharTokenizer(), batch_size=1, resample=False)


def test_empty_transcript_is_an_error_naming_the_utterance():
    examples = make_examples(3)
    examples[1]["text"] = " "
    with pytest.raises(ValueError, match="'utt-1'.*empty transcript"):
        batching.BatchIterator(examples, CharTokenizer(), batch_size=1)


def test_character_outside_the_alphabet_is_an_error_naming_the_utterance():
    examples = make_examples(3)
    examples[2]["text"] = "THE 2 DOGS"
    with pytest.raises(ValueError, match="'utt-2'.*'2'"):
        batching.BatchIterator(examples, CharTokenizer(), batch_size=1)


def test_examples_longer_than_every_bucket_are_skipped_and_named(caplog):
    examples = make_examples(10)
    examples[4]["audio"] = np.zeros(20000, np.float32)
    with caplog.at_level(logging.WARNING):
        it = batching.BatchIterator(examples, CharTokenizer(), batch_size=1, num_epochs=1,
                                    buckets=[batching.Bucket(8000, 40)])
    assert "utt-4" in caplog.text
    assert sum(1 for _ in it) == 9


def test_split_for_devices_keeps_rows_in_order():
    batch = batching.pad_batch([(np.ones(3, np.float32), np.array([1, 2]))] * 6,
                               batching.Bucket(4, 2), batch_size=8)
    split = batching.split_for_devices(batch, num_devices=4)
    for k, v in batch.items():
        assert split[k].shape == (4, 2) + v.shape[1:]
        np.testing.assert_array_equal(split[k].reshape(v.shape), v)


def test_split_for_devices_names_an_indivisible_batch_size():
    batch = batching.pad_batch([], batching.Bucket(4, 2), batch_size=6)
    with pytest.raises(ValueError, match="batch size 6 .* 4 devices"):
        batching.split_for_devices(batch, num_devices=4)
