"""Lazy random-access speech sources: metadata in memory, audio decoded only when an item is read.

A `Source` is a `Sequence` of the common example dict

    {"id": str, "audio": float32 [N] in [-1, 1], "sample_rate": int, "text": str, ...}

whose `metadata` (ids, durations in seconds, transcripts) is known without decoding any audio:
batches are planned from it (`corpora.batching`), so memory holds one line of text per
utterance, never the corpus's audio. `source[i]` decodes utterance i and raises `ValueError`
naming it (and its file) when its audio is missing, unreadable, or disagrees with the recorded
duration; the batch loader skips such utterances (or re-raises under `strict`).

Kinds:
  `ManifestSource`  a JSON-lines manifest (`corpora.manifest`): synth-en splits, any user folder.
  `TfdsSource`      a prepared TFDS split (`tfds.data_source`), with a one-off length index
                    cached beside the data (`<dataset dir>/gq_lengths.<split>.json`).
  `ExampleSource`   examples already in memory (the Asterisk prompts, tests).
  `ConcatSource`    a union of sources (e.g. LibriSpeech's three training splits).
  `source.take(n)`  the first n utterances of any source, still lazy.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import json
import logging
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import tqdm

from corpora import manifest
from corpora.files import write_text_atomic

log = logging.getLogger(__name__)
INT16_FULL_SCALE = 32768.0


@dataclasses.dataclass(frozen=True)
class Metadata:
    """What batch planning needs of N utterances: ids, durations `[N]` (seconds) and transcripts."""

    ids: tuple[str, ...]
    durations_s: np.ndarray
    texts: tuple[str, ...]

    def __post_init__(self):
        if not len(self.ids) == len(self.durations_s) == len(self.texts):
            raise ValueError(f"metadata lengths disagree: {len(self.ids)} ids, "
                             f"{len(self.durations_s)} durations, {len(self.texts)} texts")

    def __len__(self) -> int:
        return len(self.ids)

    def fingerprint(self) -> str:
        """sha256 (first 16 hex digits) of every (id, duration to the microsecond, transcript)."""
        digest = hashlib.sha256()
        for utterance_id, duration, text in zip(self.ids, self.durations_s, self.texts):
            digest.update(f"{utterance_id}\t{round(float(duration) * 1e6)}\t{text}\n".encode())
        return digest.hexdigest()[:16]

    @classmethod
    def concat(cls, parts: Sequence[Metadata]) -> Metadata:
        return cls(tuple(i for p in parts for i in p.ids),
                   np.concatenate([p.durations_s for p in parts]) if parts else np.zeros(0),
                   tuple(t for p in parts for t in p.texts))


class Source(Sequence):
    """A random-access split: `metadata` without decoding, `source[i]` decodes utterance i."""

    name: str
    metadata: Metadata

    def __len__(self) -> int:
        return len(self.metadata)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"{self.name}: index {index} outside [0, {len(self)})")
        return self.read(index)

    def read(self, index: int) -> dict[str, Any]:
        """The example dict of utterance `index` (already range-checked)."""
        raise NotImplementedError

    def take(self, count: int) -> Source:
        """The first `count` utterances (all when `count` is 0 or at least the length)."""
        return self if not count or count >= len(self) else _Prefix(self, count)


class _Prefix(Source):
    def __init__(self, parent: Source, count: int):
        self.parent, self.name = parent, f"{parent.name}[:{count}]"
        m = parent.metadata
        self.metadata = Metadata(m.ids[:count], m.durations_s[:count], m.texts[:count])

    def read(self, index: int) -> dict[str, Any]:
        return self.parent.read(index)


class ManifestSource(Source):
    """The utterances of a JSON-lines manifest; audio paths are relative to its folder.

    Raises (when built): `ValueError` naming the file and line of a malformed entry.
    """

    def __init__(self, path: str | pathlib.Path):
        self.path = pathlib.Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no manifest {self.path}")
        self.name = str(self.path)
        self.entries = manifest.read_manifest(self.path)
        self.metadata = Metadata(tuple(e.id for e in self.entries),
                                 np.array([e.duration_s for e in self.entries], np.float64),
                                 tuple(e.text for e in self.entries))

    def read(self, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        try:
            audio, sample_rate = manifest.load_audio(self.path.parent / entry.path, entry.duration_s)
        except ValueError as e:
            raise ValueError(f"utterance {entry.id!r}: {e}") from e
        example = {"id": entry.id, "audio": audio, "sample_rate": sample_rate, "text": entry.text}
        return example | ({"speaker": entry.speaker} if entry.speaker else {})


class ExampleSource(Source):
    """Examples already decoded in memory (durations from their audio)."""

    def __init__(self, examples: Sequence[dict[str, Any]], name: str = "examples"):
        self.examples, self.name = list(examples), name
        self.metadata = Metadata(
            tuple(e["id"] for e in self.examples),
            np.array([np.size(e["audio"]) / float(e["sample_rate"]) for e in self.examples], np.float64),
            tuple(e["text"] for e in self.examples))

    def read(self, index: int) -> dict[str, Any]:
        return self.examples[index]


class ConcatSource(Source):
    """The utterances of `parts`, one after another (a union of splits)."""

    def __init__(self, parts: Sequence[Source]):
        if not parts:
            raise ValueError("ConcatSource needs at least one source")
        self.parts, self.name = list(parts), "+".join(p.name for p in parts)
        self.starts = np.cumsum([0] + [len(p) for p in parts[:-1]]).tolist()
        self.metadata = Metadata.concat([p.metadata for p in parts])

    def read(self, index: int) -> dict[str, Any]:
        part = bisect.bisect_right(self.starts, index) - 1
        return self.parts[part].read(index - self.starts[part])


def _as_str(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class TfdsSource(Source):
    """A prepared TFDS speech split (`librispeech` by default) through `tfds.data_source`.

    The length index (id, duration, transcript of every record) is built once, by reading each
    record, and cached as `gq_lengths.<split>.json` in the prepared dataset's folder; later
    builds read only that file. Audio int16 -> float32 / 32768. Needs the `librispeech` extra.
    """

    def __init__(self, split: str, data_dir: str | None = None, name: str = "librispeech"):
        import tensorflow_datasets as tfds

        self.data = tfds.data_source(name, split=split, data_dir=data_dir or None)
        self.name = f"tfds:{name}/{split}"
        self.sample_rate = int(self.data.dataset_info.features["speech"].sample_rate)
        index_path = pathlib.Path(self.data.dataset_info.data_dir) / f"gq_lengths.{split}.json"
        self.metadata = self._length_index(index_path)

    def _length_index(self, path: pathlib.Path) -> Metadata:
        if path.exists():
            saved = json.loads(path.read_text())
            if saved["num_records"] == len(self.data):
                return Metadata(tuple(saved["ids"]), np.array(saved["durations_s"], np.float64),
                                tuple(saved["texts"]))
        ids, durations, texts = [], [], []
        for i in tqdm.trange(len(self.data), desc=f"length index {self.name}", unit="utt"):
            record = self.data[i]
            ids.append(_as_str(record["id"]))
            durations.append(len(record["speech"]) / self.sample_rate)
            texts.append(_as_str(record["text"]))
        write_text_atomic(path, json.dumps({"num_records": len(self.data), "ids": ids,
                                            "durations_s": durations, "texts": texts}))
        return Metadata(tuple(ids), np.array(durations, np.float64), tuple(texts))

    def read(self, index: int) -> dict[str, Any]:
        record = self.data[index]
        return {"id": _as_str(record["id"]),
                "audio": np.asarray(record["speech"], np.float32) / INT16_FULL_SCALE,
                "sample_rate": self.sample_rate, "text": _as_str(record["text"]),
                "speaker_id": int(record["speaker_id"]), "chapter_id": int(record["chapter_id"])}
