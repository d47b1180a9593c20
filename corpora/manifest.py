"""JSONL manifests of a corpus split: one line per utterance, read without touching the audio.

One line per utterance: `{"id", "path", "text", "duration_s", "engine", "voice", "speed", "pitch"}`,
with `path` relative to the manifest's folder. `id`, `path`, `text` and `duration_s` are required;
the voicing fields (how synth-en made the utterance) are optional, so that any folder of audio
and transcripts can be described by one. `corpora.sources.ManifestSource` serves a manifest as a
lazy split; `load_audio` decodes one file and checks it against its recorded duration.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Iterable

import numpy as np
import soundfile as sf

from corpora.files import write_text_atomic

# A file may differ from its recorded duration by this many samples before it counts as truncated.
DURATION_TOLERANCE_SAMPLES = 2


@dataclasses.dataclass(frozen=True)
class ManifestEntry:
    """One utterance: audio `path` (relative to the manifest), transcript and how it was voiced.

    `speed` is the tempo factor (1.0 = the engine's own rate) and `pitch` the shift in semitones.
    """

    id: str
    path: str
    text: str
    duration_s: float
    engine: str = ""
    voice: str = ""
    speed: float = 1.0
    pitch: float = 0.0

    @property
    def speaker(self) -> str:
        """`engine/voice` (synth-en), or the empty string when the manifest does not say."""
        return f"{self.engine}/{self.voice}" if self.engine or self.voice else ""

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
      ValueError: if the file is unreadable, not mono, or shorter/longer than `expected_duration_s`
        (by more than `DURATION_TOLERANCE_SAMPLES`).
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
            raise ValueError(f"audio {path} disagrees with its duration: {audio.shape[0]} samples, "
                             f"manifest says {expected}")
    return audio[:, 0], sample_rate
