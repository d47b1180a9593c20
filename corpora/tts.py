"""Text-to-speech engines (flite, festival, espeak-ng) and the sox step that makes their output uniform.

Each engine writes a WAV at its own rate (flite 16 kHz, festival 16 or 32 kHz, espeak-ng
22.05 kHz). `to_16k` then runs one sox command that changes tempo by `speed` and shifts pitch
by `pitch` semitones (one WSOLA pass, see `sox_effects`), resamples to 16 kHz mono and normalises the peak to
-1 dBFS, so speed and pitch mean the same for every engine. Festival is started once per batch
of utterances of one voice (starting it per utterance is ~20x slower).
"""

from __future__ import annotations

import dataclasses
import io
import pathlib
import subprocess
from typing import Sequence

import numpy as np
import soundfile as sf

from corpora import deps

SAMPLE_RATE = 16000
FLITE_VOICES = ("kal16", "awb", "slt", "rms")
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
ESPEAK_ACCENTS = (
    "en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
)
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
ENGINE_PACKAGES = {
    "flite": ("flite", "sox"),
    "festival": ("festival", "festvox-kallpc16k", "festvox-kdlpc16k", "festvox-us-slt-hts", "sox"),
    "espeak-ng": ("espeak-ng", "sox"),
}
PEAK_DBFS = -1.0


@dataclasses.dataclass(frozen=True)
class Voice:
    """A speaker: `engine` in ENGINE_PACKAGES and the engine's voice name.

    flite: one of FLITE_VOICES; festival: one of FESTIVAL_VOICES; espeak-ng: `ACCENT+VARIANT`.
    """

    engine: str
    name: str

    def __post_init__(self):
        known = {"flite": FLITE_VOICES, "festival": FESTIVAL_VOICES}
        if self.engine not in ENGINE_PACKAGES:
            raise ValueError(f"unknown TTS engine {self.engine!r}; expected one of {sorted(ENGINE_PACKAGES)}")
        if self.engine in known and self.name not in known[self.engine]:
            raise ValueError(f"unknown {self.engine} voice {self.name!r}; expected one of {known[self.engine]}")
        if self.engine == "espeak-ng":
            accent, _, variant = self.name.partition("+")
            if accent not in ESPEAK_ACCENTS or variant not in ESPEAK_VARIANTS:
                raise ValueError(
                    f"unknown espeak-ng voice {self.name!r}; expected ACCENT+VARIANT from {ESPEAK_ACCENTS} "
                    f"and {ESPEAK_VARIANTS}"
                )


def _run(cmd: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    """Runs `cmd`, raising RuntimeError with its stderr if it fails."""
    result = subprocess.run(list(cmd), capture_output=True, **kwargs)
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace") if isinstance(result.stderr, bytes) else result.stderr
        raise RuntimeError(f"{cmd[0]} failed (exit {result.returncode}): {stderr.strip()[-500:]}")
    return result


def spoken_form(text: str) -> str:
    """What the engines are given: lower case, since engines spell out all-capital words."""
    return text.lower()


def flite(text: str, voice: str, wav_path: pathlib.Path) -> None:
    """Synthesises `text` with flite voice `voice` into `wav_path` (flite cannot write to stdout)."""
    _run(["flite", "-voice", voice, "-t", spoken_form(text), "-o", str(wav_path)])


def espeak_ng(text: str, voice: str, wav_path: pathlib.Path) -> None:
    """Synthesises `text` with espeak-ng voice `ACCENT+VARIANT` into `wav_path`."""
    _run(["espeak-ng", "-v", voice, "-w", str(wav_path), spoken_form(text)])


def festival_script(texts: Sequence[str], voice: str, wav_paths: Sequence[pathlib.Path]) -> str:
    """A festival Scheme script that selects `voice` once and saves one RIFF WAV per text.

    Texts are normalised (A-Z, space, apostrophe), so they need no escaping inside `"..."`.
    """
    lines = [f"(voice_{voice})"]
    for text, path in zip(texts, wav_paths, strict=True):
        lines.append(f'(utt.save.wave (SynthText "{spoken_form(text)}") "{path}" \'riff)')
    return "\n".join(lines) + "\n"


def festival(texts: Sequence[str], voice: str, wav_paths: Sequence[pathlib.Path]) -> None:
    """Synthesises all `texts` with festival voice `voice` in one `festival -b` process."""
    script = pathlib.Path(wav_paths[0]).with_suffix(".scm")
    script.write_text(festival_script(texts, voice, wav_paths))
    _run(["festival", "-b", str(script)])
    missing = [str(p) for p in wav_paths if not pathlib.Path(p).exists()]
    if missing:
        raise RuntimeError(f"festival ({voice}) wrote no audio for {missing}")


def synthesise(texts: Sequence[str], voices: Sequence[Voice], wav_paths: Sequence[pathlib.Path]) -> None:
    """Voices `texts[i]` with `voices[i]` into `wav_paths[i]`; festival runs once per voice.

    Raises:
      deps.MissingPackageError: if an engine or voice package is not installed.
    """
    for engine in sorted({v.engine for v in voices}):
        deps.require(*ENGINE_PACKAGES[engine])
    festival_jobs: dict[str, list[int]] = {}
    for i, (text, voice, path) in enumerate(zip(texts, voices, wav_paths, strict=True)):
        if voice.engine == "flite":
            flite(text, voice.name, path)
        elif voice.engine == "espeak-ng":
            espeak_ng(text, voice.name, path)
        else:
            festival_jobs.setdefault(voice.name, []).append(i)
    for name, indices in festival_jobs.items():
        festival([texts[i] for i in indices], name, [wav_paths[i] for i in indices])


def sox_effects(speed: float, pitch: float) -> list[str]:
    """sox effects for tempo x`speed` and a `pitch`-semitone shift, at 16 kHz with the peak at PEAK_DBFS.

    With f = 2^(pitch / 12), WSOLA `tempo` by speed / f then resampling by `speed` f (which scales
    tempo and pitch by f) gives tempo x`speed` and pitch x f in one WSOLA pass (sox's own `pitch`
    effect is the same pair, so `tempo` + `pitch` would run WSOLA twice).
    """
    if not speed > 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    factor = 2 ** (pitch / 12)
    effects = []
    if speed != factor:
        effects += ["tempo", "-s", f"{speed / factor:.5f}"]
    if pitch != 0.0:
        effects += ["speed", f"{factor:.5f}"]
    return effects + ["rate", str(SAMPLE_RATE), "gain", "-n", str(PEAK_DBFS)]


def to_16k(wav_path: pathlib.Path, speed: float = 1.0, pitch: float = 0.0) -> np.ndarray:
    """Reads an engine's WAV through sox: float32 [N] at 16 kHz mono with tempo and pitch applied.

    `-R` seeds sox's dither generator, so the same input gives bit-identical output.
    """
    out = _run(["sox", "-R", str(wav_path), "-t", "wav", "-b", "16", "-c", "1", "-"] + sox_effects(speed, pitch)).stdout
    audio, sample_rate = sf.read(io.BytesIO(out), dtype="float32")
    if sample_rate != SAMPLE_RATE:
        raise RuntimeError(f"sox returned {sample_rate} Hz for {wav_path}; expected {SAMPLE_RATE}")
    return audio
