"""JSONL manifests of a corpus split, and a reader that yields the common example dict from one.

One line per utterance: `{"id", "path", "text", "duration_s", "engine", "voice", "speed", "pitch"}`,
with `path` relative to the manifest's folder. The reader turns each line into
`{"id": str, "audio": float32 [N] in [-1, 1], "sample_rate": 16000, "text": str, "speaker": str}`.
Unreadable or truncated audio is skipped and named in a log line (an error under `strict`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
from typing import Iterable, Iterator

import numpy as np
import soundfile as sf

from corpora.files import write_text_atomic

SAMPLE_RATE = 16000
# A file may differ from its recorded duration by this many samples before it counts as truncated.
DURATION_TOLERANCE_SAMPLES = 2
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ManifestEntry:
    """One utterance: audio `path` (relative to the manifest), transcript and how it was voiced.

    `speed` is the tempo factor (1.0 = the engine's own rate) and `pitch` the shift in semitones.
    """

    id: str
    path: str
    text: str
    duration_s: float
    engine: str
    voice: str
    speed: float
    pitch: float

    def __post_init__(self):
        if not self.id or not self.path:
            raise ValueError(f"manifest entry needs a non-empty id and path, got id={self.id!r} path={self.path!r}")
        if not self.text.strip():
            raise ValueError(f"manifest entry {self.id!r} has an empty transcript")
        if not self.duration_s > 0:
            raise ValueError(f"manifest entry {self.id!r} has duration_s={self.duration_s}; expected > 0")


def write_manifest(path: pathlib.Path, entries: Iterable[ManifestEntry]) -> None:
    """Writes `entries` as JSON lines, atomically (a reader never sees a half-written manifest)."""
    text = "".join(json.dumps(dataclasses.asdict(entry), sort_keys=True) + "\n" for entry in entries)
    write_text_atomic(path, text)


def read_manifest(path: pathlib.Path) -> list[ManifestEntry]:
    """Parses a JSONL manifest.

    Raises:
      ValueError: naming the file and line of a malformed entry.
    """
    path = pathlib.Path(path)
    entries = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(ManifestEntry(**json.loads(line)))
        except (json.JSONDecodeError, TypeError, ValueError) as e:
            raise ValueError(f"{path}:{line_no}: bad manifest entry: {e}") from e
    return entries


def load_audio(path: pathlib.Path, expected_duration_s: float | None = None) -> tuple[np.ndarray, int]:
    """Reads a mono file as float32 in [-1, 1]: `(audio [N], sample_rate)`.

    Raises:
      ValueError: if the file is unreadable, not mono, or shorter/longer than `expected_duration_s`.
    """
    try:
        audio, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise ValueError(f"unreadable audio {path}: {e}") from e
    if audio.shape[1] != 1:
        raise ValueError(f"{path} has {audio.shape[1]} channels; expected mono")
    if expected_duration_s is not None:
        expected = round(expected_duration_s * sample_rate)
        if abs(audio.shape[0] - expected) > DURATION_TOLERANCE_SAMPLES:
            raise ValueError(f"truncated audio {path}: {audio.shape[0]} samples, manifest says {expected}")
    return audio[:, 0], sample_rate


def read_examples(manifest_path: pathlib.Path, strict: bool = False) -> Iterator[dict]:
    """Yields the common example dict for every readable utterance of a manifest.

    Unreadable or truncated files are skipped; each is named in a warning, and a final warning
    counts them. Under `strict` the first such file raises instead.

    Raises:
      ValueError: for a sample rate other than 16 kHz (always), or bad audio under `strict`.
    """
    manifest_path = pathlib.Path(manifest_path)
    skipped = []
    for entry in read_manifest(manifest_path):
        try:
            audio, sample_rate = load_audio(manifest_path.parent / entry.path, entry.duration_s)
        except ValueError as e:
            if strict:
                raise
            log.warning("skipping utterance %s: %s", entry.id, e)
            skipped.append(entry.id)
            continue
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"utterance {entry.id!r} is sampled at {sample_rate} Hz; expected {SAMPLE_RATE}")
        yield {
            "id": entry.id,
            "audio": audio,
            "sample_rate": sample_rate,
            "text": entry.text,
            "speaker": f"{entry.engine}/{entry.voice}",
        }
    if skipped:
        log.warning("%s: skipped %d unreadable or truncated utterance(s): %s", manifest_path, len(skipped), skipped)
