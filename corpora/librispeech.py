"""LibriSpeech from a plain folder (the extracted tarballs) or from TFDS, as the common example dict.

Both loaders yield `{"id": "84-121123-0000", "audio": float32 [N] in [-1, 1], "sample_rate": int,
"text": str, "speaker_id": int, "chapter_id": int}`: the folder loader in utterance-id order,
the TFDS loader in the prepared dataset's (fixed) record order.

Folder layout (what the openslr tarballs extract to):

    <root>/LibriSpeech/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
    <root>/LibriSpeech/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<NNNN>.flac

TFDS: `tfds.data_source('librispeech', split=..., data_dir=...)` over a prepared `librispeech`
dataset (int16 audio, stored decoded). Splits are named either way: `dev_clean` (TFDS) or
`dev-clean` (folder).

Multi-host: with P processes, process p reads only utterances p, p + P, p + 2P, ... of the
split's fixed order, so the shards are disjoint and together cover the split. `process_index` and
`process_count` default to `jax.process_index()` and `jax.process_count()`.
"""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import soundfile as sf

log = logging.getLogger(__name__)

# TFDS split name -> folder name.
SPLITS = {
    "dev_clean": "dev-clean",
    "dev_other": "dev-other",
    "test_clean": "test-clean",
    "test_other": "test-other",
    "train_clean100": "train-clean-100",
    "train_clean360": "train-clean-360",
    "train_other500": "train-other-500",
}
INT16_FULL_SCALE = 32768.0


def tfds_split_name(split: str) -> str:
    """`dev-clean` or `dev_clean` -> `dev_clean`."""
    return {folder: name for name, folder in SPLITS.items()}[folder_split_name(split)]


def folder_split_name(split: str) -> str:
    """`dev_clean` or `dev-clean` -> `dev-clean`."""
    if split in SPLITS.values():
        return split
    if split in SPLITS:
        return SPLITS[split]
    raise ValueError(f"unknown LibriSpeech split {split!r}; expected one of {sorted(SPLITS)} "
                     f"or {sorted(SPLITS.values())}")


def shard_indices(num_items: int, process_index: int | None = None,
                  process_count: int | None = None) -> range:
    """Indices of `num_items` that process `process_index` of `process_count` reads."""
    if process_index is None or process_count is None:
        import jax
        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} outside [0, process_count={process_count})")
    return range(process_index, num_items, process_count)


def _transcript_files(root: pathlib.Path, split: str | None) -> list[pathlib.Path]:
    if split is None:
        search = root
    else:
        name = folder_split_name(split)
        candidates = [root / "LibriSpeech" / name, root / name]
        found = [c for c in candidates if c.is_dir()]
        if not found:
            raise FileNotFoundError(f"no LibriSpeech split {name!r} under {root}: looked for "
                                    f"{[str(c) for c in candidates]}")
        search = found[0]
    files = sorted(search.rglob("*.trans.txt"))
    if not files:
        raise FileNotFoundError(f"no *.trans.txt transcripts under {search}")
    return files


def _parse_transcripts(path: pathlib.Path) -> list[tuple[str, str]]:
    """`(utterance id, text)` for every line `<id> <TEXT>` of a `.trans.txt` file.

    A line holding only an id has the empty transcript `""` (rejected later, when batching).
    """
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            utterance_id, _, text = line.strip().partition(" ")
            pairs.append((utterance_id, text.strip()))
    return pairs


def _ids_of(utterance_id: str) -> dict[str, int]:
    speaker, chapter, _ = utterance_id.split("-")
    return {"speaker_id": int(speaker), "chapter_id": int(chapter)}


def read_folder(root: str | os.PathLike, split: str | None = None, *,
                process_index: int | None = None, process_count: int | None = None,
                strict: bool = False) -> Iterator[dict[str, Any]]:
    """Yields this process's share of the utterances under `root`, in id order.

    Args:
      root: a folder holding `LibriSpeech/`, the `LibriSpeech/` folder itself, or a split folder.
      split: one split (`dev-clean` or `dev_clean`); None reads every transcript under `root`.
      process_index, process_count: this process's shard (default: from jax).
      strict: raise on unreadable audio instead of skipping it with a logged warning.
    """
    root = pathlib.Path(root)
    utterances = sorted(
        (utterance_id, text, path.parent / f"{utterance_id}.flac")
        for path in _transcript_files(root, split)
        for utterance_id, text in _parse_transcripts(path))
    skipped = []
    for i in shard_indices(len(utterances), process_index, process_count):
        utterance_id, text, audio_path = utterances[i]
        try:
            audio, sample_rate = sf.read(str(audio_path), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            if strict:
                raise ValueError(f"utterance {utterance_id!r}: unreadable audio {audio_path}: {e}") from e
            log.warning("skipping utterance %s: unreadable audio %s: %s", utterance_id, audio_path, e)
            skipped.append(utterance_id)
            continue
        if audio.shape[1] != 1:
            raise ValueError(f"utterance {utterance_id!r}: {audio_path} has {audio.shape[1]} "
                             "channels; expected mono")
        yield {"id": utterance_id, "audio": audio[:, 0], "sample_rate": sample_rate, "text": text,
               **_ids_of(utterance_id)}
    if skipped:
        log.warning("%s: skipped %d unreadable utterance(s): %s", root, len(skipped), skipped)


def _as_str(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class TfdsExamples(Sequence):
    """Random access to a prepared TFDS `librispeech` split, as common example dicts.

    `examples[i]` decodes record i of `tfds.data_source('librispeech', split, data_dir)`: audio
    int16 -> float32 / 32768. Needs tensorflow, tensorflow-datasets, pydub and ffmpeg (the
    `librispeech` extra of pyproject.toml).
    """

    def __init__(self, split: str, data_dir: str | os.PathLike | None = None,
                 name: str = "librispeech"):
        import tensorflow_datasets as tfds

        self.source = tfds.data_source(name, split=tfds_split_name(split),
                                       data_dir=None if data_dir is None else str(data_dir))
        self.sample_rate = int(self.source.dataset_info.features["speech"].sample_rate)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.source[index]
        return {
            "id": _as_str(record["id"]),
            "audio": np.asarray(record["speech"], np.float32) / INT16_FULL_SCALE,
            "sample_rate": self.sample_rate,
            "text": _as_str(record["text"]),
            "speaker_id": int(record["speaker_id"]),
            "chapter_id": int(record["chapter_id"]),
        }


def read_tfds(split: str, data_dir: str | os.PathLike | None = None, *,
              process_index: int | None = None,
              process_count: int | None = None) -> Iterator[dict[str, Any]]:
    """Yields this process's share of a prepared TFDS LibriSpeech split, in stored record order."""
    examples = TfdsExamples(split, data_dir)
    for i in shard_indices(len(examples), process_index, process_count):
        yield examples[i]
