"""LibriSpeech from a plain folder (the extracted tarballs) or from TFDS, as lazy sources.

Both give `corpora.sources.Source`s of `{"id": "84-121123-0000", "audio": float32 [N] in [-1, 1],
"sample_rate": int, "text": str, ...}`: the folder in utterance-id order, TFDS in the prepared
dataset's (fixed) record order.

Folder layout (what the openslr tarballs extract to; a split folder may have any name, so a
user's own data in this layout reads the same way):

    <root>/LibriSpeech/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
    <root>/LibriSpeech/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<NNNN>.flac

A folder split is indexed once into a manifest, `<split folder>/gq-manifest.jsonl` (ids,
transcripts, and durations read from the audio headers, never by decoding), rebuilt when a
transcript is newer; utterances whose header is unreadable or whose transcript is empty are
named in a log line and left out (an error under `strict`), and listed in
`gq-manifest.skipped.json` so that later reads report them too. Where the data folder is
read-only, the manifest goes under `$XDG_CACHE_HOME/gq-jax` instead.

TFDS: `tfds.data_source('librispeech', split=..., data_dir=...)` over a prepared `librispeech`
dataset (int16 audio, stored decoded). Splits are named either way: `dev_clean` (TFDS) or
`dev-clean` (folder). Unions of splits (`train_clean100+train_clean360+train_other500`) are
formed by `training.input_pipeline.source`.

Multi-host: with P processes, process p reads only utterances p, p + P, p + 2P, ... of the
split's fixed order (`shard_indices`), so the shards are disjoint and together cover the split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import soundfile as sf
import tqdm

from corpora import manifest, sources
from corpora.files import write_text_atomic

log = logging.getLogger(__name__)

# TFDS split name -> folder name.
SPLITS = {
    "dev_clean": "dev-clean",
    "dev_other": "dev-other",
    "test_clean": "test-clean",
    "test_other": "test-other",
    "train_clean100": "train-clean-100",
    "train_clean360": "train-clean-360",
    "train_other500": "train-other-500",
}


def tfds_split_name(split: str) -> str:
    """`dev-clean` or `dev_clean` -> `dev_clean`."""
    return {folder: name for name, folder in SPLITS.items()}[folder_split_name(split)]


def folder_split_name(split: str) -> str:
    """`dev_clean` or `dev-clean` -> `dev-clean`."""
    if split in SPLITS.values():
        return split
    if split in SPLITS:
        return SPLITS[split]
    raise ValueError(f"unknown LibriSpeech split {split!r}; expected one of {sorted(SPLITS)} "
                     f"or {sorted(SPLITS.values())}")


def shard_indices(num_items: int, process_index: int | None = None,
                  process_count: int | None = None) -> range:
    """Indices of `num_items` that process `process_index` of `process_count` reads."""
    if process_index is None or process_count is None:
        import jax
        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} outside [0, process_count={process_count})")
    return range(process_index, num_items, process_count)


MANIFEST_NAME = "gq-manifest.jsonl"
SKIPPED_NAME = "gq-manifest.skipped.json"


def is_split_folder(folder: pathlib.Path) -> bool:
    """True for a folder laid out as `<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`."""
    return folder.is_dir() and next(folder.glob("*/*/*.trans.txt"), None) is not None


def split_folders(root: pathlib.Path) -> list[str]:
    """Names of the split folders under `root` (or `root/LibriSpeech`), sorted."""
    base = root / "LibriSpeech" if (root / "LibriSpeech").is_dir() else root
    return sorted(d.name for d in base.iterdir() if is_split_folder(d)) if base.is_dir() else []


def find_split_folder(root: pathlib.Path, split: str | None) -> pathlib.Path:
    """The folder of `split` under `root` (`root/LibriSpeech/<name>` or `root/<name>`); `root`
    itself for None. LibriSpeech's seven names are accepted in either spelling, any other name
    as the folder's own name."""
    if split is None:
        return root
    name = SPLITS.get(split, split)
    candidates = [root / "LibriSpeech" / name, root / name]
    found = [c for c in candidates if c.is_dir()]
    if not found:
        raise FileNotFoundError(f"no LibriSpeech split {name!r} under {root}: looked for "
                                f"{[str(c) for c in candidates]}; split folders there: "
                                f"{split_folders(root)}")
    return found[0]


def _parse_transcripts(path: pathlib.Path) -> list[tuple[str, str]]:
    """`(utterance id, text)` for every line `<id> <TEXT>` of a `.trans.txt` file ("" if none)."""
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            utterance_id, _, text = line.strip().partition(" ")
            pairs.append((utterance_id, text.strip()))
    return pairs


def _index_folder(folder: pathlib.Path, transcripts: list[pathlib.Path], base: pathlib.Path,
                  strict: bool) -> tuple[list[manifest.ManifestEntry], list[str]]:
    """Manifest entries (paths relative to `base`) and 'id: reason' of every utterance left out."""
    entries, skipped = [], []
    utterances = sorted((utterance_id, text, path.parent / f"{utterance_id}.flac")
                        for path in transcripts for utterance_id, text in _parse_transcripts(path))
    for utterance_id, text, audio_path in tqdm.tqdm(utterances, desc=f"indexing {folder}", unit="utt",
                                                    disable=len(utterances) < 1000):
        try:
            if not text:
                raise ValueError("empty transcript")
            info = sf.info(str(audio_path))
            if info.channels != 1:
                raise ValueError(f"{audio_path} has {info.channels} channels; expected mono")
            entries.append(manifest.ManifestEntry(
                utterance_id, os.path.relpath(audio_path, base), text, info.frames / info.samplerate))
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as e:
            if strict:
                raise ValueError(f"utterance {utterance_id!r}: {e}") from e
            skipped.append(f"utterance {utterance_id!r}: {e}")
    return entries, skipped


def _manifest_location(folder: pathlib.Path) -> pathlib.Path:
    if os.access(folder, os.W_OK):
        return folder
    cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    location = cache / "gq-jax" / "librispeech" / digest
    location.mkdir(parents=True, exist_ok=True)
    return location


def folder_manifest(root: str | os.PathLike, split: str | None = None, strict: bool = False
                    ) -> pathlib.Path:
    """The manifest of a folder split, built on first use (see the module docstring).

    Raises:
      FileNotFoundError: no such split folder, or no transcripts in it.
      ValueError: under `strict`, naming the first unreadable utterance or empty transcript
        (also one left out by an earlier, non-strict indexing).
    """
    folder = find_split_folder(pathlib.Path(root), split)
    transcripts = sorted(folder.rglob("*.trans.txt"))
    if not transcripts:
        raise FileNotFoundError(f"no *.trans.txt transcripts under {folder}")
    location = _manifest_location(folder)
    path, skipped_path = location / MANIFEST_NAME, location / SKIPPED_NAME
    newest = max(t.stat().st_mtime_ns for t in transcripts)
    if not path.exists() or path.stat().st_mtime_ns < newest:
        entries, skipped = _index_folder(folder, transcripts, location, strict)
        write_text_atomic(skipped_path, json.dumps(skipped, indent=1))
        manifest.write_manifest(path, entries)
    skipped = json.loads(skipped_path.read_text()) if skipped_path.exists() else []
    if skipped and strict:
        raise ValueError(f"{folder}: {skipped[0]}")
    if skipped:
        log.warning("%s: left out %d utterance(s): %s", folder, len(skipped), skipped)
    return path


def folder_source(root: str | os.PathLike, split: str | None = None, strict: bool = False
                  ) -> sources.ManifestSource:
    """A folder split (or every transcript under `root` for None) as a lazy source."""
    return sources.ManifestSource(folder_manifest(root, split, strict))


def read_folder(root: str | os.PathLike, split: str | None = None, *,
                process_index: int | None = None, process_count: int | None = None,
                strict: bool = False) -> Iterator[dict[str, Any]]:
    """Yields this process's share of the decoded utterances under `root`, in id order.

    Args:
      root: a folder holding `LibriSpeech/`, the `LibriSpeech/` folder itself, or a split folder.
      split: one split (`dev-clean`, `dev_clean` or any folder name); None reads every
        transcript under `root`.
      process_index, process_count: this process's shard (default: from jax).
      strict: raise on unreadable audio instead of skipping it with a logged warning.
    """
    source = folder_source(root, split, strict)
    for i in shard_indices(len(source), process_index, process_count):
        try:
            example = source[i]
        except ValueError as e:
            if strict:
                raise
            log.warning("skipping %s", e)
            continue
        yield {**example, **_ids_of(example["id"])}


def _ids_of(utterance_id: str) -> dict[str, int]:
    speaker, chapter, _ = utterance_id.split("-")
    return {"speaker_id": int(speaker), "chapter_id": int(chapter)}


def tfds_source(split: str, data_dir: str | os.PathLike | None = None) -> sources.TfdsSource:
    """A prepared TFDS `librispeech` split (either spelling of its name) as a lazy source."""
    return sources.TfdsSource(tfds_split_name(split), None if data_dir is None else str(data_dir))


def read_tfds(split: str, data_dir: str | os.PathLike | None = None, *,
              process_index: int | None = None,
              process_count: int | None = None) -> Iterator[dict[str, Any]]:
    """Yields this process's share of a prepared TFDS LibriSpeech split, in stored record order."""
    source = tfds_source(split, data_dir)
    for i in shard_indices(len(source), process_index, process_count):
        yield source[i]


def _staging_tree(extracted: pathlib.Path, staging: pathlib.Path) -> dict[str, pathlib.Path]:
    """{TFDS split: folder holding only that split as `LibriSpeech/<split folder>`} (symlinks)."""
    base = extracted / "LibriSpeech" if (extracted / "LibriSpeech").is_dir() else extracted
    missing = [f for f in SPLITS.values() if not is_split_folder(base / f)]
    if missing:
        raise FileNotFoundError(f"{base} lacks the LibriSpeech split folder(s) {missing}; TFDS's "
                                "librispeech dataset has all seven (extract every tarball there)")
    tree = {}
    for split, folder in SPLITS.items():
        target = staging / split / "LibriSpeech"
        target.mkdir(parents=True, exist_ok=True)
        for name in ("SPEAKERS.TXT", "CHAPTERS.TXT", folder):
            link = target / name
            if not link.exists():
                link.symlink_to((base / name).absolute())
        tree[split] = staging / split
    return tree


def prepare_tfds(extracted: str | os.PathLike, data_dir: str | os.PathLike) -> pathlib.Path:
    """Prepares TFDS's `librispeech` dataset (array_record) in `data_dir` from the extracted
    openslr tarballs under `extracted`, without downloading anything: TFDS's own builder runs
    with its download step pointed at the local folders. Returns the prepared dataset's folder.
    Needs the `librispeech` extra and ffmpeg (TFDS decodes FLAC through pydub)."""
    import tempfile

    import tensorflow_datasets as tfds
    from etils import epath

    with tempfile.TemporaryDirectory(prefix="librispeech-staging-") as staging:
        tree = _staging_tree(pathlib.Path(extracted), pathlib.Path(staging))
        original = tfds.download.DownloadManager.download_and_extract
        tfds.download.DownloadManager.download_and_extract = (
            lambda self, urls: {split: epath.Path(tree[split]) for split in urls})
        try:
            builder = tfds.builder("librispeech", data_dir=str(data_dir), file_format="array_record")
            builder.download_and_prepare()
        finally:
            tfds.download.DownloadManager.download_and_extract = original
    return pathlib.Path(builder.data_dir)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m corpora.librispeech",
        description="Prepare TFDS's librispeech dataset from already extracted openslr tarballs (offline).")
    parser.add_argument("--extracted", required=True, help="folder holding LibriSpeech/<split>/...")
    parser.add_argument("--data_dir", required=True, help="TFDS data_dir to prepare the dataset in")
    args = parser.parse_args(argv)
    print(f"prepared {prepare_tfds(args.extracted, args.data_dir)}")


if __name__ == "__main__":
    main()
