"""Corpus -> example lists -> padded batches (host, numpy) -> log-mel features (device, jit).

`read_examples(data, split)` reads any supported corpus into the common example dicts;
`make_tokenizer` builds (or reloads from the workdir) the tokenizer; `features` is the pure
on-device front end used inside the train and eval steps.
"""

from __future__ import annotations

import itertools
import pathlib
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from corpora import asterisk, librispeech, manifest, synth
from corpora import tokenizer as tokenizers
from corpora.batching import Batch, BatchIterator
from models import frontend

TOKENIZER_FILE = "tokenizer.json"


def read_examples(data: ml_collections.ConfigDict, split: str, limit: int = 0) -> Sequence[dict[str, Any]]:
    """The example dicts of `split` of the corpus `data.kind` at `data.path` (first `limit`; 0: all).

    Every process reads the whole split (the global batch is sliced per process later), so a
    multi-host run sees the same batches as one process. TFDS splits stay lazy (random access).

    Kinds: "synth" (a synth-en folder), "manifest" (`data.path` is a folder of `<split>.jsonl`
    manifests), "librispeech_folder" (LibriSpeech layout), "librispeech_tfds". The split "real"
    is always the Asterisk prompts, whatever the kind.
    """
    if split == "real":
        examples: Any = asterisk.read_split("real")
    elif data.kind == "synth":
        examples = synth.read_split(pathlib.Path(data.path), split)
    elif data.kind == "manifest":
        path = pathlib.Path(data.path) / f"{split}.jsonl"
        if not path.exists():
            raise FileNotFoundError(f"no manifest {path} for split {split!r}")
        examples = manifest.read_examples(path)
    elif data.kind == "librispeech_folder":
        examples = librispeech.read_folder(data.path, split, process_index=0, process_count=1)
    elif data.kind == "librispeech_tfds":
        tfds_examples = librispeech.TfdsExamples(split, data.path or None)
        return tfds_examples if not limit else [tfds_examples[i] for i in range(min(limit, len(tfds_examples)))]
    else:
        raise ValueError(f"config.data.kind={data.kind!r}; expected synth, manifest, "
                         "librispeech_folder or librispeech_tfds")
    return list(itertools.islice(examples, limit or None))


def make_tokenizer(data: ml_collections.ConfigDict, workdir: pathlib.Path,
                   train_examples: list[dict[str, Any]]) -> tokenizers.Tokenizer:
    """The workdir's tokenizer if saved, else a new one (char, or sentencepiece trained on the
    training transcripts) saved there, so that resumed runs and eval.py use the same ids."""
    path = pathlib.Path(workdir) / TOKENIZER_FILE
    if path.exists():
        return tokenizers.load(path)
    if data.tokenizer == "char":
        tokenizer: Any = tokenizers.CharTokenizer()
    elif data.tokenizer == "sentencepiece":
        tokenizer = tokenizers.SentencePieceTokenizer.train(
            (e["text"] for e in train_examples), vocab_size=data.vocab_size)
    else:
        raise ValueError(f"config.data.tokenizer={data.tokenizer!r}; expected char or sentencepiece")
    tokenizer.save(path)
    return tokenizer


def eval_batches(examples: list[dict[str, Any]], tokenizer: tokenizers.Tokenizer, batch_size: int,
                 num_buckets: int = 4) -> Iterator[Batch]:
    """One pass over `examples` in a fixed order, in padded bucketed batches (mask marks rows)."""
    return BatchIterator(examples, tokenizer, batch_size, num_buckets=num_buckets, shuffle=False,
                         drop_remainder=False, num_epochs=1)


def features(batch: Batch, config: ml_collections.ConfigDict, key: jax.Array | None = None
             ) -> tuple[jax.Array, jax.Array]:
    """audio `[B, S]` -> per-utterance normalised log-mel `[B, T, num_mel_bins]` and lengths `[B]`.

    With a `key` and `config.spec_augment`, SpecAugment masks are applied (training only).
    """
    feats, lengths = frontend.log_mel_spectrogram(
        jnp.asarray(batch["audio"]), jnp.asarray(batch["audio_lengths"]),
        num_mel_bins=config.num_mel_bins)
    feats = frontend.normalize_per_utterance(feats, lengths)
    if key is not None and config.spec_augment:
        feats = frontend.spec_augment(
            key, feats, lengths, num_freq_masks=config.num_freq_masks,
            max_freq_mask_bins=config.max_freq_mask_bins, num_time_masks=config.num_time_masks,
            max_time_mask_frames=config.max_time_mask_frames,
            max_time_mask_fraction=config.max_time_mask_fraction)
    return feats, lengths
