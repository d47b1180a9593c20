"""Transcribe a split with a transducer and score it: WER, CER, substitutions, deletions, insertions.

Scores come from jiwer over the whole split (corpus-level, not averaged per utterance):
WER = (S + D + I) / N over words, CER the same over characters.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jiwer
import ml_collections
import numpy as np

from corpora import sources
from models import decoding, streaming
from models.transducer_parts import Transducer
from training import input_pipeline


@functools.partial(jax.jit, static_argnames=("config",))
def _features(batch, config, feature_stats):
    """`input_pipeline.features` under jit, the features config (`_Frozen`) static."""
    return input_pipeline.features(batch, config, stats=feature_stats)


class _Frozen:
    """Hashable view of a ConfigDict section (for jit's static arguments)."""

    def __init__(self, section: ml_collections.ConfigDict):
        self.section = section
        self._key = tuple(sorted(section.to_dict().items()))

    def __getattr__(self, name):
        return getattr(self.section, name)

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, _Frozen) and self._key == other._key


def reference(batch: dict, row: int, tokenizer) -> str:
    """The tokenizer's round trip of row `row`'s transcript: the text the model can produce."""
    return tokenizer.decode(batch["labels"][row, :batch["label_lengths"][row]].tolist())


def transcribe(model: Transducer, params: Any, split: sources.Source, tokenizer,
               features_config: ml_collections.ConfigDict, batch_size: int, beam: int = 1,
               ctc: bool = False, feature_stats: Any = None, fusion: decoding.LMFusion | None = None
               ) -> tuple[list[str], list[str]]:
    """(references, hypotheses) for the utterances of `split`, greedy (`beam` = 1) or modified
    beam search (audio is decoded batch by batch, never the whole split at once), the latter with
    `fusion`'s language model if given (`models.decoding.LMFusion`); with `ctc`,
    best-path decoding of the model's auxiliary CTC head instead (`beam` is then ignored).
    Features are normalised with the corpus `feature_stats` of the run, or per utterance (None).

    References are the tokenizer's round trip of each transcript, i.e. the text the model can
    produce. The order is the batching order (bucket by bucket), the same for every model.
    """
    variables = {"params": params}
    frozen = _Frozen(features_config)
    refs, hyps = [], []
    for batch in input_pipeline.eval_batches(split, tokenizer, batch_size):
        feats, lengths = _features({k: batch[k] for k in ("audio", "audio_lengths")}, frozen, feature_stats)
        if ctc:
            result = decoding.ctc_greedy_decode(model, variables, feats, lengths, tokenizer=tokenizer)
        elif beam == 1:
            result = decoding.greedy_decode(model, variables, feats, lengths, tokenizer=tokenizer)
        else:
            result = decoding.beam_search(model, variables, feats, lengths, beam_width=beam,
                                          tokenizer=tokenizer, fusion=fusion)
        for row in np.flatnonzero(batch["mask"]):
            refs.append(reference(batch, row, tokenizer))
            hyps.append(result.texts[row])
    return refs, hyps


def transcribe_streaming(model: Transducer, params: Any, split: sources.Source, tokenizer, feature_stats: Any,
                         chunk_samples: int, batch_size: int = 16) -> tuple[list[str], list[str]]:
    """(references, hypotheses) for the utterances of `split` in `transcribe`'s order, each decoded
    alone as a stream of `chunk_samples`-sample chunks (`models.streaming.greedy`: batch size 1,
    state carried between chunks; `feature_stats` are the run's corpus statistics, required)."""
    decoder = streaming.greedy(model, {"params": params}, feature_stats, chunk_samples=chunk_samples)
    refs, hyps = [], []
    for batch in input_pipeline.eval_batches(split, tokenizer, batch_size):
        for row in np.flatnonzero(batch["mask"]):
            refs.append(reference(batch, row, tokenizer))
            audio = batch["audio"][row, :batch["audio_lengths"][row]]
            hyps.append(tokenizer.decode(streaming.decode(decoder, audio)))
    return refs, hyps


def scores(references: list[str], hypotheses: list[str]) -> dict[str, float | int]:
    """{wer, cer, substitutions, deletions, insertions, num_words} over the whole split."""
    if not references:
        raise ValueError("no utterances to score")
    words = jiwer.process_words(references, hypotheses)
    chars = jiwer.process_characters(references, hypotheses)
    return {"wer": words.wer, "cer": chars.cer, "substitutions": words.substitutions,
            "deletions": words.deletions, "insertions": words.insertions,
            "num_words": words.substitutions + words.deletions + words.hits}
