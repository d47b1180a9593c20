"""Token n-gram language model (interpolated Kneser-Ney) for shallow fusion in beam search.

The model counts the token ids of training transcripts (any tokenizer's: characters or
sentencepiece), each sentence left-padded with N - 1 start symbols <s>, and estimates (Kneser &
Ney, 1995; Chen & Goodman, 1999, interpolated with one discount per order)

    P_n(w | h) = max(c_n(h w) - D_n, 0) / c_n(h) + D_n N_n(h) / c_n(h) * P_{n-1}(w | h')

for a context h of n - 1 tokens whose last n - 2 are h'. c_N counts the N-grams; a lower order's
c_n(g) is the continuation count of g: the number of distinct tokens seen before it. N_n(h) is the
number of distinct tokens seen after h, D_n = n1 / (n1 + 2 n2) from the numbers of n-grams counted
once and twice, P_0 is uniform over the V - 1 non-blank ids, and an unseen context (c_n(h) = 0)
gives P_n = P_{n-1}. P(blank) = 0: the blank id is never a text token.

An n-gram (t_1, ..., t_n) is stored as the integer code sum_k t_k B^(n-k), B = V + 1 (digit V is
<s>), so the n-grams with context h fill the code range [code(h) B, code(h) B + B) of the sorted
codes of order n, and a context's distribution takes one binary search per order.

    python -m models.ngram --tokenizer results/models/rnnt_synth_large/tokenizer.json \\
        --manifest data/synth-en-large/train.jsonl --order 6 --out runs/lm/char6.npz

`eval.py --beam 4 --lm runs/lm/char6.npz --lm_weight W` fuses it into modified beam search
(`models.decoding.LMFusion`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import pathlib
import sys
from typing import Iterable, Sequence

import numpy as np

from corpora import manifest
from corpora import tokenizer as tokenizer_lib

CACHE_CONTEXTS = 200_000  # distributions kept per model (a beam search asks for the same contexts often)


@dataclasses.dataclass(frozen=True, eq=False)
class NgramLM:
    """Counts of an order-N token n-gram model over ids 0..V-1 (see the module docstring).

    codes[n-1], counts[n-1]: the sorted codes of the order-n n-grams and their counts (raw at
    order N, continuation counts below); discounts[n-1]: D_n; pieces: the tokenizer's text of each
    id 1..V-1, which ties the model to the tokenizer it was counted with.
    """

    order: int
    vocab_size: int
    codes: tuple[np.ndarray, ...]
    counts: tuple[np.ndarray, ...]
    discounts: tuple[float, ...]
    pieces: tuple[str, ...]

    @property
    def base(self) -> int:
        return self.vocab_size + 1

    @functools.cached_property
    def _cache(self) -> dict[tuple[int, ...], np.ndarray]:
        return {}

    def log_probs(self, history: Sequence[int]) -> np.ndarray:
        """Natural-log P(w | the last N - 1 ids of `history`) for every id w, `[V]` (blank: -inf)."""
        context = tuple(history[max(0, len(history) - (self.order - 1)):]) if self.order > 1 else ()
        if context not in self._cache:
            if len(self._cache) >= CACHE_CONTEXTS:
                self._cache.clear()
            padded = (self.vocab_size,) * (self.order - 1 - len(context)) + context
            with np.errstate(divide="ignore"):
                self._cache[context] = np.log(self._probs(padded))
        return self._cache[context]

    def _probs(self, padded: tuple[int, ...]) -> np.ndarray:
        probs = np.full(self.vocab_size, 1.0 / (self.vocab_size - 1))
        probs[tokenizer_lib.BLANK_ID] = 0.0
        for n in range(1, self.order + 1):
            context_code = 0
            for token in padded[len(padded) - (n - 1):] if n > 1 else ():
                context_code = context_code * self.base + token
            lo, hi = np.searchsorted(self.codes[n - 1], [context_code * self.base, (context_code + 1) * self.base])
            counts = self.counts[n - 1][lo:hi]
            total = counts.sum()
            if total == 0:
                continue
            discount = self.discounts[n - 1]
            lower = probs * (discount * len(counts) / total)
            lower[self.codes[n - 1][lo:hi] % self.base] += np.maximum(counts - discount, 0.0) / total
            probs = lower
        return probs

    def sentence_log_prob(self, ids: Sequence[int]) -> float:
        """Natural-log probability of the tokens `ids` after <s> (no end-of-sentence term)."""
        return float(sum(self.log_probs(ids[:i])[token] for i, token in enumerate(ids)))


def _discount(counts: np.ndarray) -> float:
    """D = n1 / (n1 + 2 n2) of the count-of-counts, kept in [0.1, 0.9]; 0.5 without n1 or n2."""
    n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
    return float(np.clip(n1 / (n1 + 2 * n2), 0.1, 0.9)) if n1 and n2 else 0.5


def _window_codes(padded: np.ndarray, positions: np.ndarray, n: int, base: int) -> np.ndarray:
    """Codes of the n-grams of `padded` ending at `positions`."""
    codes = np.zeros(len(positions), np.int64)
    for k in range(n - 1, -1, -1):
        codes = codes * base + padded[positions - k]
    return codes


def count(sequences: Iterable[Sequence[int]], vocab_size: int, order: int, pieces: Sequence[str]) -> NgramLM:
    """Counts an order-`order` model over the id sequences (ids 1..vocab_size-1).

    Raises ValueError for order < 1, an id out of range, no tokens, or codes that overflow int64.
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    base = vocab_size + 1
    if base ** order >= 2 ** 63:
        raise ValueError(f"order {order} with {vocab_size} ids overflows the int64 n-gram codes; "
                         f"use order <= {int(np.log(2.0 ** 63) / np.log(base))}")
    pad = [vocab_size] * (order - 1)
    chunks = []
    for i, ids in enumerate(sequences):
        bad = [t for t in ids if not 0 < t < vocab_size]
        if bad:
            raise ValueError(f"sequence {i} holds ids outside 1..{vocab_size - 1}: {bad[:5]}")
        chunks.append(np.asarray(pad + list(ids), np.int64))
    padded = np.concatenate(chunks) if chunks else np.zeros(0, np.int64)
    positions = np.flatnonzero(padded != vocab_size)
    if not len(positions):
        raise ValueError("no tokens to count")
    codes, counts = [], []
    top_codes, top_counts = np.unique(_window_codes(padded, positions, order, base), return_counts=True)
    codes.append(top_codes)
    counts.append(top_counts)
    for n in range(order - 1, 0, -1):  # continuation counts: distinct left neighbours of each n-gram
        lower, lower_counts = np.unique(codes[-1] % base ** n, return_counts=True)
        codes.append(lower)
        counts.append(lower_counts)
    codes.reverse()
    counts.reverse()
    return NgramLM(order, vocab_size, tuple(codes), tuple(c.astype(np.float64) for c in counts),
                   tuple(_discount(c) for c in counts), tuple(pieces))


def tokenizer_pieces(tokenizer: tokenizer_lib.Tokenizer) -> tuple[str, ...]:
    """The text of each id 1..V-1 (what `NgramLM.pieces` checks a model's tokenizer against)."""
    return tuple(tokenizer.decode([i]) for i in range(1, tokenizer.vocab_size))


def check_tokenizer(lm: NgramLM, tokenizer: tokenizer_lib.Tokenizer, where: str) -> None:
    """ValueError naming `where` unless `tokenizer` has the ids and pieces `lm` was counted with."""
    pieces = tokenizer_pieces(tokenizer)
    if lm.vocab_size != tokenizer.vocab_size or lm.pieces != pieces:
        differ = [i + 1 for i, (a, b) in enumerate(zip(lm.pieces, pieces)) if a != b][:5]
        raise ValueError(f"the language model {where} was counted with another tokenizer: "
                         f"{lm.vocab_size} ids against the model's {tokenizer.vocab_size}"
                         + (f", ids {differ} differ" if differ else ""))


def save(lm: NgramLM, path: str | pathlib.Path) -> None:
    """Writes `lm` as one .npz file (`load` reads it back)."""
    arrays = {f"codes_{n}": c for n, c in enumerate(lm.codes, 1)}
    arrays.update({f"counts_{n}": c for n, c in enumerate(lm.counts, 1)})
    header = {"order": lm.order, "vocab_size": lm.vocab_size, "discounts": list(lm.discounts),
              "pieces": list(lm.pieces)}
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez_compressed(f, header=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)


def load(path: str | pathlib.Path) -> NgramLM:
    """The model `save` wrote to `path`; ValueError naming the file when it is not one."""
    try:
        with np.load(path) as files:
            header = json.loads(files["header"].tobytes().decode())
            order = header["order"]
            codes = tuple(files[f"codes_{n}"] for n in range(1, order + 1))
            counts = tuple(files[f"counts_{n}"] for n in range(1, order + 1))
    except (KeyError, ValueError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path} is not a language model written by models.ngram.save ({e})") from e
    return NgramLM(order, header["vocab_size"], codes, counts, tuple(header["discounts"]), tuple(header["pieces"]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", required=True, help="tokenizer.json of the model to fuse with "
                        "(a published model's, or a workdir's)")
    parser.add_argument("--manifest", required=True, action="append",
                        help="a .jsonl manifest whose texts are counted (repeat for more)")
    parser.add_argument("--order", type=int, default=6, help="N, the n-gram order (default 6)")
    parser.add_argument("--out", required=True, help="the .npz file to write")
    args = parser.parse_args(argv)
    try:
        tokenizer = tokenizer_lib.load(args.tokenizer)
        entries = [entry for path in args.manifest for entry in manifest.read_manifest(path)]
        lm = count((tokenizer.encode(entry.text, entry.id) for entry in entries),
                   tokenizer.vocab_size, args.order, tokenizer_pieces(tokenizer))
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"models.ngram: error: {e}")
    save(lm, args.out)
    sizes = ", ".join(f"{len(c):,}" for c in lm.codes)
    print(f"{args.out}: order {lm.order}, {len(entries):,} sentences, n-grams per order {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
