"""A small fake LibriSpeech tree with real FLAC audio, for the folder and TFDS loader tests.

Each utterance's audio is a linear chirp whose start frequency and length depend on the utterance,
quantised to int16 so that FLAC stores it exactly: `audio_int16 / 32768` is what a loader must
return, sample for sample.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import soundfile as sf

WORDS = ("THE", "QUICK", "BROWN", "FOX", "JUMPS", "OVER", "LAZY", "DOG", "IT'S", "A", "TEST")


@dataclasses.dataclass(frozen=True)
class FakeUtterance:
    id: str
    text: str
    audio_int16: np.ndarray  # [N]
    sample_rate: int

    @property
    def audio(self) -> np.ndarray:
        return self.audio_int16.astype(np.float32) / 32768.0


def chirp(duration_s: float, f0_hz: float, f1_hz: float, sample_rate: int) -> np.ndarray:
    """int16 [round(duration_s * sample_rate)]: a chirp from f0 to f1 at half full scale."""
    t = np.arange(round(duration_s * sample_rate)) / sample_rate
    phase = 2 * np.pi * (f0_hz * t + (f1_hz - f0_hz) * t**2 / (2 * duration_s))
    return np.round(16384 * np.sin(phase)).astype(np.int16)


def make_utterances(speaker_id: int, chapter_id: int, count: int, seed: int,
                    sample_rate: int = 16000) -> list[FakeUtterance]:
    """`count` utterances of one chapter, with random texts and chirp lengths 0.1-0.4 s."""
    rng = np.random.default_rng([seed, speaker_id, chapter_id])
    utterances = []
    for n in range(count):
        text = " ".join(rng.choice(WORDS, size=rng.integers(2, 6)))
        audio = chirp(rng.uniform(0.1, 0.4), rng.uniform(200, 800), rng.uniform(1000, 4000),
                      sample_rate)
        utterances.append(FakeUtterance(f"{speaker_id}-{chapter_id}-{n:04d}", text, audio,
                                        sample_rate))
    return utterances


def write_split(root: pathlib.Path, split_folder: str,
                utterances: list[FakeUtterance]) -> pathlib.Path:
    """Writes `root/LibriSpeech/{SPEAKERS,CHAPTERS}.TXT` and `root/LibriSpeech/<split_folder>/...`."""
    base = root / "LibriSpeech"
    chapters: dict[tuple[str, str], list[FakeUtterance]] = {}
    for u in utterances:
        speaker, chapter, _ = u.id.split("-")
        chapters.setdefault((speaker, chapter), []).append(u)
    for (speaker, chapter), members in chapters.items():
        folder = base / split_folder / speaker / chapter
        folder.mkdir(parents=True, exist_ok=True)
        lines = [f"{u.id} {u.text}".rstrip() + "\n" for u in members]
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("".join(lines))
        for u in members:
            sf.write(str(folder / f"{u.id}.flac"), u.audio_int16, u.sample_rate, subtype="PCM_16")
    speakers = sorted({s for s, _ in chapters})
    (base / "SPEAKERS.TXT").write_text(
        "; ID |SEX| SUBSET |MINUTES| NAME\n"
        + "".join(f"{s} | F | {split_folder} | 1.00 | Reader {s}\n" for s in speakers))
    (base / "CHAPTERS.TXT").write_text(
        "; ID |READER|MINUTES| SUBSET |PROJ.|BOOK ID| CH. TITLE | PROJECT TITLE\n"
        + "".join(f"{c} | {s} | 1.00 | {split_folder} | 1 | 1 | Chapter {c} | Book\n"
                  for s, c in sorted(chapters)))
    return root


def split_utterances(split_index: int, per_chapter: int = 3) -> list[FakeUtterance]:
    """Two speakers, two chapters each, `per_chapter` utterances per chapter, distinct per split."""
    return [u for speaker in (1272 + 10 * split_index, 2428 + 10 * split_index)
            for chapter in (128104, 83705)
            for u in make_utterances(speaker, chapter, per_chapter, seed=split_index)]


def write_all_splits(root: pathlib.Path, folders: list[str]) -> dict[str, dict[str, FakeUtterance]]:
    """All `folders` (LibriSpeech's seven) under one `root/LibriSpeech`: {folder: {id: utterance}}."""
    expected = {}
    for k, folder in enumerate(folders):
        utterances = split_utterances(k)
        write_split(root, folder, utterances)
        expected[folder] = {u.id: u for u in utterances}
    speakers = sorted({u.id.split("-")[0] for by_id in expected.values() for u in by_id.values()})
    chapters = sorted({tuple(u.id.split("-")[:2]) for by_id in expected.values() for u in by_id.values()})
    (root / "LibriSpeech" / "SPEAKERS.TXT").write_text(
        "; ID |SEX| SUBSET |MINUTES| NAME\n" + "".join(f"{s} | F | any | 1.00 | Reader {s}\n" for s in speakers))
    (root / "LibriSpeech" / "CHAPTERS.TXT").write_text(
        "; ID |READER|MINUTES| SUBSET |PROJ.|BOOK ID| CH. TITLE | PROJECT TITLE\n"
        + "".join(f"{c} | {s} | 1.00 | any | 1 | 1 | Chapter {c} | Book\n" for s, c in chapters))
    return expected
