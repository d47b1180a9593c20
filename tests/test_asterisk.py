"""The Asterisk prompts as a real-speech `real` split: number words, prompt normalisation, decoding."""

import gzip
import logging

import numpy as np
import pytest

from corpora import asterisk, deps, text


@pytest.mark.parametrize(
    "n,words",
    [(0, "ZERO"), (7, "SEVEN"), (13, "THIRTEEN"), (40, "FORTY"), (162, "ONE HUNDRED SIXTY TWO"),
     (500, "FIVE HUNDRED"), (1234, "ONE THOUSAND TWO HUNDRED THIRTY FOUR"), (8500, "EIGHT THOUSAND FIVE HUNDRED")],
)
def test_number_words(n, words):
    assert asterisk.number_words(n) == words


def test_number_words_are_distinct_for_every_number_below_ten_thousand():
    spoken = [asterisk.number_words(n) for n in range(10_000)]
    assert len(set(spoken)) == len(spoken)


@pytest.mark.parametrize(
    "prompt,spoken",
    [
        ("Please press 1 to mute, 2 to lock.", "PLEASE PRESS ONE TO MUTE TWO TO LOCK"),
        ("Enter keywords separated by * and then press #", "ENTER KEYWORDS SEPARATED BY STAR AND THEN PRESS POUND"),
        ("dot [.]", "DOT"),
        ("IAX (note: does not say \"2\")", "IAX"),
        ("at 28.8 kbps", "AT TWENTY EIGHT POINT EIGHT KBPS"),
        ("3D audio enabled", "THREE D AUDIO ENABLED"),
    ],
)
def test_prompts_are_normalised_with_digits_and_symbols_spoken(prompt, spoken):
    assert asterisk.normalise_prompt(prompt) == spoken


@pytest.mark.parametrize("prompt", ["[ascending tones]", "(10 seconds of silence)", "<beep ascending>"])
def test_tones_and_silences_are_dropped(prompt):
    assert asterisk.normalise_prompt(prompt) is None


def test_real_split_is_the_spoken_prompts_decoded_at_16khz():
    examples = list(asterisk.read_split("real"))
    assert 500 <= len(examples) <= 560
    ids = {ex["id"] for ex in examples}
    assert len(ids) == len(examples) and "asterisk-beep" not in ids and "asterisk-silence-1" not in ids
    total_s = 0.0
    for ex in examples:
        assert ex["sample_rate"] == 16000 and ex["audio"].dtype == np.float32 and ex["audio"].ndim == 1
        assert ex["text"] and set(ex["text"]) <= text.ALPHABET
        assert 0.05 < np.max(np.abs(ex["audio"])) <= 1.0  # speech, not silence
        total_s += len(ex["audio"]) / 16000
    assert 20 * 60 < total_s < 30 * 60  # ~25 minutes of prompts
    by_id = {ex["id"]: ex["text"] for ex in examples}
    assert by_id["asterisk-letters-at"] == "AT"


def test_only_the_real_split_exists():
    with pytest.raises(ValueError, match="only the split"):
        next(asterisk.read_split("train"))


def _fake_prompts(tmp_path):
    with gzip.open(tmp_path / "t.txt.gz", "wt") as f:
        f.write("; comment: ignored\nhello: Hello 1.\nbye: Goodbye.\nbeep: [beep tone]\n")
    sounds = tmp_path / "sounds"
    sounds.mkdir()
    (sounds / "hello.g722").write_bytes(
        (asterisk.SOUNDS_DIR / "auth-thankyou.g722").read_bytes()
    )
    return sounds, tmp_path / "t.txt.gz"


def test_a_prompt_without_audio_is_skipped_and_named(tmp_path, caplog):
    sounds, transcripts = _fake_prompts(tmp_path)
    with caplog.at_level(logging.WARNING, logger="corpora.asterisk"):
        examples = list(asterisk.read_split("real", sounds, transcripts))
    assert [(ex["id"], ex["text"]) for ex in examples] == [("asterisk-hello", "HELLO ONE")]
    assert "skipping prompt bye" in caplog.text and "skipped 1 Asterisk prompt(s)" in caplog.text


def test_a_prompt_without_audio_is_an_error_under_strict(tmp_path):
    sounds, transcripts = _fake_prompts(tmp_path)
    with pytest.raises(ValueError, match="prompt 'bye'"):
        list(asterisk.read_split("real", sounds, transcripts, strict=True))


def test_missing_sound_package_raises_with_the_apt_get_line(monkeypatch, tmp_path):
    monkeypatch.setitem(deps.PROBES, "asterisk-core-sounds-en-g722", str(tmp_path / "absent"))
    with pytest.raises(deps.MissingPackageError, match="apt-get install -y --no-install-recommends asterisk-core-sounds-en-g722"):
        next(asterisk.read_split("real"))
