"""Paired statistics of WER differences: per-utterance scores and a paired bootstrap over utterances.

Two systems A and B scored on the same n utterances give per utterance i its word errors e_i
(substitutions + deletions + insertions) and reference words w_i. Corpus WER is a ratio of sums,
WER = Σ_i e_i / Σ_i w_i, and the errors of one utterance are correlated (and with the other
system's on that utterance), so words are not independent trials. The paired bootstrap resamples
whole utterances, with the same indices for both systems:

    for r = 1..R:  I_r = n indices drawn uniformly with replacement from 1..n
                   Δ_r = Σ_{i∈I_r} e^B_i / Σ_{i∈I_r} w^B_i − Σ_{i∈I_r} e^A_i / Σ_{i∈I_r} w^A_i
    interval     = the (1 − level)/2 and (1 + level)/2 percentiles of Δ_1..Δ_R

around the observed Δ = WER_B − WER_A (Efron & Tibshirani, "An Introduction to the Bootstrap",
ch. 13, percentile interval; Bisani & Ney, "Bootstrap estimates for confidence intervals in ASR
performance evaluation", ICASSP 2004, for the paired use in ASR).

"Lossless" (GQ_METHOD.md, "How a claim is judged"): B loses nothing against the float model when
the interval's upper end is at most +2 % relative of the float WER, high <= 0.02 · WER_float.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jiwer
import numpy as np

LOSSLESS_RELATIVE = 0.02  # the interval's upper end may exceed the float WER by 2 % of it
RESAMPLES = 2_000  # >= 1000; on 2,500 utterances at 5 % WER the interval ends move by ~0.002 points (sd over seeds)
SEED = 0
# The per-utterance fields of a split's scores in eval.json (`utterance_record`), read by the report.
UTTERANCE_ERRORS, UTTERANCE_WORDS = "utterance_errors", "utterance_words"
LEVEL = 0.95
_CHUNK_ELEMENTS = 1 << 21  # indices per chunk of resamples (16 MiB of int64, and their counts)


def utterance_scores(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(errors, words): int64 [n] word errors S + D + I and reference words of each utterance, by
    jiwer's alignment (the one `training.evaluate.scores` sums over the split), so that
    errors.sum() / words.sum() is that split's corpus WER.

    Raises:
      ValueError when the lists differ in length or are empty.
    """
    if len(references) != len(hypotheses) or not references:
        raise ValueError(f"need as many hypotheses as references (> 0), got {len(references)} "
                         f"references and {len(hypotheses)} hypotheses")
    out = jiwer.process_words(list(references), list(hypotheses))
    errors, words = np.zeros(len(references), np.int64), np.zeros(len(references), np.int64)
    for i, chunks in enumerate(out.alignments):
        for chunk in chunks:  # equal, substitute and delete span reference words; insert does not
            if chunk.type == "insert":
                errors[i] += chunk.hyp_end_idx - chunk.hyp_start_idx
                continue
            span = chunk.ref_end_idx - chunk.ref_start_idx
            words[i] += span
            errors[i] += 0 if chunk.type == "equal" else span
    return errors, words


def utterance_record(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, list[int]]:
    """{"utterance_errors": [...], "utterance_words": [...]} (`utterance_scores` as lists): the
    fields to add to a split's scores in eval.json so the report can pair runs utterance by
    utterance (the utterance order of `training.evaluate.transcribe` is the same for every model)."""
    errors, words = utterance_scores(references, hypotheses)
    return {UTTERANCE_ERRORS: errors.tolist(), UTTERANCE_WORDS: words.tolist()}


class WerDifference(NamedTuple):
    """A paired comparison of B against A on the same utterances (WERs as fractions, not %).

    Attributes:
      wer_a, wer_b: the corpus WERs Σe/Σw of A and B.
      difference: wer_b − wer_a (absolute; × 100 for WER points).
      relative: difference / wer_a (None when wer_a = 0).
      low, high: the paired bootstrap percentile interval of the difference at `level`.
      level: the interval's coverage, e.g. 0.95.
      resamples: R, the number of bootstrap resamples.
      utterances: n.
    """

    wer_a: float
    wer_b: float
    difference: float
    relative: float | None
    low: float
    high: float
    level: float
    resamples: int
    utterances: int


def _as_counts(name: str, values: Sequence[int] | np.ndarray, n: int | None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or (n is not None and array.shape[0] != n):
        raise ValueError(f"{name} must be a 1-D sequence of {n if n is not None else 'n'} "
                         f"per-utterance counts, got shape {array.shape}")
    if np.any(array < 0) or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must hold finite counts >= 0")
    return array


def resampled_wer_differences(errors_a: np.ndarray, words_a: np.ndarray, errors_b: np.ndarray,
                              words_b: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Δ_r for r = 1..R: [R] float64, WER_B − WER_A on the r-th resample of utterances (the same
    indices for both systems; `np.random.default_rng(seed)`, R rows of n indices drawn in order).

    A resample whose reference words sum to 0 has WER 0 (errors are then insertions only: that
    system's WER is undefined; only a split of empty references can draw one).
    """
    n = errors_a.shape[0]
    rng = np.random.default_rng(seed)
    table = np.stack([errors_a, words_a, errors_b, words_b])  # [4, n]
    rows = max(1, _CHUNK_ELEMENTS // n)
    deltas = np.empty(resamples, np.float64)
    for start in range(0, resamples, rows):
        count = min(rows, resamples - start)
        indices = rng.integers(0, n, size=(count, n))
        offsets = (np.arange(count) * n)[:, None]
        times_drawn = np.bincount((indices + offsets).ravel(), minlength=count * n).reshape(count, n)
        sums = table @ times_drawn.T.astype(np.float64)  # [4, count]: Σ over each resample
        wer_a = np.divide(sums[0], sums[1], out=np.zeros(count), where=sums[1] > 0)
        wer_b = np.divide(sums[2], sums[3], out=np.zeros(count), where=sums[3] > 0)
        deltas[start:start + count] = wer_b - wer_a
    return deltas


def paired_bootstrap(errors_a: Sequence[int] | np.ndarray, words_a: Sequence[int] | np.ndarray,
                     errors_b: Sequence[int] | np.ndarray, words_b: Sequence[int] | np.ndarray | None = None,
                     *, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = SEED) -> WerDifference:
    """WER_B − WER_A and its paired bootstrap percentile interval over utterances (module docstring).

    Args:
      errors_a, words_a: [n] per-utterance word errors and reference words of system A.
      errors_b, words_b: the same for system B on the same utterances in the same order
        (`words_b` None: A's, the usual case of one reference transcript).
      resamples: R >= 1000.
      level: the interval's coverage in (0, 1).
      seed: the resampling seed; the same seed and inputs give the same interval.
    Raises:
      ValueError for mismatched lengths, negative counts, no reference words, R < 1000 or a bad level.
    """
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 1000:
        raise ValueError(f"resamples must be an int >= 1000, got {resamples!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    ea = _as_counts("errors_a", errors_a, None)
    n = ea.shape[0]
    if n == 0:
        raise ValueError("no utterances to compare")
    wa = _as_counts("words_a", words_a, n)
    eb = _as_counts("errors_b", errors_b, n)
    wb = wa if words_b is None else _as_counts("words_b", words_b, n)
    if wa.sum() == 0 or wb.sum() == 0:
        raise ValueError("the references hold no words: WER is undefined")
    wer_a, wer_b = float(ea.sum() / wa.sum()), float(eb.sum() / wb.sum())
    deltas = resampled_wer_differences(ea, wa, eb, wb, int(resamples), seed)
    low, high = np.percentile(deltas, [50 * (1 - level), 50 * (1 + level)])
    difference = wer_b - wer_a
    return WerDifference(wer_a, wer_b, difference, None if wer_a == 0 else difference / wer_a,
                         float(low), float(high), float(level), int(resamples), n)


def lossless(comparison: WerDifference, float_wer: float | None = None,
             tolerance: float = LOSSLESS_RELATIVE) -> bool:
    """Whether B is lossless against the float model: high <= tolerance · float WER (A's WER when
    `float_wer` is None, i.e. A is the float model)."""
    reference = comparison.wer_a if float_wer is None else float_wer
    return comparison.high <= tolerance * reference


def describe(comparison: WerDifference) -> str:
    """'+0.31 points (+6.2 % relative), 95 % interval [+0.05, +0.58]' (WER points = % of words)."""
    relative = "" if comparison.relative is None else f" ({100 * comparison.relative:+.1f} % relative)"
    return (f"{100 * comparison.difference:+.2f} points{relative}, {100 * comparison.level:.0f} % interval "
            f"[{100 * comparison.low:+.2f}, {100 * comparison.high:+.2f}]")
