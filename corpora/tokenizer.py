"""Tokenizers: transcript text <-> label ids, with id 0 reserved for the CTC/transducer blank.

Two tokenizers share one interface (`Tokenizer`):

- `CharTokenizer`: blank, then `A`-`Z`, space, apostrophe (29 ids), the LibriSpeech alphabet.
- `SentencePieceTokenizer`: sub-word units trained on training transcripts
  (`SentencePieceTokenizer.train`), for the LibriSpeech recipes.

Both save to one JSON file (`tok.save(path)`) that `load(path)` reads back, whichever kind it is.
`encode` never returns the blank id, and raises `ValueError` naming the utterance id and the
offending characters when the text holds characters outside the tokenizer's alphabet.
"""

from __future__ import annotations

import base64
import io
import json
import os
from typing import Iterable, Protocol, Sequence

import sentencepiece as spm

from corpora.files import write_text_atomic

BLANK_ID = 0
CHAR_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ '"


class Tokenizer(Protocol):
    """What every tokenizer offers: `encode`/`decode`, `vocab_size`, `blank_id` and `save`."""

    vocab_size: int
    blank_id: int

    def encode(self, text: str, utterance_id: str | None = None) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def save(self, path: str | os.PathLike) -> None: ...


def _check_alphabet(text: str, alphabet: str, utterance_id: str | None) -> None:
    """Raises `ValueError` naming the utterance and characters of `text` outside `alphabet`."""
    bad = sorted({c for c in text if c not in alphabet})
    if bad:
        where = f"utterance {utterance_id!r}" if utterance_id is not None else "text"
        raise ValueError(
            f"{where} holds characters outside the tokenizer's alphabet: {bad!r} in {text!r}; "
            f"expected only {alphabet!r} (normalise the transcript first)")


class CharTokenizer:
    """Characters: id 0 is the blank, ids 1..len(alphabet) are the alphabet's characters in order."""

    blank_id = BLANK_ID

    def __init__(self, alphabet: str = CHAR_ALPHABET):
        if len(set(alphabet)) != len(alphabet):
            raise ValueError(f"alphabet {alphabet!r} repeats a character")
        self.alphabet = alphabet
        self.vocab_size = len(alphabet) + 1
        self._ids = {c: i + 1 for i, c in enumerate(alphabet)}

    def encode(self, text: str, utterance_id: str | None = None) -> list[int]:
        """`text` -> one id in 1..vocab_size-1 per character."""
        _check_alphabet(text, self.alphabet, utterance_id)
        return [self._ids[c] for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        """ids -> text, dropping blanks (collapsing CTC repeats is the decoder's job)."""
        return "".join(self.alphabet[i - 1] for i in ids if i != self.blank_id)

    def save(self, path: str | os.PathLike) -> None:
        write_text_atomic(path, json.dumps({"kind": "char", "alphabet": self.alphabet}))


class SentencePieceTokenizer:
    """Sentencepiece sub-words: id 0 is the blank (sentencepiece's pad piece), id 1 is `<unk>`.

    The alphabet is every character of the model's pieces (`▁` read as space); sentencepiece
    itself collapses runs of spaces and strips the ends, so `decode(encode(t))` is `t` for
    normalised text.
    """

    blank_id = BLANK_ID

    def __init__(self, model_proto: bytes):
        self.model_proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        if self._sp.pad_id() != BLANK_ID:
            raise ValueError(
                f"sentencepiece model has pad id {self._sp.pad_id()}; expected the blank id "
                f"{BLANK_ID} (train it with SentencePieceTokenizer.train)")
        self.vocab_size = self._sp.get_piece_size()
        self.alphabet = "".join(sorted({
            c
            for i in range(self.vocab_size)
            if not (self._sp.is_control(i) or self._sp.is_unknown(i))
            for c in self._sp.id_to_piece(i).replace("\u2581", " ")
        }))

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 256,
              model_type: str = "unigram") -> SentencePieceTokenizer:
        """Trains on `texts` (the training transcripts); every character seen becomes a piece.

        `vocab_size` is a ceiling (blank and `<unk>` included): a small corpus gets fewer pieces.
        """
        texts = [t for t in texts if t.strip()]
        if not texts:
            raise ValueError("no non-empty transcripts to train sentencepiece on")
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size,
            model_type=model_type, character_coverage=1.0, pad_id=BLANK_ID, pad_piece="<blank>",
            unk_id=1, bos_id=-1, eos_id=-1, hard_vocab_limit=False, num_threads=1,
            minloglevel=2)
        return cls(model.getvalue())

    def encode(self, text: str, utterance_id: str | None = None) -> list[int]:
        """`text` -> piece ids in 2..vocab_size-1."""
        _check_alphabet(text, self.alphabet, utterance_id)
        return list(self._sp.encode(text))

    def decode(self, ids: Sequence[int]) -> str:
        """ids -> text, dropping blanks."""
        return self._sp.decode([int(i) for i in ids if i != self.blank_id])

    def save(self, path: str | os.PathLike) -> None:
        write_text_atomic(path, json.dumps(
            {"kind": "sentencepiece", "model_proto": base64.b64encode(self.model_proto).decode("ascii")}))


def load(path: str | os.PathLike) -> CharTokenizer | SentencePieceTokenizer:
    """Reads a tokenizer written by `save`, whichever kind it is."""
    with open(path) as f:
        saved = json.load(f)
    if saved.get("kind") == "char":
        return CharTokenizer(saved["alphabet"])
    if saved.get("kind") == "sentencepiece":
        return SentencePieceTokenizer(base64.b64decode(saved["model_proto"]))
    raise ValueError(f"{path}: unknown tokenizer kind {saved.get('kind')!r}; "
                     "expected 'char' or 'sentencepiece'")
