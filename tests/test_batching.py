"""Batching: planned from metadata alone, every example once, fixed shapes, exact resume, process
shards that add up to one process, bad input skipped and named, grain workers equal to in-process."""

import logging

import numpy as np
import pytest

from corpora import batching, sources
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


def plan_of(examples, tok=None, **kwargs):
    defaults = dict(batch_size=4, num_buckets=4)
    return batching.make_plan(sources.ExampleSource(examples).metadata, tok or CharTokenizer(),
                              **{**defaults, **kwargs})


def load(examples, plan, start=0, stop=None, tok=None, **loader_kwargs):
    """Global batches [start, stop) of `plan` loaded in this process (LoadedBatch list)."""
    loader = batching.BatchLoader(sources.ExampleSource(examples), tok or CharTokenizer(), plan,
                                  **loader_kwargs)
    stop = plan.batches_per_epoch if stop is None else stop
    return list(batching.stream(plan, loader, start, stop))


def rows(batch):
    """(audio, labels) of every real row of a batch."""
    return [(batch["audio"][r, :batch["audio_lengths"][r]],
             batch["labels"][r, :batch["label_lengths"][r]])
            for r in np.flatnonzero(batch["mask"])]


def index_of(audio) -> int:
    return round(float(audio[0]) * 1000)


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_an_epoch_holds_every_example_once_with_its_audio_and_labels():
    examples, tok = make_examples(37), CharTokenizer()
    plan = plan_of(examples, drop_remainder=False)
    seen = []
    for loaded in load(examples, plan):
        for audio, labels in rows(loaded.batch):
            i = index_of(audio)
            np.testing.assert_array_equal(audio, examples[i]["audio"])
            assert tok.decode(labels) == examples[i]["text"]
            seen.append(i)
    assert sorted(seen) == list(range(37))


class Undecodable(sources.ExampleSource):
    def read(self, index):
        raise AssertionError("planning decoded audio")


def test_planning_reads_metadata_only():
    source = Undecodable(make_examples(20))
    plan = batching.make_plan(source.metadata, CharTokenizer(), batch_size=4)
    assert plan.batches_per_epoch == sum(int((plan.bucket_of == b).sum()) // 4 for b in range(len(plan.buckets)))


def test_batches_take_only_bucket_shapes_and_pad_with_zeros_and_blanks():
    examples = make_examples(60)
    plan = plan_of(examples, batch_size=3, num_buckets=3, drop_remainder=False)
    shapes = set()
    for loaded in load(examples, plan):
        batch = loaded.batch
        shapes.add((batch["audio"].shape, batch["labels"].shape))
        for r in range(3):
            assert not batch["audio"][r, batch["audio_lengths"][r]:].any()
            assert not batch["labels"][r, batch["label_lengths"][r]:].any()
        assert (batch["mask"] == (batch["audio_lengths"] > 0)).all()
    expected = {((3, b.max_samples), (3, b.max_labels)) for b in plan.buckets}
    assert shapes <= expected and len(plan.buckets) <= 3


def test_batch_seconds_bound_the_padded_audio_of_every_bucket():
    examples = make_examples(200)
    plan = plan_of(examples, max_batch_seconds=2.0, row_multiple=2)
    assert len({b.rows for b in plan.buckets}) > 1  # short buckets hold more rows
    for b in plan.buckets:
        assert b.rows % 2 == 0 and b.rows * b.max_samples <= 2.0 * 16000
        assert (b.rows + 2) * b.max_samples > 2.0 * 16000  # and as many as fit


def test_each_example_goes_to_the_first_bucket_that_holds_it():
    rng = np.random.default_rng(1)
    samples, labels = rng.integers(1, 100, 200), rng.integers(1, 20, 200)
    buckets = (batching.Bucket(1, 30, 10), batching.Bucket(1, 60, 15), batching.Bucket(1, 90, 30))
    got = batching.assign_buckets(samples, labels, buckets)
    for s, u, b in zip(samples, labels, got):
        fitting = [k for k, bk in enumerate(buckets) if s <= bk.max_samples and u <= bk.max_labels]
        assert b == (fitting[0] if fitting else -1)


def test_chosen_bounds_hold_every_example():
    rng = np.random.default_rng(2)
    samples, labels = rng.integers(100, 50000, 300), rng.integers(1, 200, 300)
    bounds = batching.bucket_bounds(samples, labels, num_buckets=5)
    buckets = [batching.Bucket(1, s, u) for s, u in bounds]
    assert (batching.assign_buckets(samples, labels, buckets) >= 0).all()
    assert [b.max_samples for b in buckets] == sorted({b.max_samples for b in buckets})


def test_full_batches_only_under_drop_remainder():
    examples = make_examples(50)
    assert all(loaded.batch["mask"].all() for loaded in load(examples, plan_of(examples)))


def test_a_stream_started_at_k_yields_exactly_the_batches_from_k_on():
    examples = make_examples(30)
    plan = plan_of(examples, seed=7)
    per_epoch = plan.batches_per_epoch
    everything = load(examples, plan, 0, 3 * per_epoch)
    resumed = load(examples, plan, per_epoch + 2, 3 * per_epoch)  # across an epoch boundary
    assert_same_batches([b.batch for b in resumed], [b.batch for b in everything[per_epoch + 2:]])


def test_grain_worker_processes_deliver_the_in_process_batches():
    examples = make_examples(30)
    plan = plan_of(examples, seed=1)
    loader = batching.BatchLoader(sources.ExampleSource(examples), CharTokenizer(), plan)
    stream = batching.stream(plan, loader, 3, 3 + 2 * plan.batches_per_epoch, num_workers=2)
    try:
        from_workers = [b.batch for b in stream]
    finally:
        stream.close()
    in_process = [b.batch for b in load(examples, plan, 3, 3 + 2 * plan.batches_per_epoch)]
    assert_same_batches(from_workers, in_process)


def test_process_shards_add_up_to_the_one_process_batch():
    examples = make_examples(40)
    plan = plan_of(examples, batch_size=6, process_count=3)
    whole = load(examples, plan)
    shards = [load(examples, plan, process_index=p, process_count=3) for p in range(3)]
    for k, loaded in enumerate(whole):
        joined = {key: np.concatenate([s[k].batch[key] for s in shards]) for key in loaded.batch}
        assert_same_batches([joined], [loaded.batch])


def test_resume_state_names_every_changed_field_of_the_plan():
    examples = make_examples(30)
    saved = plan_of(examples, seed=7).state(next_batch=5)
    assert batching.check_resumable(saved, plan_of(examples, seed=7)) == 5
    changed = make_examples(30)
    changed[3]["text"] = "OTHER WORDS"
    with pytest.raises(ValueError, match="corpus_fingerprint.*seed: saved 7, now 8"):
        batching.check_resumable(saved, plan_of(changed, seed=8))
    with pytest.raises(ValueError, match="max_batch_seconds: saved 0.0, now 3.0.*shapes"):
        batching.check_resumable(saved, plan_of(examples, seed=7, max_batch_seconds=3.0))
    with pytest.raises(ValueError, match="process_count: saved 1, now 2"):
        batching.check_resumable(saved, plan_of(examples, seed=7, process_count=2))


def test_order_is_set_by_the_seed_and_changes_between_epochs():
    examples = make_examples(30)

    def first_epoch_ids(seed):
        plan = plan_of(examples, seed=seed)
        return [index_of(a) for b in load(examples, plan) for a, _ in rows(b.batch)]

    assert first_epoch_ids(3) == first_epoch_ids(3)
    assert first_epoch_ids(3) != first_epoch_ids(4)
    plan = plan_of(examples, seed=3)
    assert [list(b) for b in plan.epoch(0)] != [list(b) for b in plan.epoch(1)]


def test_bad_audio_becomes_a_padding_row_named_in_skipped_or_raises_under_strict():
    class Broken(sources.ExampleSource):
        def read(self, index):
            if self.examples[index]["id"] == "utt-3":
                raise ValueError("utterance 'utt-3': unreadable audio x.flac")
            return super().read(index)

    examples = make_examples(8)
    plan = plan_of(examples, batch_size=8, num_buckets=1)
    loader = batching.BatchLoader(Broken(examples), CharTokenizer(), plan)
    loaded = loader(batching.PlannedBatches(plan, 0, 1)[0])
    assert loaded.skipped == ("utterance 'utt-3': unreadable audio x.flac",)
    assert loaded.batch["mask"].sum() == 7
    assert 3 not in [index_of(a) for a, _ in rows(loaded.batch)]
    strict = batching.BatchLoader(Broken(examples), CharTokenizer(), plan, strict=True)
    with pytest.raises(ValueError, match="utt-3"):
        strict(batching.PlannedBatches(plan, 0, 1)[0])


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
    (loaded,) = load([example], plan_of([example], batch_size=1))
    assert loaded.batch["audio_lengths"][0] == 2 * len(example["audio"])


def test_another_rate_without_resampling_is_an_error_naming_the_utterance():
    example = make_examples(1)[0] | {"sample_rate": 44100}
    with pytest.raises(ValueError, match="'utt-0'.*44100"):
        load([example], plan_of([example], batch_size=1), resample=False, strict=True)


def test_empty_transcript_is_an_error_naming_the_utterance():
    examples = make_examples(3)
    examples[1]["text"] = " "
    with pytest.raises(ValueError, match="'utt-1'.*empty transcript"):
        plan_of(examples, batch_size=1)


def test_character_outside_the_alphabet_is_an_error_naming_the_utterance():
    examples = make_examples(3)
    examples[2]["text"] = "THE 2 DOGS"
    with pytest.raises(ValueError, match="'utt-2'.*'2'"):
        plan_of(examples, batch_size=1)


def test_examples_too_short_for_the_encoder_are_dropped_and_named(caplog):
    examples = make_examples(10)
    examples[6]["audio"] = np.zeros(300, np.float32)
    with caplog.at_level(logging.WARNING):
        plan = plan_of(examples, batch_size=1, num_buckets=2, min_samples=400)
    assert "dropping 1 utterance(s) shorter than 400 samples: ['utt-6']" in caplog.text
    assert plan.batches_per_epoch == 9 and plan.bucket_of[6] == -1


def test_split_for_devices_keeps_rows_in_order():
    batch = batching.pad_batch([(np.ones(3, np.float32), np.array([1, 2]))] * 6,
                               batching.Bucket(8, 4, 2), rows=8)
    split = batching.split_for_devices(batch, num_devices=4)
    for k, v in batch.items():
        assert split[k].shape == (4, 2) + v.shape[1:]
        np.testing.assert_array_equal(split[k].reshape(v.shape), v)


def test_split_for_devices_names_an_indivisible_batch_size():
    batch = batching.pad_batch([], batching.Bucket(6, 4, 2), rows=6)
    with pytest.raises(ValueError, match="batch size 6 .* 4 devices"):
        batching.split_for_devices(batch, num_devices=4)


def test_speed_perturbation_is_drawn_per_row_fits_the_buckets_and_is_the_same_on_every_process():
    examples = make_examples(24)
    plan = plan_of(examples, batch_size=6, num_buckets=2, speed_factors=(0.9, 1.0, 1.1), process_count=2)
    plain = plan_of(examples, batch_size=6, num_buckets=2)
    assert max(b.max_samples for b in plan.buckets) >= max(b.max_samples for b in plain.buckets) / 0.9
    whole = load(examples, plan, 0, 2 * plan.batches_per_epoch)
    loader = batching.BatchLoader(sources.ExampleSource(examples), CharTokenizer(), plan)
    factors = set()
    for k, loaded in enumerate(whole):
        batch, planned = loaded.batch, batching.PlannedBatches(plan, 0, len(whole))[k]
        for row, i in enumerate(planned.utterances):
            factor = loader.speed(k, row)
            factors.add(factor)
            expected = batching.perturb_speed(examples[i]["audio"], factor)
            np.testing.assert_array_equal(batch["audio"][row, :batch["audio_lengths"][row]], expected)
            assert abs(len(expected) - len(examples[i]["audio"]) / factor) <= 1
    assert factors == {0.9, 1.0, 1.1}
    shards = [load(examples, plan, 0, len(whole), process_index=p, process_count=2) for p in range(2)]
    for k, loaded in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([s[k].batch["audio"] for s in shards]), loaded.batch["audio"])
    assert plan.state(0)["speed_factors"] == [0.9, 1.0, 1.1]


def test_least_padding_bounds_are_the_best_of_every_choice():
    """The dynamic programme against brute force over every set of <= k bounds."""
    import itertools
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 40, 60) ** 2  # a long tail
    values = np.unique(lengths)

    def padded(bounds):
        return int(np.asarray(bounds)[np.searchsorted(bounds, lengths)].sum())

    for k in (1, 2, 3):
        best = min(padded(sorted(c) + [values[-1]])
                   for r in range(k) for c in itertools.combinations(values[:-1], r))
        got = batching.least_padding_bounds(lengths, k)
        assert got[-1] == lengths.max() and len(got) <= k
        assert padded(got) == best


def test_least_padding_bounds_pad_no_more_than_quantile_bounds():
    rng = np.random.default_rng(4)
    lengths = np.round(rng.lognormal(0, 0.5, 2000) * 100).astype(np.int64)  # utterance-like, long-tailed
    for k in (2, 4, 8):
        quantiles = np.quantile(lengths, np.arange(1, k + 1) / k, method="higher")
        least = batching.least_padding_bounds(lengths, k)
        pad = lambda b: np.asarray(b)[np.searchsorted(b, lengths)].sum()
        assert pad(least) <= pad(quantiles)
        assert pad(least) < pad(quantiles) * 0.97  # and markedly less on a long tail
