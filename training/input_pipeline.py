"""Config -> lazy sources -> batch plan -> streamed padded batches (host) -> log-mel features (device).

`source(data, split)` opens any supported corpus split (or a `+`-joined union of splits) as a
lazy `corpora.sources.Source`; `make_tokenizer` builds (or reloads from the workdir) the
tokenizer from transcripts alone; `train_plan` and `train_stream` plan and stream the training
batches (`corpora.batching`); `eval_batches` is one ordered pass for scoring; `features` is the
pure on-device front end used inside the train and eval steps. `make_feature_stats` computes (or
reloads from the workdir) the corpus statistics of `data.feature_normalization = "global"`.
"""

from __future__ import annotations

import json
import logging
import pathlib
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from corpora import asterisk, batching, librispeech, sources
from corpora import tokenizer as tokenizers
from corpora.batching import Batch, BatchLoader, BatchPlan, LoadedBatch
from corpora.files import write_text_atomic
from models import frontend

log = logging.getLogger(__name__)
TOKENIZER_FILE = "tokenizer.json"
FEATURE_STATS_FILE = "feature_stats.json"
NORMALIZATIONS = ("utterance", "global")  # data.feature_normalization
KINDS = ("synth", "manifest", "librispeech_folder", "librispeech_tfds")
# Feature frames an encoder needs to emit at least one frame: the Conformer's two stride-2 3x3
# convolutions need 7 (`models.conformer.subsampled_lengths`), the RNN-T's frame stacking 1.
MIN_INPUT_FRAMES = {"rnnt": 1, "conformer": 7}
FRAME_SAMPLES, HOP_SAMPLES = 400, 160  # 25 ms windows every 10 ms at 16 kHz (models.frontend)


def _one_split(data: ml_collections.ConfigDict, split: str) -> sources.Source:
    if split == "real":
        return sources.ExampleSource(list(asterisk.read_split("real")), name="asterisk:real")
    if data.kind in ("synth", "manifest"):
        path = pathlib.Path(data.path) / f"{split}.jsonl"
        if not path.exists():
            hint = (f"; build the corpus with `python -m corpora.synth --out {data.path}`"
                    if data.kind == "synth" else "")
            raise FileNotFoundError(f"no manifest {path} for split {split!r}{hint}")
        return sources.ManifestSource(path)
    if data.kind == "librispeech_folder":
        return librispeech.folder_source(data.path, split)
    if data.kind == "librispeech_tfds":
        return librispeech.tfds_source(split, data.path or None)
    raise ValueError(f"config.data.kind={data.kind!r}; expected one of {KINDS}")


def source(data: ml_collections.ConfigDict, split: str, limit: int = 0) -> sources.Source:
    """Split `split` of the corpus `data.kind` at `data.path`, lazily (first `limit`; 0: all).

    `split` may join several with `+` (`train_clean100+train_clean360`): their union, in that
    order. Kinds: "synth" (a synth-en folder) and "manifest" (`data.path` holds `<split>.jsonl`),
    "librispeech_folder" (LibriSpeech layout, any split folder name), "librispeech_tfds". The
    split "real" is always the Asterisk prompts, whatever the kind.
    """
    names = [s.strip() for s in split.split("+")]
    if not all(names):
        raise ValueError(f"split {split!r} has an empty part; join split names with '+'")
    parts = [_one_split(data, name) for name in names]
    return (parts[0] if len(parts) == 1 else sources.ConcatSource(parts)).take(limit)


def make_tokenizer(data: ml_collections.ConfigDict, workdir: pathlib.Path,
                   train: sources.Source, inherit_from: str | pathlib.Path | None = None
                   ) -> tokenizers.Tokenizer:
    """The workdir's tokenizer if saved, else the one of the run or published model
    `inherit_from` (a fine-tune must keep its parent's token ids, whatever data it reads), else a
    new one (char, or sentencepiece trained on the training transcripts, read from the metadata: no
    audio is decoded); saved in the workdir, so that resumed runs and eval.py use the same ids."""
    path = pathlib.Path(workdir) / TOKENIZER_FILE
    if path.exists():
        return tokenizers.load(path)
    if inherit_from:
        inherited = pathlib.Path(inherit_from) / TOKENIZER_FILE
        if not inherited.exists():
            raise FileNotFoundError(f"config.quant.init_from={str(inherit_from)!r} has no {TOKENIZER_FILE}: "
                                    f"its token ids are unknown")
        tokenizer = tokenizers.load(inherited)
        kind = "char" if isinstance(tokenizer, tokenizers.CharTokenizer) else "sentencepiece"
        if kind != data.tokenizer:
            raise ValueError(f"config.data.tokenizer={data.tokenizer!r}, but config.quant.init_from="
                             f"{str(inherit_from)!r} was trained with a {kind} tokenizer")
    elif data.tokenizer == "char":
        tokenizer: tokenizers.Tokenizer = tokenizers.CharTokenizer()
    elif data.tokenizer == "sentencepiece":
        tokenizer = tokenizers.SentencePieceTokenizer.train(train.metadata.texts,
                                                            vocab_size=data.vocab_size)
    else:
        raise ValueError(f"config.data.tokenizer={data.tokenizer!r}; expected char or sentencepiece")
    tokenizer.save(path)
    return tokenizer


def min_samples_for(model_name: str) -> int:
    """Fewest audio samples whose features give the model's encoder at least one output frame."""
    return FRAME_SAMPLES + (MIN_INPUT_FRAMES[model_name] - 1) * HOP_SAMPLES


def train_plan(config: ml_collections.ConfigDict, train: sources.Source,
               tokenizer: tokenizers.Tokenizer, min_samples: int = 1) -> BatchPlan:
    """The shuffled training plan: `config.batch_size` rows per batch, or with
    `config.data.max_batch_seconds` > 0 as many rows (a multiple of the device count) as fit."""
    return batching.make_plan(
        train.metadata, tokenizer, batch_size=config.batch_size,
        max_batch_seconds=config.data.max_batch_seconds, num_buckets=config.data.num_buckets,
        row_multiple=jax.device_count(), seed=config.seed, min_samples=min_samples,
        process_count=jax.process_count(), speed_factors=tuple(config.data.speed_perturbation))


def train_stream(config: ml_collections.ConfigDict, plan: BatchPlan, train: sources.Source,
                 tokenizer: tokenizers.Tokenizer, start: int) -> Iterator[LoadedBatch]:
    """This process's rows of global batches start, ..., num_train_steps - 1, loaded by
    `config.data.num_workers` worker processes."""
    loader = BatchLoader(train, tokenizer, plan, jax.process_index(), jax.process_count(),
                         strict=config.data.strict)
    return batching.stream(plan, loader, start, config.num_train_steps,
                           num_workers=config.data.num_workers, prefetch=config.data.prefetch)


def eval_batches(split: sources.Source, tokenizer: tokenizers.Tokenizer, batch_size: int,
                 num_buckets: int = 4) -> Iterator[Batch]:
    """One pass over `split` in a fixed order, in padded bucketed batches (mask marks rows)."""
    return batching.one_pass(split, tokenizer, batch_size, num_buckets)


def normalization(data: ml_collections.ConfigDict) -> str:
    """`data.feature_normalization`; "utterance" for a config saved before the field existed."""
    return data.get("feature_normalization", "utterance")


def corpus_feature_stats(train: sources.Source, num_mel_bins: int, count: int, seed: int,
                         batch_size: int = 16) -> frontend.FeatureStats:
    """`frontend.FeatureStats` (float64 sums) of the log-mel frames of `count` training utterances
    drawn without replacement by `seed` (all when fewer), read in padded batches (widths rounded
    up to whole seconds, so few shapes compile); bad audio is skipped with a logged warning."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(train), size=min(count, len(train)), replace=False))
    total = frontend.FeatureStats(0.0, np.zeros(num_mel_bins), np.zeros(num_mel_bins))
    for start in range(0, len(chosen), batch_size):
        audio = []
        for i in chosen[start:start + batch_size]:
            try:
                example = train[int(i)]
                audio.append(batching.conform_sample_rate(np.asarray(example["audio"], np.float32),
                                                          int(example["sample_rate"]), example["id"]))
            except ValueError as e:
                log.warning("feature statistics: skipping %s", e)
        if not audio:
            continue
        width = -(-max(FRAME_SAMPLES, *map(len, audio)) // batching.SAMPLE_RATE_HZ) * batching.SAMPLE_RATE_HZ
        padded = np.stack([np.pad(a, (0, width - len(a))) for a in audio])
        feats, lengths = frontend.log_mel_spectrogram(padded, np.array([len(a) for a in audio]),
                                                      num_mel_bins=num_mel_bins)
        batch_stats = frontend.feature_stats(feats, lengths)
        total = total.merge(frontend.FeatureStats(*(np.asarray(x, np.float64) for x in batch_stats)))
    if not total.count:
        raise ValueError(f"feature statistics: no frame in the {len(chosen)} sampled training utterances")
    return total


def save_feature_stats(stats: frontend.FeatureStats, folder: str | pathlib.Path) -> None:
    """`folder/feature_stats.json`: the sums as JSON numbers (float64, read back exactly)."""
    write_text_atomic(pathlib.Path(folder) / FEATURE_STATS_FILE, json.dumps(
        {name: np.asarray(value, np.float64).tolist() for name, value in stats._asdict().items()}) + "\n")


def load_feature_stats(data: ml_collections.ConfigDict, folder: str | pathlib.Path
                       ) -> frontend.FeatureStats | None:
    """None for per-utterance normalisation; for "global" the statistics saved in `folder` (a
    workdir or a published model), FileNotFoundError naming the file when they are missing."""
    if normalization(data) == "utterance":
        return None
    path = pathlib.Path(folder) / FEATURE_STATS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: data.feature_normalization='global' normalises "
                                "with the statistics train.py saved there")
    fields = json.loads(path.read_text())
    return _float32(frontend.FeatureStats(*(fields[name] for name in frontend.FeatureStats._fields)))


def _float32(stats: frontend.FeatureStats) -> frontend.FeatureStats:
    """The statistics as float32 arrays: what every step that normalises computes with."""
    return frontend.FeatureStats(*(jnp.asarray(x, jnp.float32) for x in stats))


def make_feature_stats(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                       train: sources.Source) -> frontend.FeatureStats | None:
    """The normalisation statistics of `config.data.feature_normalization`: None for "utterance";
    for "global" the workdir's saved ones, else those of the run or published model
    `config.quant.init_from` (a fine-tune keeps its parent's inputs), else `corpus_feature_stats`
    of `data.normalization_utterances` training utterances drawn by `config.seed`; saved in the
    workdir, so that resumed runs, eval.py and published models normalise with the same numbers."""
    if normalization(config.data) == "utterance":
        return None
    if (pathlib.Path(workdir) / FEATURE_STATS_FILE).exists():
        return load_feature_stats(config.data, workdir)
    parent = config.quant.init_from
    if parent and (pathlib.Path(parent) / FEATURE_STATS_FILE).exists():
        stats = load_feature_stats(config.data, parent)
    else:
        stats = corpus_feature_stats(train, config.features.num_mel_bins, config.data.normalization_utterances,
                                     config.seed)
    if jax.process_index() == 0:
        save_feature_stats(stats, workdir)
    return _float32(stats)


def features(batch: Batch, config: ml_collections.ConfigDict, key: jax.Array | None = None,
             stats: frontend.FeatureStats | None = None) -> tuple[jax.Array, jax.Array]:
    """audio `[B, S]` -> normalised log-mel `[B, T, num_mel_bins]` and lengths `[B]`.

    Normalised per utterance, or with corpus `stats` (`make_feature_stats`) by
    `frontend.normalize_global`. With a `key` and `config.spec_augment`, SpecAugment masks are
    applied (training only).
    """
    feats, lengths = frontend.log_mel_spectrogram(
        jnp.asarray(batch["audio"]), jnp.asarray(batch["audio_lengths"]),
        num_mel_bins=config.num_mel_bins)
    if stats is None:
        feats = frontend.normalize_per_utterance(feats, lengths)
    else:
        feats = frontend.normalize_global(feats, lengths, stats)
    if key is not None and config.spec_augment:
        feats = frontend.spec_augment(
            key, feats, lengths, num_freq_masks=config.num_freq_masks,
            max_freq_mask_bins=config.max_freq_mask_bins, num_time_masks=config.num_time_masks,
            max_time_mask_frames=config.max_time_mask_frames,
            max_time_mask_fraction=config.max_time_mask_fraction)
    return feats, lengths
