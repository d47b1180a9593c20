"""Real recorded speech for evaluation only: the Asterisk core prompts (one US female speaker, Allison).

The `real` split: the G.722 prompts of `asterisk-core-sounds-en-g722` (16 kHz wideband) decoded
with the `G722` package, their transcripts from `asterisk-core-sounds-en` normalised like
synth-en (digits and the keypad symbols spoken as words: `1` -> ONE, `*` -> STAR, `#` -> POUND),
without the tones and silences. Never use it for training: it is one speaker, and its licence
(CC-BY-SA-3.0) forbids committing the audio; it is installed at run time.
"""

from __future__ import annotations

import gzip
import logging
import pathlib
import re
from typing import Iterator

import numpy as np

from corpora import deps, text

SOUNDS_DIR = pathlib.Path("/usr/share/asterisk/sounds/en_US_f_Allison")
TRANSCRIPTS = pathlib.Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
SPLITS = ("real",)
SAMPLE_RATE = 16000
G722_BIT_RATE = 64000
PACKAGES = ("asterisk-core-sounds-en", "asterisk-core-sounds-en-g722")
SYMBOLS = {"*": " STAR ", "#": " POUND ", "&": " AND ", "%": " PERCENT ", "+": " PLUS ", "=": " EQUALS "}
_ONES = "ZERO ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE TEN ELEVEN TWELVE THIRTEEN FOURTEEN FIFTEEN SIXTEEN " \
        "SEVENTEEN EIGHTEEN NINETEEN".split()
_TENS = "_ _ TWENTY THIRTY FORTY FIFTY SIXTY SEVENTY EIGHTY NINETY".split()
# A whole transcript in brackets describes a non-speech sound: "[ascending tones]", "(1 second of silence)".
_NON_SPEECH = re.compile(r"^\s*(\[[^\]]*\]|\([^)]*\)|<[^>]*>)\s*$")
_ASIDE = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>")
log = logging.getLogger(__name__)


def number_words(n: int) -> str:
    """English cardinal of 0 <= n < 1,000,000 in upper case: 162 -> ONE HUNDRED SIXTY TWO."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"number_words covers 0..999999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " HUNDRED" + ("" if n % 100 == 0 else " " + number_words(n % 100))
    return number_words(n // 1000) + " THOUSAND" + ("" if n % 1000 == 0 else " " + number_words(n % 1000))


def _spell_number(match: re.Match) -> str:
    whole, _, fraction = match.group(0).partition(".")
    spoken = number_words(int(whole))
    if fraction:
        spoken += " POINT " + " ".join(_ONES[int(d)] for d in fraction)
    return f" {spoken} "


def normalise_prompt(prompt: str) -> str | None:
    """The spoken words of a prompt transcript, or None for a tone or silence.

    Bracketed asides ("dot [.]", "(note: ...)") are dropped, keypad symbols and numbers become
    words (`28.8` -> TWENTY EIGHT POINT EIGHT, `3D` -> THREE D), then `text.normalise` applies.
    """
    if _NON_SPEECH.match(prompt):
        return None
    spoken = _ASIDE.sub(" ", prompt)
    for symbol, word in SYMBOLS.items():
        spoken = spoken.replace(symbol, word)
    spoken = re.sub(r"\d+(\.\d+)?", _spell_number, spoken)
    return text.normalise(spoken) or None


def read_transcripts(path: pathlib.Path = TRANSCRIPTS) -> dict[str, str]:
    """`name: text` lines of the gzipped transcript file (`;` comments skipped) as {name: text}."""
    transcripts = {}
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            name, sep, prompt = line.partition(":")
            if sep and not line.startswith(";") and name.strip():
                transcripts[name.strip()] = prompt.strip()
    return transcripts


def decode_g722(path: pathlib.Path) -> np.ndarray:
    """A 16 kHz G.722 (64 kbit/s) file as float32 [N] in [-1, 1].

    Raises:
      ValueError: if the file is empty or decodes to nothing.
    """
    import G722  # the `G722` pip package, a C extension

    data = pathlib.Path(path).read_bytes()
    pcm = np.asarray(G722.G722(SAMPLE_RATE, G722_BIT_RATE).decode(data), dtype=np.int16)
    if pcm.size == 0:
        raise ValueError(f"{path} holds no G.722 audio")
    return pcm.astype(np.float32) / 32768.0


def read_split(
    split: str = "real",
    sounds_dir: pathlib.Path = SOUNDS_DIR,
    transcripts: pathlib.Path = TRANSCRIPTS,
    strict: bool = False,
) -> Iterator[dict]:
    """Yields `{"id", "audio", "sample_rate", "text", "speaker"}` for every spoken prompt, sorted by name.

    A prompt whose audio file is missing or undecodable is skipped with a warning (an error under
    `strict`).

    Raises:
      ValueError: for a split other than "real".
      deps.MissingPackageError: if the Asterisk sound packages are not installed.
    """
    if split not in SPLITS:
        raise ValueError(f"the Asterisk prompts have only the split(s) {SPLITS}, not {split!r}")
    if sounds_dir == SOUNDS_DIR:
        deps.require(*PACKAGES)
    skipped = []
    for name, prompt in sorted(read_transcripts(transcripts).items()):
        spoken = normalise_prompt(prompt)
        if spoken is None:
            continue
        try:
            audio = decode_g722(sounds_dir / f"{name}.g722")
        except (OSError, ValueError) as e:
            if strict:
                raise ValueError(f"prompt {name!r}: {e}") from e
            log.warning("skipping prompt %s: %s", name, e)
            skipped.append(name)
            continue
        yield {"id": "asterisk-" + name.replace("/", "-"), "audio": audio, "sample_rate": SAMPLE_RATE, "text": spoken,
               "speaker": "asterisk/allison"}
    if skipped:
        log.warning("skipped %d Asterisk prompt(s) without readable audio: %s", len(skipped), skipped)
