"""synth-en: a speech corpus synthesised locally by real TTS engines, the project's default corpus.

    python -m corpora.synth --out DIR --size tiny|small|full|large [--seed N] [--jobs N]
                            [--far-field [--rt60-s S] [--snr-db DB]]

Writes `DIR/<split>/<id>.flac` (16 kHz mono), `DIR/<split>.jsonl` manifests (see
`corpora.manifest`), `DIR/plan.json` (the options) and `DIR/README.md` (how it was made).

Everything random is drawn up front from `seed` by `plan`: sentences (disjoint across splits),
voice, speed and pitch of each utterance, so the same seed gives the same corpus, and a re-run
only renders files that are missing (files are written atomically, so an interrupted run
resumes). `test_other` is read only by voices held out of training. flite and festival read at
least `1 - ESPEAK_SHARE` (70 %) of every seen-voice split and 60 % of `test_other`.

A size (`SIZES`) names the utterances per split and the closed vocabulary its sentences come
from: tiny, small and full read the 3,000-word pool; `large` (about 44 h of training audio, every
sentence distinct) reads the 30,000-word pool, and its README states how much of the real split
(the Asterisk prompts) is out of its vocabulary.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import multiprocessing
import os
import pathlib
import tempfile
import zlib
from typing import Mapping, Sequence

import numpy as np
import soundfile as sf
import tqdm

from corpora import asterisk, deps, farfield, manifest, sources, text, tts
from corpora.tts import Voice

SPLITS = ("train", "dev", "test", "test_other")


@dataclasses.dataclass(frozen=True)
class Size:
    """A corpus size: utterances per split, drawn from `text.sentence_pool(vocab_size)`; with a
    `parent` size, the first `counts[split]` utterances of each split of the parent's plan instead
    (the same sentences, voices and files, so a model trained on the parent never read its
    dev or test sentences)."""

    counts: Mapping[str, int]
    vocab_size: int = text.VOCAB_SIZE
    parent: str | None = None


# `large`: the 30,000-word pool holds 61,820 sentences, enough for every split to be distinct; at
# ~3.0 s per utterance (9.3 words on average) 52,000 training sentences make ~44 h, and 2,500
# test sentences ~23,000 words (>= 20,000, so a 5 % WER has a standard error near 0.15 points).
LARGE_VOCAB_SIZE = 30_000
SIZES: Mapping[str, Size] = {
    "tiny": Size({"train": 40, "dev": 8, "test": 8, "test_other": 8}),
    "small": Size({"train": 1500, "dev": 200, "test": 200, "test_other": 200}),
    "full": Size({"train": 5000, "dev": 300, "test": 300, "test_other": 300}),
    "large": Size({"train": 52_000, "dev": 1_200, "test": 2_500, "test_other": 2_500}, LARGE_VOCAB_SIZE),
    # `make demo`'s corpus: 2.2 h of `large` that its published model is fine-tuned and scored on.
    "large_demo": Size({"train": 2_000, "dev": 200, "test": 500}, LARGE_VOCAB_SIZE, parent="large"),
}
_SEEN_ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc")
_HELD_OUT_ESPEAK_ACCENTS = ("en-gb-scotland", "en-029")
# engine -> voices; train, dev and test use SEEN_VOICES, test_other only HELD_OUT_VOICES.
SEEN_VOICES: Mapping[str, tuple[Voice, ...]] = {
    "flite": tuple(Voice("flite", v) for v in ("kal16", "awb", "slt")),
    "festival": tuple(Voice("festival", v) for v in tts.FESTIVAL_VOICES),
    "espeak-ng": tuple(Voice("espeak-ng", f"{a}+{v}") for a in _SEEN_ESPEAK_ACCENTS for v in tts.ESPEAK_VARIANTS),
}
HELD_OUT_VOICES: Mapping[str, tuple[Voice, ...]] = {
    "flite": (Voice("flite", "rms"),),
    "espeak-ng": tuple(Voice("espeak-ng", f"{a}+{v}") for a in _HELD_OUT_ESPEAK_ACCENTS for v in tts.ESPEAK_VARIANTS),
}
# Share of utterances per engine, in the order leftover utterances are handed out.
SEEN_SHARES = {"flite": 0.4, "festival": 0.3, "espeak-ng": 0.3}
HELD_OUT_SHARES = {"flite": 0.6, "espeak-ng": 0.4}
SPEED_RANGE = (0.85, 1.15)
PITCH_RANGE_SEMITONES = (-2.0, 2.0)
BATCH_SIZE = 8


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One planned utterance: `text` read by `voice` at tempo `speed` shifted by `pitch` semitones."""

    id: str
    split: str
    text: str
    voice: Voice
    speed: float
    pitch: float

    @property
    def relative_path(self) -> str:
        return f"{self.split}/{self.id}.flac"


def engine_counts(n: int, shares: Mapping[str, float]) -> dict[str, int]:
    """Splits `n` utterances by `shares`: floor(share * n) each, leftovers to engines in listed order."""
    counts = {engine: int(np.floor(share * n)) for engine, share in shares.items()}
    engines = list(shares)
    for i in range(n - sum(counts.values())):
        counts[engines[i % len(engines)]] += 1
    return counts


def plan_split(split: str, sentences: Sequence[str], rng: np.random.Generator) -> list[Utterance]:
    """Assigns a voice, speed and pitch to each sentence of `split` (held-out voices for test_other)."""
    voices, shares = (HELD_OUT_VOICES, HELD_OUT_SHARES) if split == "test_other" else (SEEN_VOICES, SEEN_SHARES)
    engines = [e for e, c in engine_counts(len(sentences), shares).items() for _ in range(c)]
    engines = [engines[i] for i in rng.permutation(len(engines))]
    utterances = []
    for i, (sentence, engine) in enumerate(zip(sentences, engines, strict=True)):
        voice = voices[engine][rng.integers(len(voices[engine]))]
        speed = round(float(rng.uniform(*SPEED_RANGE)), 3)
        pitch = round(float(rng.uniform(*PITCH_RANGE_SEMITONES)), 2)
        utterances.append(Utterance(f"{split}-{i:05d}", split, sentence, voice, speed, pitch))
    return utterances


def plan(counts: Mapping[str, int], seed: int, vocab_size: int = text.VOCAB_SIZE) -> list[Utterance]:
    """Every utterance of the corpus, drawn deterministically from `seed` out of the `vocab_size`-word pool.

    Sentences are disjoint across splits.
    """
    unknown = set(counts) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; expected a subset of {SPLITS}")
    sentences = text.disjoint_splits(text.sentence_pool(vocab_size), counts, seed)
    return [
        u
        for index, split in enumerate(counts)
        for u in plan_split(split, sentences[split], np.random.default_rng([seed, index]))
    ]


def size_plan(size: str, seed: int) -> list[Utterance]:
    """The plan of the named size: `plan` of its counts, or for a size with a `parent` the first
    `counts[split]` utterances of each of its splits in the parent's plan."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of {sorted(SIZES)}")
    spec = SIZES[size]
    if spec.parent is None:
        return plan(spec.counts, seed, spec.vocab_size)
    parent = SIZES[spec.parent]
    if spec.vocab_size != parent.vocab_size or any(spec.counts[s] > parent.counts.get(s, 0) for s in spec.counts):
        raise ValueError(f"size {size!r} is not a subset of its parent {spec.parent!r}: {dict(spec.counts)} "
                         f"of {dict(parent.counts)}, vocabulary {spec.vocab_size} vs {parent.vocab_size}")
    taken = collections.Counter()
    subset = []
    for u in size_plan(spec.parent, seed):
        if taken[u.split] < spec.counts.get(u.split, 0):
            taken[u.split] += 1
            subset.append(u)
    return subset


def utterance_rng(seed: int, utterance_id: str) -> np.random.Generator:
    """The far-field generator of one utterance: independent of which worker renders it or when."""
    return np.random.default_rng([seed, zlib.crc32(utterance_id.encode())])


def write_flac(path: pathlib.Path, audio: np.ndarray) -> None:
    """Writes 16 kHz 16-bit FLAC atomically: a partial file never carries the final name."""
    tmp = path.with_name(path.name + ".part")
    sf.write(str(tmp), audio, tts.SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    os.replace(tmp, path)


def render(batch: Sequence[Utterance], out_dir: pathlib.Path, seed: int, far_field: farfield.FarField | None) -> int:
    """Synthesises a batch into `out_dir/<split>/<id>.flac`; returns how many files it wrote."""
    with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
        wav_paths = [pathlib.Path(tmp) / f"{u.id}.wav" for u in batch]
        tts.synthesise([u.text for u in batch], [u.voice for u in batch], wav_paths)
        for u, wav_path in zip(batch, wav_paths):
            audio = tts.to_16k(wav_path, u.speed, u.pitch)
            if far_field is not None:
                audio = farfield.apply(audio, far_field, tts.SAMPLE_RATE, utterance_rng(seed, u.id))
            write_flac(out_dir / u.relative_path, audio)
    return len(batch)


def batches(utterances: Sequence[Utterance], batch_size: int = BATCH_SIZE) -> list[list[Utterance]]:
    """Chunks of utterances of one voice each, so a festival batch starts festival once."""
    by_voice = collections.defaultdict(list)
    for u in utterances:
        by_voice[u.voice].append(u)
    return [group[i : i + batch_size] for group in by_voice.values() for i in range(0, len(group), batch_size)]


def _render_star(args) -> int:
    return render(*args)


def render_all(todo: Sequence[Utterance], out_dir, seed, far_field, jobs: int, progress: bool) -> None:
    """Renders `todo` over `jobs` worker processes (in this process when jobs == 1), with a progress bar."""
    work = [(b, out_dir, seed, far_field) for b in batches(todo)]
    with tqdm.tqdm(total=len(todo), unit="utt", desc="synth-en", disable=not progress) as bar:
        if jobs == 1:
            for args in work:
                bar.update(_render_star(args))
            return
        # forkserver, not fork: forking a process in which JAX has started threads can deadlock.
        with multiprocessing.get_context("forkserver").Pool(jobs) as pool:
            for done in pool.imap_unordered(_render_star, work):
                bar.update(done)


def manifest_entry(u: Utterance, out_dir: pathlib.Path) -> manifest.ManifestEntry:
    """The manifest line of a rendered utterance (duration read from the file header)."""
    info = sf.info(str(out_dir / u.relative_path))
    return manifest.ManifestEntry(
        id=u.id, path=u.relative_path, text=u.text, duration_s=info.frames / info.samplerate,
        engine=u.voice.engine, voice=u.voice.name, speed=u.speed, pitch=u.pitch,
    )


def check_plan_file(out_dir: pathlib.Path, options: dict) -> None:
    """Records `options` in `out_dir/plan.json`, or raises if the folder was made with other options."""
    path = out_dir / "plan.json"
    if path.exists():
        previous = json.loads(path.read_text())
        if previous != options:
            raise ValueError(f"{out_dir} was made with {previous}, not {options}: use a fresh --out folder")
    else:
        path.write_text(json.dumps(options, indent=1, sort_keys=True) + "\n")


def real_split_texts() -> list[str] | None:
    """Transcripts of the `real` split (`corpora.asterisk`), or None when its packages are not installed."""
    try:
        return [example["text"] for example in asterisk.read_split("real")]
    except deps.MissingPackageError:
        return None


def vocabulary_lines(utterances: Sequence[Utterance], vocab_size: int, real_texts: Sequence[str] | None) -> list[str]:
    """README lines on the vocabulary and on the `real` split's out-of-vocabulary rate against it.

    Two rates: against the words of the training sentences (what a model has heard) and against
    the `vocab_size`-word closed vocabulary that all splits are drawn from.
    """
    train_words = {w for u in utterances if u.split == "train" for w in u.text.split()}
    lines = [
        f"- Vocabulary: the {vocab_size:,} most frequent words of the readable sentences"
        f" (`corpora.text.sentence_pool({vocab_size})`, {len(text.sentence_pool(vocab_size)):,} sentences);"
        f" the training sentences use {len(train_words):,} distinct words.",
    ]
    if real_texts is None:
        packages = " ".join(asterisk.PACKAGES)
        return lines + [f"- Out of vocabulary on the `real` split: not measured (apt-get install -y {packages})."]
    n_words = sum(len(s.split()) for s in real_texts)
    return lines + [
        f"- Out of vocabulary on the `real` split (Asterisk prompts, {len(real_texts)} prompts, {n_words:,} words):"
        f" {100 * text.oov_rate(real_texts, train_words):.1f} % of its words are not in the training sentences,"
        f" {100 * text.oov_rate(real_texts, text.pool_vocabulary(vocab_size)):.1f} % not in the"
        f" {vocab_size:,}-word vocabulary.",
    ]


def readme(
    utterances: Sequence[Utterance],
    entries: Sequence[manifest.ManifestEntry],
    options: dict,
    vocab_size: int = text.VOCAB_SIZE,
    real_texts: Sequence[str] | None = None,
) -> str:
    """README.md of a corpus folder: how it was made, vocabulary, counts, hours and voices per split.

    `real_texts` (the `real` split's transcripts, see `real_split_texts`) give its OOV rates.
    """
    size = options["size"]
    far = options["far_field"]
    command = f"python -m corpora.synth --out DIR --size {size} --seed {options['seed']}" + (
        f" --far-field --rt60-s {far['rt60_s']} --snr-db {far['snr_db']}" if far else ""
    )
    hours = collections.Counter()
    for u, e in zip(utterances, entries):
        hours[u.split] += e.duration_s / 3600
    lines = [
        "# synth-en",
        "",
        "Synthesised English speech made by `corpora/synth.py` of gq-jax (flite, festival, espeak-ng).",
        "",
        f"- Command: `{command}`" if isinstance(size, str) else f"- Built by `corpora.synth.build` with counts {size}",
        f"- Seed: {options['seed']}",
        f"- Far-field: {'RT60 %.2f s, SNR %.1f dB' % (far['rt60_s'], far['snr_db']) if far else 'no (close-talk)'}",
        f"- Speed (tempo) uniform in {SPEED_RANGE}, pitch uniform in {PITCH_RANGE_SEMITONES} semitones (sox)",
        "- Audio: 16 kHz mono 16-bit FLAC under `<split>/`; manifests `<split>.jsonl`.",
        "- Sentences: WordNet examples, fortunes and the KJV Bible (Debian packages), normalised to A-Z, space",
        f"  and apostrophe, {text.MIN_WORDS}-{text.MAX_WORDS} words, {vocab_size:,}-word closed vocabulary,"
        " disjoint across splits.",
        *vocabulary_lines(utterances, vocab_size, real_texts),
        "",
        "| split | utterances | hours | voices (utterances) |",
        "|---|---|---|---|",
    ]
    for split in dict.fromkeys(u.split for u in utterances):
        voices = collections.Counter(f"{u.voice.engine}/{u.voice.name}" for u in utterances if u.split == split)
        engines = collections.Counter(u.voice.engine for u in utterances if u.split == split)
        listing = ", ".join(f"{e} {c}" for e, c in sorted(engines.items())) + f" ({len(voices)} voices)"
        lines.append(f"| {split} | {sum(voices.values())} | {hours[split]:.3f} | {listing} |")
    lines += ["", "Voices per split (espeak-ng as accents; each accent with variants " + ", ".join(tts.ESPEAK_VARIANTS) + "):", ""]
    for split in dict.fromkeys(u.split for u in utterances):
        names = collections.defaultdict(set)
        for u in utterances:
            if u.split == split:
                names[u.voice.engine].add(u.voice.name.split("+")[0])
        lines.append(f"- {split}: " + "; ".join(f"{e} {', '.join(sorted(n))}" for e, n in sorted(names.items())))
    lines += ["", "Per-utterance voice, speed and pitch are in the manifests."]
    return "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True)
class BuildReport:
    """What a build did: files rendered now, files in the corpus, and seconds of audio in it."""

    generated: int
    total: int
    audio_s: float


def build(
    out_dir: pathlib.Path,
    size: str | Mapping[str, int],
    seed: int = 0,
    jobs: int = 1,
    far_field: farfield.FarField | None = None,
    progress: bool = True,
) -> BuildReport:
    """Builds (or completes) a synth-en corpus in `out_dir`.

    `size` is a name in SIZES (see `size_plan`) or split counts (3,000-word vocabulary).
    """
    if isinstance(size, str) and size not in SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of {sorted(SIZES)}")
    counts = dict(SIZES[size].counts) if isinstance(size, str) else dict(size)
    vocab_size = SIZES[size].vocab_size if isinstance(size, str) else text.VOCAB_SIZE
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    options = {
        "seed": seed, "size": size if isinstance(size, str) else counts,
        "far_field": dataclasses.asdict(far_field) if far_field else None,
    }
    check_plan_file(out_dir, options)
    utterances = size_plan(size, seed) if isinstance(size, str) else plan(counts, seed, vocab_size)
    for split in counts:
        (out_dir / split).mkdir(exist_ok=True)
    todo = [u for u in utterances if not (out_dir / u.relative_path).exists()]
    render_all(todo, out_dir, seed, far_field, jobs, progress)
    entries = [manifest_entry(u, out_dir) for u in utterances]
    for split in counts:
        manifest.write_manifest(out_dir / f"{split}.jsonl", [e for u, e in zip(utterances, entries) if u.split == split])
    (out_dir / "README.md").write_text(readme(utterances, entries, options, vocab_size, real_split_texts()))
    return BuildReport(generated=len(todo), total=len(utterances), audio_s=sum(e.duration_s for e in entries))


def read_split(corpus_dir: pathlib.Path, split: str) -> sources.ManifestSource:
    """One split of a built corpus as a lazy source (`corpora.sources.ManifestSource`)."""
    path = pathlib.Path(corpus_dir) / f"{split}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no manifest {path}; build the corpus with `python -m corpora.synth --out {corpus_dir}`")
    return sources.ManifestSource(path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m corpora.synth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, required=True, help="corpus folder (created; resumed if present)")
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--far-field", action="store_true", help="reverberate and add noise")
    parser.add_argument("--rt60-s", type=float, default=farfield.FarField.rt60_s)
    parser.add_argument("--snr-db", type=float, default=farfield.FarField.snr_db)
    args = parser.parse_args(argv)
    far = farfield.FarField(args.rt60_s, args.snr_db) if args.far_field else None
    report = build(args.out, args.size, args.seed, args.jobs, far)
    print(f"{args.out}: {report.total} utterances ({report.generated} rendered now), {report.audio_s / 3600:.3f} h")


if __name__ == "__main__":
    main()
