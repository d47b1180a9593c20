"""Example dicts -> length-bucketed, padded batches of a few fixed shapes, resumable and seeded.

A batch of bucket (S, U) with batch size B is a dict of numpy arrays:

    audio          [B, S] float32   waveforms at 16 kHz, zero-padded after audio_lengths[b]
    audio_lengths  [B]    int32     valid samples per row
    labels         [B, U] int32     token ids, padded with the blank id after label_lengths[b]
    label_lengths  [B]    int32     valid labels per row
    mask           [B]    float32   1 for a real utterance, 0 for a padding row

Only `len(buckets)` shapes ever occur, so a jitted step compiles once per bucket. Every example
goes to the first bucket (ordered by S) that holds both its samples and labels; one that fits no
bucket is skipped and named in a log line.

An epoch's batch order is a pure function of (seed, epoch, example lengths): the examples are
permuted by `np.random.default_rng([seed, epoch])`, cut into batches bucket by bucket, and the
batches permuted again. So `BatchIterator.state()` = {"epoch", "position", "seed"} is all it
takes to resume: a restored iterator yields exactly the batches the original would have.

Bad input is caught when the iterator is built, before any batch: an empty transcript or a
character outside the tokenizer's alphabet raises `ValueError` naming the utterance id; audio at
another sample rate is resampled (polyphase, `scipy.signal.resample_poly`) or, with
`resample=False`, rejected with an error naming the utterance id.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Iterator, Sequence

import numpy as np
import scipy.signal

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


def encode_example(example: dict[str, Any], tokenizer: Tokenizer,
                   sample_rate_hz: int = SAMPLE_RATE_HZ,
                   resample: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A common example dict -> (audio float32 [N] at `sample_rate_hz`, labels int32 [L])."""
    utterance_id = example["id"]
    audio = np.asarray(example["audio"], np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"utterance {utterance_id!r} has audio of shape {audio.shape}; "
                         "expected a non-empty 1-D waveform")
    if not example["text"].strip():
        raise ValueError(f"utterance {utterance_id!r} has an empty transcript")
    audio = conform_sample_rate(audio, int(example["sample_rate"]), utterance_id, sample_rate_hz,
                                resample)
    labels = np.asarray(tokenizer.encode(example["text"], utterance_id=utterance_id), np.int32)
    return audio, labels


@dataclasses.dataclass(frozen=True)
class Bucket:
    """One padded shape: audio [B, max_samples], labels [B, max_labels]."""

    max_samples: int
    max_labels: int


def _round_up(x: float, multiple: int) -> int:
    return int(math.ceil(x / multiple) * multiple)


def choose_buckets(num_samples: Sequence[int], num_labels: Sequence[int], num_buckets: int = 4,
                   sample_multiple: int = 1600, label_multiple: int = 8) -> tuple[Bucket, ...]:
    """Buckets whose sample boundaries are the 1/k, 2/k, ..., 1 quantiles of `num_samples`.

    Each bucket's label length is the largest among the examples it receives, so every example
    fits some bucket. Boundaries are rounded up to multiples of `sample_multiple` (0.1 s at
    16 kHz) and `label_multiple`; buckets that round to the same boundary merge.
    """
    samples = np.asarray(num_samples)
    labels = np.asarray(num_labels)
    quantiles = np.quantile(samples, np.arange(1, num_buckets + 1) / num_buckets, method="higher")
    bounds = sorted({_round_up(q, sample_multiple) for q in quantiles})
    buckets, lower = [], -1
    for bound in bounds:
        inside = (samples > lower) & (samples <= bound)
        max_labels = labels[inside].max() if inside.any() else 1
        buckets.append(Bucket(bound, _round_up(max(max_labels, 1), label_multiple)))
        lower = bound
    # A longer bucket must also hold the labels of every shorter one.
    running = np.maximum.accumulate([b.max_labels for b in buckets])
    return tuple(Bucket(b.max_samples, int(u)) for b, u in zip(buckets, running))


def assign_buckets(num_samples: Sequence[int], num_labels: Sequence[int],
                   buckets: Sequence[Bucket]) -> np.ndarray:
    """int [N]: the first bucket holding each example's samples and labels, or -1 for none."""
    samples = np.asarray(num_samples)[:, None]
    labels = np.asarray(num_labels)[:, None]
    fits = ((samples <= np.array([b.max_samples for b in buckets])[None])
            & (labels <= np.array([b.max_labels for b in buckets])[None]))
    return np.where(fits.any(axis=1), fits.argmax(axis=1), -1)


def epoch_batches(bucket_of: np.ndarray, batch_size: int, seed: int, epoch: int,
                  shuffle: bool = True, drop_remainder: bool = True) -> list[np.ndarray]:
    """The epoch's batches as example-index arrays (each of length <= batch_size), in order.

    With `shuffle`, examples and then batches are permuted by `default_rng([seed, epoch])`;
    without, examples keep their order within each bucket and buckets come in order. A final
    short batch per bucket is dropped under `drop_remainder`, else kept (padded when built).
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(bucket_of)) if shuffle else np.arange(len(bucket_of))
    batches = []
    for bucket in range(bucket_of.max(initial=-1) + 1):
        members = order[bucket_of[order] == bucket]
        stop = len(members) - len(members) % batch_size if drop_remainder else len(members)
        batches += [members[i:i + batch_size] for i in range(0, stop, batch_size)]
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def pad_batch(encoded: Sequence[tuple[np.ndarray, np.ndarray]], bucket: Bucket, batch_size: int,
              blank_id: int = 0) -> Batch:
    """Pads `encoded` (audio [N_b], labels [L_b]) pairs to a batch of the bucket's shape."""
    if len(encoded) > batch_size:
        raise ValueError(f"{len(encoded)} examples exceed the batch size {batch_size}")
    batch = {
        "audio": np.zeros((batch_size, bucket.max_samples), np.float32),
        "audio_lengths": np.zeros((batch_size,), np.int32),
        "labels": np.full((batch_size, bucket.max_labels), blank_id, np.int32),
        "label_lengths": np.zeros((batch_size,), np.int32),
        "mask": np.zeros((batch_size,), np.float32),
    }
    for row, (audio, labels) in enumerate(encoded):
        batch["audio"][row, :len(audio)] = audio
        batch["audio_lengths"][row] = len(audio)
        batch["labels"][row, :len(labels)] = labels
        batch["label_lengths"][row] = len(labels)
        batch["mask"][row] = 1.0
    return batch


class BatchIterator:
    """Endless (or `num_epochs`-long) stream of padded batches over a random-access example list.

    `examples` may be a list or any lazy sequence (e.g. `librispeech.TfdsExamples`): it is read
    once when the iterator is built (to validate every example and measure its lengths) and then
    once per use. `state()` / `restore(state)` save and resume the position.
    """

    def __init__(self, examples: Sequence[dict[str, Any]], tokenizer: Tokenizer, batch_size: int,
                 *, buckets: Sequence[Bucket] | None = None, num_buckets: int = 4, seed: int = 0,
                 shuffle: bool = True, drop_remainder: bool = True, num_epochs: int | None = None,
                 sample_rate_hz: int = SAMPLE_RATE_HZ, resample: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}; expected >= 1")
        self.examples = examples
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_remainder = drop_remainder
        self.num_epochs = num_epochs
        self.sample_rate_hz = sample_rate_hz
        self.resample = resample
        encoded = (self._encode(examples[i]) for i in range(len(examples)))
        lengths = np.array([[len(a), len(l)] for a, l in encoded], np.int64).reshape(-1, 2)
        if len(lengths) == 0:
            raise ValueError("no examples to batch")
        self.buckets = tuple(buckets) if buckets is not None else choose_buckets(
            lengths[:, 0], lengths[:, 1], num_buckets)
        self.bucket_of = assign_buckets(lengths[:, 0], lengths[:, 1], self.buckets)
        too_long = [examples[i]["id"] for i in np.flatnonzero(self.bucket_of < 0)]
        if too_long:
            log.warning("skipping %d utterance(s) longer than every bucket %s: %s",
                        len(too_long), self.buckets, too_long)
        self.epoch, self.position, self.seed = 0, 0, seed
        self._plan = epoch_batches(self.bucket_of, batch_size, seed, 0, shuffle, drop_remainder)

    def _encode(self, example: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        return encode_example(example, self.tokenizer, self.sample_rate_hz, self.resample)

    @property
    def batches_per_epoch(self) -> int:
        return len(self._plan)

    def state(self) -> dict[str, int]:
        """The position: {"epoch", "position" (batches already yielded this epoch), "seed"}."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def restore(self, state: dict[str, int]) -> None:
        """Resumes at `state`, so that the next batch is the one the saved iterator yielded next."""
        self.epoch, self.position, self.seed = (int(state[k]) for k in ("epoch", "position", "seed"))
        self._plan = epoch_batches(self.bucket_of, self.batch_size, self.seed, self.epoch,
                                   self.shuffle, self.drop_remainder)

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        while self.position >= len(self._plan):
            if not self._plan:
                raise ValueError(f"no full batch of {self.batch_size} fits any bucket; lower the "
                                 "batch size or pass drop_remainder=False")
            if self.num_epochs is not None and self.epoch + 1 >= self.num_epochs:
                raise StopIteration
            self.restore({"epoch": self.epoch + 1, "position": 0, "seed": self.seed})
        indices = self._plan[self.position]
        self.position += 1
        bucket = self.buckets[self.bucket_of[indices[0]]]
        return pad_batch([self._encode(self.examples[i]) for i in indices], bucket,
                         self.batch_size, self.tokenizer.blank_id)


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
