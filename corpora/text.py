"""Sentences for synth-en: read from Debian text packages, normalised, restricted to a closed vocabulary.

Sources (DATA_SOURCES.md section 2): the quoted examples in WordNet glosses (`wordnet-base`),
fortune cookies (`fortunes`) and the King James Bible (`bible-kjv`). Every sentence is
normalised LibriSpeech-style to upper-case A-Z, space and apostrophe; sentences holding digits
or crude words are dropped, as are those outside 4-25 words. The pool is then restricted to
sentences whose every word is among the `vocab_size` most frequent words of the pool, so that a
small model without a language model can reach a meaningful WER (`VOCAB_SIZE`, 3,000 words, for
the small synth-en sizes; a larger vocabulary gives more sentences and fewer out-of-vocabulary
words on real speech, see `oov_rate`).
"""

from __future__ import annotations

import collections
import functools
import pathlib
import re
import subprocess
from typing import Iterable, Mapping, Sequence

import numpy as np

from corpora import deps

WORDNET_DIR = pathlib.Path("/usr/share/wordnet")
FORTUNES_DIR = pathlib.Path("/usr/share/games/fortunes")
BIBLE_RANGE = "Gen1:1-Rev22:21"
# Only every BIBLE_STRIDE-th verse is read, so that archaic text does not dominate the pool.
BIBLE_STRIDE = 4
MIN_WORDS = 4
MAX_WORDS = 25
VOCAB_SIZE = 3000
ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ '")
# Words that make a fortune unfit to read aloud; a sentence holding one is dropped.
CRUDE_WORDS = frozenset(
    "FUCK FUCKING FUCKED SHIT SHITTY CUNT COCK DICK PUSSY BITCH BASTARD WHORE SLUT NIGGER FAG FAGGOT "
    "RAPE RAPED PENIS VAGINA ORGASM MASTURBATE SEX SEXUAL SEXY NAKED NUDE TITS BREASTS CONDOM ASS ASSHOLE".split()
)
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_WORDNET_EXAMPLE = re.compile(r'"([^"]+)"')


def normalise(text: str) -> str:
    """LibriSpeech-style transcript: upper-case A-Z, apostrophe and single spaces.

    Hyphens and slashes become spaces; other punctuation is removed; quotes that are not
    inside a word (`'tis` keeps its apostrophe, `'hello'` loses both) are removed. Digits are
    kept, so that `is_readable` can reject the sentence rather than silently mis-transcribe it.
    """
    text = text.upper().replace("\u2019", "'").replace("`", "'")
    text = re.sub(r"[-/_]+", " ", text)
    text = re.sub(r"[^A-Z0-9' ]+", " ", text)
    return " ".join(w for w in (w.strip("'") for w in text.split()) if w)


def is_readable(sentence: str, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS) -> bool:
    """True for a normalised sentence of `min_words`..`max_words` words in `ALPHABET`, none crude."""
    words = sentence.split()
    return (
        min_words <= len(words) <= max_words
        and set(sentence) <= ALPHABET
        and not CRUDE_WORDS.intersection(words)
    )


def split_sentences(paragraph: str) -> list[str]:
    """Splits running text at `.`, `!`, `?`, `;` and `:` followed by white space."""
    return [s for s in _SENTENCE_END.split(" ".join(paragraph.split())) if s]


def wordnet_sentences(wordnet_dir: pathlib.Path = WORDNET_DIR) -> list[str]:
    """The quoted usage examples of the WordNet glosses in `data.{noun,verb,adj,adv}`."""
    deps.require("wordnet-base")
    sentences = []
    for part in ("noun", "verb", "adj", "adv"):
        for line in (wordnet_dir / f"data.{part}").read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or "|" not in line:  # licence header
                continue
            sentences.extend(_WORDNET_EXAMPLE.findall(line.split("|", 1)[1]))
    return sentences


def fortune_sentences(fortunes_dir: pathlib.Path = FORTUNES_DIR) -> list[str]:
    """Sentences of the `%`-separated fortune files, without attribution lines (`-- Author`)."""
    deps.require("fortunes")
    sentences = []
    for path in sorted(p for p in fortunes_dir.iterdir() if p.is_file() and not p.suffix):
        for fortune in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            lines = [l for l in fortune.splitlines() if not l.strip().startswith("--")]
            sentences.extend(split_sentences(" ".join(lines)))
    return sentences


def bible_sentences(verse_range: str = BIBLE_RANGE, stride: int = BIBLE_STRIDE) -> list[str]:
    """Sentence pieces of every `stride`-th verse of the King James Bible (`bible -l10000 RANGE`)."""
    deps.require("bible-kjv")
    out = subprocess.run(
        ["bible", "-l10000", verse_range], stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True
    ).stdout
    verses = [re.sub(r"^\s*\d+\s+", "", l) for l in out.splitlines() if re.match(r"^\s*\d+\s+\D", l)]
    return [s for verse in verses[::stride] for s in split_sentences(verse)]


def closed_vocabulary(sentences: Iterable[str], vocab_size: int = VOCAB_SIZE) -> frozenset[str]:
    """The `vocab_size` most frequent words of `sentences` (ties broken alphabetically)."""
    counts = collections.Counter(w for s in sentences for w in s.split())
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return frozenset(w for w, _ in ranked[:vocab_size])


@functools.lru_cache(maxsize=1)
def readable_sentences() -> tuple[str, ...]:
    """Sorted unique readable sentences of all sources, before any vocabulary restriction."""
    raw = wordnet_sentences() + fortune_sentences() + bible_sentences()
    return tuple(sorted({s for s in map(normalise, raw) if is_readable(s)}))


@functools.lru_cache(maxsize=4)
def pool_vocabulary(vocab_size: int = VOCAB_SIZE) -> frozenset[str]:
    """The closed vocabulary of `sentence_pool(vocab_size)`: the `vocab_size` most frequent readable words."""
    return closed_vocabulary(readable_sentences(), vocab_size)


@functools.lru_cache(maxsize=4)
def sentence_pool(vocab_size: int = VOCAB_SIZE) -> tuple[str, ...]:
    """Sorted unique readable sentences of all sources whose words are all in the closed vocabulary."""
    vocab = pool_vocabulary(vocab_size)
    return tuple(s for s in readable_sentences() if vocab.issuperset(s.split()))


def oov_rate(sentences: Iterable[str], vocabulary: Iterable[str]) -> float:
    """Fraction of the word tokens of `sentences` that are not in `vocabulary` (0 for no words)."""
    vocab = frozenset(vocabulary)
    words = [w for s in sentences for w in s.split()]
    return sum(w not in vocab for w in words) / len(words) if words else 0.0


def disjoint_splits(pool: Sequence[str], counts: Mapping[str, int], seed: int) -> dict[str, list[str]]:
    """Draws `counts[split]` sentences per split from `pool` without replacement: splits share none.

    Raises:
      ValueError: if the pool holds fewer sentences than the splits need together.
    """
    needed = sum(counts.values())
    if needed > len(pool):
        raise ValueError(f"splits {dict(counts)} need {needed} sentences; the pool holds only {len(pool)}")
    order = np.random.default_rng(seed).permutation(len(pool))
    splits, start = {}, 0
    for split, count in counts.items():
        splits[split] = [pool[i] for i in order[start : start + count]]
        start += count
    return splits
