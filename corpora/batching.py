"""Batches planned from metadata alone, loaded lazily by grain worker processes, resumable exactly.

A batch of bucket (R, S, U) is a dict of numpy arrays, for the R global rows or this process's
R / P of them:

    audio          [R, S] float32   waveforms at 16 kHz, zero-padded after audio_lengths[r]
    audio_lengths  [R]    int32     valid samples per row
    labels         [R, U] int32     token ids, padded with the blank id after label_lengths[r]
    label_lengths  [R]    int32     valid labels per row
    mask           [R]    float32   1 for a real utterance, 0 for a padding row

**Planning** (`make_plan`) reads only durations and transcripts (`corpora.sources.Metadata`):
each utterance is tokenized (text only) to know its label length, then goes to the first
bucket (ordered by S) that holds its samples and labels. The k bucket sample bounds are those that
least pad the audio (`least_padding_bounds`); the last is the longest utterance, so it holds every
utterance; each bucket holds R
rows: `batch_size`, or with `max_batch_seconds` the most rows (a multiple of `row_multiple`, the
device count) whose padded audio stays within that many seconds. Only `len(buckets)` shapes ever
occur, so a jitted step compiles once per bucket. Utterances shorter than `min_samples` (too
short for the encoder to emit a frame) are dropped and named in a log line.

**Order.** Epoch e permutes the utterances by `np.random.default_rng([seed, e])`, cuts them
into batches bucket by bucket and permutes the batches again; every epoch has the same number of
batches. Global batch k is batch k mod n of epoch k // n: a pure function of the plan and k. So
a stream resumes from k alone, and `BatchPlan.state(k)` also records what defines the plan
(corpus fingerprint, batch seconds, shapes, seed, process count), which `check_resumable`
compares field by field.

**Speed perturbation** (`speed_factors`, e.g. (0.9, 1.0, 1.1) as in Ko et al., 2015): global row r
of batch k is resampled to play `f` times faster, f drawn from the factors by
`default_rng([seed, k, r])`, so it is the same on every process and after a resume; buckets are
planned for the slowest factor (durations x 1 / min f).

**Loading** (`BatchLoader`) decodes, resamples and tokenizes the rows of one batch; with P
processes, process p reads only rows [p R / P, (p + 1) R / P) of each global batch, so P
processes together compute exactly what one does. An utterance whose audio is missing,
unreadable or of the wrong duration becomes a padding row (mask 0) and is named in
`LoadedBatch.skipped`; under `strict` it raises. `stream` runs the loader in grain worker
processes with prefetch (`grain.MapDataset` -> `mp_prefetch`).
"""

from __future__ import annotations

import dataclasses
import fractions
import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import grain
from absl import flags
import numpy as np
import scipy.signal

from corpora.sources import Metadata, Source
from corpora.tokenizer import Tokenizer

SAMPLE_RATE_HZ = 16000
log = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]


def conform_sample_rate(audio: np.ndarray, sample_rate: int, utterance_id: str,
                        target_hz: int = SAMPLE_RATE_HZ, resample: bool = True) -> np.ndarray:
    """audio [N] at `sample_rate` -> [ceil(N * target_hz / sample_rate)] at `target_hz`.

    Polyphase resampling by target/g over sample_rate/g, g = gcd, with scipy's default Kaiser
    anti-aliasing filter. Raises `ValueError` naming the utterance when `resample` is False.
    """
    if sample_rate == target_hz:
        return audio
    if not resample:
        raise ValueError(f"utterance {utterance_id!r} is sampled at {sample_rate} Hz; expected "
                         f"{target_hz} Hz (or pass resample=True)")
    g = math.gcd(target_hz, sample_rate)
    return scipy.signal.resample_poly(audio, target_hz // g, sample_rate // g).astype(np.float32)


def perturb_speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """audio [N] played `factor` times faster: [~N / factor], by polyphase resampling (pitch moves
    with the tempo, as in sox's `speed`)."""
    if factor == 1.0:
        return audio
    ratio = fractions.Fraction(factor).limit_denominator(100)
    return scipy.signal.resample_poly(audio, ratio.denominator, ratio.numerator).astype(np.float32)


def encode_text(text: str, tokenizer: Tokenizer, utterance_id: str) -> np.ndarray:
    """int32 [L] token ids; `ValueError` naming the utterance for an empty transcript."""
    if not text.strip():
        raise ValueError(f"utterance {utterance_id!r} has an empty transcript")
    return np.asarray(tokenizer.encode(text, utterance_id=utterance_id), np.int32)


def encode_example(example: dict[str, Any], tokenizer: Tokenizer,
                   sample_rate_hz: int = SAMPLE_RATE_HZ,
                   resample: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A common example dict -> (audio float32 [N] at `sample_rate_hz`, labels int32 [L])."""
    utterance_id = example["id"]
    audio = np.asarray(example["audio"], np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"utterance {utterance_id!r} has audio of shape {audio.shape}; "
                         "expected a non-empty 1-D waveform")
    labels = encode_text(example["text"], tokenizer, utterance_id)
    audio = conform_sample_rate(audio, int(example["sample_rate"]), utterance_id, sample_rate_hz,
                                resample)
    return audio, labels


@dataclasses.dataclass(frozen=True)
class Bucket:
    """One padded shape: audio [rows, max_samples], labels [rows, max_labels]."""

    rows: int
    max_samples: int
    max_labels: int


def _round_up(x: float, multiple: int) -> int:
    return int(math.ceil(x / multiple) * multiple)


def least_padding_bounds(lengths: np.ndarray, num_buckets: int) -> np.ndarray:
    """The <= `num_buckets` upper bounds, among the distinct values of `lengths` [N], that minimise
    the padded total sum_b n_b * S_b (n_b lengths above bound S_{b-1} and at most S_b; the last
    bound is max(lengths)), by dynamic programming over the m distinct values in O(k m^2).

    With rows = batch seconds / S_b, every batch holds about the same padded audio, so this total is
    proportional to the number of batches an epoch takes: the compute spent per epoch.
    """
    values, counts = np.unique(lengths, return_counts=True)
    below = np.concatenate([[0], np.cumsum(counts)])  # below[j]: lengths among values[:j]
    m, k = len(values), min(num_buckets, len(values))
    # cost[i, j]: one bucket for values[i:j], padded to values[j - 1] (inf unless i < j).
    cost = np.where(np.arange(m + 1)[:, None] < np.arange(m + 1)[None],
                    np.concatenate([[0], values])[None] * (below[None] - below[:, None]), np.inf)
    total = np.full(m + 1, np.inf)
    total[0] = 0
    split = np.zeros((k + 1, m + 1), np.int64)
    for b in range(1, k + 1):
        candidates = total[:, None] + cost  # [i, j]: best b-1 buckets up to i, then one to j
        split[b], total = candidates.argmin(axis=0), candidates.min(axis=0)
    ends, j = [], m
    for b in range(k, 0, -1):
        ends.append(j)
        j = split[b, j]
        if j == 0:
            break
    return values[np.array(sorted(ends)) - 1]


def bucket_bounds(num_samples: np.ndarray, num_labels: np.ndarray, num_buckets: int,
                  sample_multiple: int = 1600, label_multiple: int = 8) -> list[tuple[int, int]]:
    """(max_samples, max_labels) per bucket: the sample bounds that least pad the audio.

    Sample counts are first rounded up to multiples of `sample_multiple` (0.1 s); the bounds are
    then `least_padding_bounds` of them, so a long tail of rare long utterances gets buckets of its
    own instead of padding the common lengths. Each bucket's label bound is the largest label
    length among the examples it receives (and at least that of every shorter bucket), rounded up
    to `label_multiple`, so every example fits some bucket.
    """
    rounded = np.ceil(np.asarray(num_samples) / sample_multiple).astype(np.int64) * sample_multiple
    bounds, lower, labels_so_far = [], -1, 1
    for bound in least_padding_bounds(rounded, num_buckets).tolist():
        inside = (num_samples > lower) & (num_samples <= bound)
        labels_so_far = max(labels_so_far, int(num_labels[inside].max()) if inside.any() else 1)
        bounds.append((bound, _round_up(labels_so_far, label_multiple)))
        lower = bound
    return bounds


def rows_for(max_samples: int, batch_size: int, max_batch_seconds: float, row_multiple: int,
             sample_rate_hz: int = SAMPLE_RATE_HZ) -> int:
    """Rows of a bucket: `batch_size`, or the most multiples of `row_multiple` whose padded
    audio (rows x max_samples) stays within `max_batch_seconds` (at least `row_multiple`)."""
    if max_batch_seconds <= 0:
        return batch_size
    fit = int(max_batch_seconds * sample_rate_hz // max_samples)
    return max(row_multiple, fit // row_multiple * row_multiple)


def assign_buckets(num_samples: np.ndarray, num_labels: np.ndarray,
                   buckets: Sequence[Bucket]) -> np.ndarray:
    """int [N]: the first bucket holding each example's samples and labels, or -1 for none."""
    fits = ((num_samples[:, None] <= np.array([b.max_samples for b in buckets])[None])
            & (num_labels[:, None] <= np.array([b.max_labels for b in buckets])[None]))
    return np.where(fits.any(axis=1), fits.argmax(axis=1), -1)


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """Which utterances form global batch k, for every k (see the module docstring)."""

    buckets: tuple[Bucket, ...]
    bucket_of: np.ndarray  # int [N]: bucket of each utterance, -1 when dropped
    seed: int
    shuffle: bool
    drop_remainder: bool
    fingerprint: str
    max_batch_seconds: float
    process_count: int = 1
    speed_factors: tuple[float, ...] = ()

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """The epoch's batches as utterance-index arrays (a short last batch per bucket is kept
        unless `drop_remainder`)."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.bucket_of)) if self.shuffle else np.arange(len(self.bucket_of))
        batches = []
        for b, bucket in enumerate(self.buckets):
            members = order[self.bucket_of[order] == b]
            stop = len(members) - len(members) % bucket.rows if self.drop_remainder else len(members)
            batches += [members[i:i + bucket.rows] for i in range(0, stop, bucket.rows)]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    @property
    def batches_per_epoch(self) -> int:
        return len(self.epoch(0))

    def shapes(self) -> str:
        """'R x S samples x U labels' of every bucket, one per compiled shape."""
        return ", ".join(f"{b.rows}x{b.max_samples}x{b.max_labels}" for b in self.buckets)

    def state(self, next_batch: int) -> dict[str, Any]:
        """JSON-able resume state: the next global batch and every field that defines the plan."""
        return {"next_batch": int(next_batch), "corpus_fingerprint": self.fingerprint,
                "max_batch_seconds": float(self.max_batch_seconds),
                "shapes": [[b.rows, b.max_samples, b.max_labels] for b in self.buckets],
                "seed": int(self.seed), "process_count": int(self.process_count),
                "speed_factors": [float(f) for f in self.speed_factors]}


def check_resumable(saved: dict[str, Any], plan: BatchPlan) -> int:
    """The saved `next_batch`, or `ValueError` naming every plan field that differs from `saved`."""
    now = plan.state(0)
    differ = [f"{k}: saved {saved.get(k)!r}, now {v!r}" for k, v in now.items()
              if k != "next_batch" and saved.get(k) != v]
    if differ:
        raise ValueError("cannot resume: the batch plan differs from the checkpoint's ("
                         + "; ".join(differ) + "); resuming would feed other batches than the "
                         "interrupted run. Use the same data and batch settings, or a new workdir.")
    return int(saved["next_batch"])


def make_plan(metadata: Metadata, tokenizer: Tokenizer, *, batch_size: int, max_batch_seconds: float = 0.0,
              num_buckets: int = 4, row_multiple: int = 1, seed: int = 0, shuffle: bool = True,
              drop_remainder: bool = True, min_samples: int = 1, process_count: int = 1,
              speed_factors: Sequence[float] = (), sample_rate_hz: int = SAMPLE_RATE_HZ) -> BatchPlan:
    """The batch plan of `metadata` (no audio is read; see the module docstring).

    Raises:
      ValueError: no utterances, a row count not divisible by `process_count`, or a transcript
        the tokenizer cannot encode (naming the utterance).
    """
    if len(metadata) == 0:
        raise ValueError("no utterances to batch")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}; expected >= 1")
    if any(f <= 0 for f in speed_factors):
        raise ValueError(f"speed_factors={tuple(speed_factors)}; expected factors > 0")
    slowest, fastest = (1 / min(speed_factors), 1 / max(speed_factors)) if speed_factors else (1.0, 1.0)
    original = np.round(metadata.durations_s * sample_rate_hz).astype(np.int64)
    # Room for the slowest factor (and the sample resampling may add).
    num_samples = np.ceil(original * slowest).astype(np.int64) + 1 if speed_factors else original
    num_labels = np.array([len(encode_text(t, tokenizer, i)) for i, t in zip(metadata.ids, metadata.texts)],
                          np.int64)
    usable = original * fastest >= min_samples
    bounds = bucket_bounds(num_samples[usable], num_labels[usable], num_buckets) if usable.any() else []
    buckets = tuple(Bucket(rows_for(s, batch_size, max_batch_seconds, row_multiple), s, u) for s, u in bounds)
    for bucket in buckets:
        if bucket.rows % row_multiple or bucket.rows % process_count:
            raise ValueError(f"{bucket.rows} rows per batch are not divisible by the {row_multiple} "
                             f"devices and {process_count} processes")
    bucket_of = assign_buckets(num_samples, num_labels, buckets) if buckets else np.full(len(metadata), -1)
    bucket_of = np.where(usable, bucket_of, -1)  # the top bucket holds every usable utterance
    if not usable.all():
        ids = [metadata.ids[i] for i in np.flatnonzero(~usable)]
        log.warning("dropping %d utterance(s) shorter than %d samples: %s", len(ids), min_samples, ids)
    return BatchPlan(buckets, bucket_of, seed, shuffle, drop_remainder, metadata.fingerprint(),
                     max_batch_seconds, process_count, tuple(float(f) for f in speed_factors))


class PlannedBatch(NamedTuple):
    """Global batch `index` of a plan: its bucket and the indices of its utterances."""

    index: int
    bucket: int
    utterances: np.ndarray


class PlannedBatches(Sequence):
    """Global batches [start, stop) of a plan as `PlannedBatch`es."""

    def __init__(self, plan: BatchPlan, start: int, stop: int):
        self.plan, self.start, self.stop = plan, start, stop
        self.per_epoch = plan.batches_per_epoch
        if self.per_epoch == 0 and stop > start:
            raise ValueError("no full batch fits any bucket; lower the batch size or the batch seconds")
        self._epoch, self._batches = -1, []

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, index: int) -> PlannedBatch:
        k = self.start + index
        epoch, position = divmod(k, self.per_epoch)
        if epoch != self._epoch:
            self._epoch, self._batches = epoch, self.plan.epoch(epoch)
        indices = self._batches[position]
        return PlannedBatch(k, int(self.plan.bucket_of[indices[0]]), indices)


class LoadedBatch(NamedTuple):
    """A padded batch and the ids (with reasons) of the utterances skipped as bad input."""

    batch: Batch
    skipped: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class BatchLoader:
    """`PlannedBatch` of `plan` -> this process's rows of that padded global batch."""

    source: Source
    tokenizer: Tokenizer
    plan: BatchPlan
    process_index: int = 0
    process_count: int = 1
    strict: bool = False
    resample: bool = True

    def speed(self, batch_index: int, row: int) -> float:
        """The speed factor of global row `row` of batch `batch_index` (1 without perturbation)."""
        factors = self.plan.speed_factors
        if not factors:
            return 1.0
        return factors[np.random.default_rng([self.plan.seed, batch_index, row]).integers(len(factors))]

    def __call__(self, planned: PlannedBatch) -> LoadedBatch:
        bucket = self.plan.buckets[planned.bucket]
        local = bucket.rows // self.process_count
        rows = list(planned.utterances) + [-1] * (bucket.rows - len(planned.utterances))
        encoded, skipped = [], []
        first = self.process_index * local
        for row, i in enumerate(rows[first:first + local], start=first):
            if i < 0:
                encoded.append(None)
                continue
            try:
                audio, labels = encode_example(self.source[int(i)], self.tokenizer, resample=self.resample)
                encoded.append((perturb_speed(audio, self.speed(planned.index, row)), labels))
            except ValueError as e:
                if self.strict:
                    raise
                encoded.append(None)
                skipped.append(str(e))
        return LoadedBatch(pad_batch(encoded, bucket, local, self.tokenizer.blank_id), tuple(skipped))


def pad_batch(encoded: Sequence[tuple[np.ndarray, np.ndarray] | None], bucket: Bucket, rows: int,
              blank_id: int = 0) -> Batch:
    """Pads (audio [N_r], labels [L_r]) pairs (None: a padding row) to [rows, ...] of the bucket."""
    if len(encoded) > rows:
        raise ValueError(f"{len(encoded)} examples exceed the {rows} rows of the batch")
    batch = {
        "audio": np.zeros((rows, bucket.max_samples), np.float32),
        "audio_lengths": np.zeros((rows,), np.int32),
        "labels": np.full((rows, bucket.max_labels), blank_id, np.int32),
        "label_lengths": np.zeros((rows,), np.int32),
        "mask": np.zeros((rows,), np.float32),
    }
    for row, pair in enumerate(encoded):
        if pair is None:
            continue
        audio, labels = pair
        n = min(len(audio), bucket.max_samples)  # resampling may add a sample over the planned count
        batch["audio"][row, :n] = audio[:n]
        batch["audio_lengths"][row] = n
        batch["labels"][row, :len(labels)] = labels
        batch["label_lengths"][row] = len(labels)
        batch["mask"][row] = 1.0
    return batch


def stream(plan: BatchPlan, loader: BatchLoader, start: int, stop: int, num_workers: int = 0,
           prefetch: int = 2) -> Iterator[LoadedBatch]:
    """Global batches start, ..., stop - 1 of `plan`, loaded by `num_workers` grain worker
    processes (0: in this process) each keeping up to `prefetch` batches ready."""
    dataset = grain.MapDataset.source(PlannedBatches(plan, start, stop)).map(loader)
    iterable = dataset.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=prefetch))
    if num_workers > 0:
        if not flags.FLAGS.is_parsed():  # grain's workers read absl flags; a library caller has none
            flags.FLAGS.mark_as_parsed()
        iterable = iterable.mp_prefetch(grain.MultiprocessingOptions(
            num_workers=num_workers, per_worker_buffer_size=prefetch))
    return iter(iterable)  # a grain DatasetIterator: close() it to stop the workers


def one_pass(source: Source, tokenizer: Tokenizer, batch_size: int, num_buckets: int = 4
             ) -> Iterator[Batch]:
    """Every utterance of `source` once, in a fixed order (bucket by bucket), decoded in this
    process; bad audio is skipped with a logged warning (evaluation)."""
    plan = make_plan(source.metadata, tokenizer, batch_size=batch_size, num_buckets=num_buckets,
                     shuffle=False, drop_remainder=False)
    loader = BatchLoader(source, tokenizer, plan)
    planned = PlannedBatches(plan, 0, plan.batches_per_epoch)
    for k in range(len(planned)):
        loaded = loader(planned[k])
        for reason in loaded.skipped:
            log.warning("skipping %s", reason)
        yield loaded.batch


def split_for_devices(batch: Batch, num_devices: int | None = None) -> Batch:
    """Reshapes every [B, ...] array to [num_devices, B / num_devices, ...] for `jax.pmap`.

    `num_devices` defaults to `jax.local_device_count()`.
    """
    if num_devices is None:
        import jax
        num_devices = jax.local_device_count()
    sizes = {k: v.shape[0] for k, v in batch.items()}
    batch_size = next(iter(sizes.values()))
    if any(s != batch_size for s in sizes.values()):
        raise ValueError(f"batch arrays disagree on the batch size: {sizes}")
    if batch_size % num_devices:
        raise ValueError(f"batch size {batch_size} is not divisible by the {num_devices} devices")
    return {k: v.reshape(num_devices, batch_size // num_devices, *v.shape[1:])
            for k, v in batch.items()}
