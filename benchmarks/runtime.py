"""The packed runtime against float32 and uniform 8-bit: resident weight bytes, peak RSS, load time,
RTF and streaming latency per chunk.

    python benchmarks/runtime.py [--config configs/rnnt_synth_large.py] [--corpus data/synth-en-large]
                                 [--utterances 4] [--repeats 3] [--chunk_ms 100]

One model (the config's, random weights from its seed) is written as five packed files: float32,
uniform 8-bit (post-training round-to-nearest, resident as int8 values) and GQ at 5, 4 and 2 bits
(GQ's initial centroids, hard-assigned: no training), every kernel quantized per output channel
with the config's rules. Each file is first loaded (`gq_jax.runtime.load_resident`) and greedily
decoded (batched and batch 1, compiling both) in a fresh subprocess of its own: its resident
weight bytes (the device buffers held between calls), load seconds, RSS growth over the load, and
peak RSS (VmHWM of that process, compilation included). Then one process loads every variant and
times greedy decoding of the utterances one at a time (batch 1) and all together (batched),
variants interleaved round by round so that the load of a shared machine falls on all alike: RTF =
decoding seconds / audio seconds, best of `--repeats` rounds after a warm-up, the share of the
batch-1 time spent in the encoder, and XLA's temporaries of the compiled batched decoder (where
the expanded float weights live). In the same rounds each utterance is also streamed
(`models.streaming.greedy`, batch 1, `--chunk_ms` chunks, features normalised with the statistics
of these utterances): the median and P90 over all chunks of the time from a chunk's arrival to its
tokens (`step`, compiled once beforehand), and the expansion alone (`gq_jax.runtime.expand` of the
whole resident tree, jitted: the work every call does before its first matmul). Then each against
the 8-bit model, chunk latency also as the ratio of medians over the same chunks (same clip, same
round) with a paired bootstrap 95 % interval. With
`--int8_matmuls` the 8-bit and 5-bit models are also decoded with int8 × int8 -> int32 matmuls, and
their token error rate against the exact decode of the same model is printed (random weights: the
int8 path's deviation, not a WER on speech).

Audio: the first `--utterances` of the corpus' test split, padded to the longest; `--corpus ''`
uses random features of `--seconds` each instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = [("float32", "identity", 32), ("uniform8", "ptq_round", 8), ("gq5", "gq", 5),
            ("gq4", "gq", 4), ("gq2", "gq", 2)]
XLA_LOOKUP = "gq5_xla"  # the 5-bit model timed again with `gq_jax.cpu_lookup` off


def load_config(path: str):
    spec = importlib.util.spec_from_file_location("bench_config", ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def model_and_params(config):
    from training import config as config_lib, state as state_lib

    model = config_lib.model_from_config(config.model, config.data.vocab_size)
    return model, state_lib.random_params(model, config)


def write_variants(config, folder: pathlib.Path) -> dict[str, dict]:
    """Packed file and size report of every variant, in `folder`."""
    import gq_jax
    import ml_collections
    from training import config as config_lib

    model, params = model_and_params(config)
    out = {}
    for name, method, bits in VARIANTS:
        if method == "identity":
            hardened, sizes = params, gq_jax.size_report(params)
        else:
            quant = ml_collections.ConfigDict(config.quant.to_dict())
            quant.method = method
            quant.rules = tuple((pattern, bits, *rest) for pattern, _, *rest in config.quant.rules)
            quantizer = config_lib.method_for(quant, model, config.features.num_mel_bins).quantizer
            exported = gq_jax.export(quantizer, params, quantizer.init(params))
            hardened, sizes = exported.hardened, exported.sizes
        path = folder / f"{name}.gqpk"
        out[name] = {"path": str(path), "file_bytes": gq_jax.save_packed(path, hardened),
                     "size_report_bytes": sizes.total_bytes, "average_bits": sizes.average_bits}
    return out


def audio_clips(corpus: str, count: int, seconds: float) -> list:
    """The first `count` utterances of the corpus' test split (16 kHz float32), or with `corpus`
    '' as many `seconds`-long clips of seeded noise."""
    import numpy as np

    if not corpus:
        rng = np.random.default_rng(0)
        return [(0.1 * rng.normal(size=int(seconds * 16000))).astype(np.float32) for _ in range(count)]
    import soundfile

    from corpora import batching

    rows = [json.loads(line) for line in (ROOT / corpus / "test.jsonl").read_text().splitlines()[:count]]
    audio = []
    for row in rows:
        samples, rate = soundfile.read(ROOT / corpus / row["path"], dtype="float32")
        audio.append(batching.conform_sample_rate(samples, rate, row["id"]))
    return audio


def utterances(config, corpus: str, count: int, seconds: float):
    """(features [B, T, F], lengths [B], audio seconds [B]) of `count` utterances (`audio_clips`;
    with `corpus` '', random features of `seconds` each)."""
    import jax.numpy as jnp
    import numpy as np

    if not corpus:
        import jax

        frames = int(seconds * 100)
        feats = jax.random.normal(jax.random.key(0), (count, frames, config.features.num_mel_bins))
        return feats, jnp.full((count,), frames), np.full(count, seconds)
    from training import input_pipeline

    audio = audio_clips(corpus, count, seconds)
    width = max(map(len, audio))
    batch = {"audio": np.stack([np.pad(a, (0, width - len(a))) for a in audio]),
             "audio_lengths": np.array([len(a) for a in audio])}
    feats, lengths = input_pipeline.features(batch, config.features)
    return feats, lengths, np.array([len(a) for a in audio]) / 16000.0


def status_bytes(field: str) -> int:
    """A /proc/self/status memory field (VmRSS: now; VmHWM: peak of this process image) in bytes."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def without_kernel(tree):
    """The resident tree with every `PackedArray` expanded by XLA's lookup (`cpu_lookup` off)."""
    import dataclasses

    import jax

    from gq_jax import runtime

    off = lambda x: dataclasses.replace(x, kernel=False) if isinstance(x, runtime.PackedArray) else x
    return jax.tree_util.tree_map(off, tree, is_leaf=runtime.is_resident)


def decoder(config, path: str, int8_matmuls: bool = False, kernel: bool = True):
    """(load seconds, resident tree, search(features, lengths), encode(features, lengths)); with
    `kernel` False the lookups are XLA's even where `gq_jax.cpu_lookup` serves."""
    import jax

    from gq_jax import runtime
    from models import decoding
    from training import config as config_lib

    start = time.perf_counter()
    tree = jax.block_until_ready(runtime.load_resident(path))
    load_s = time.perf_counter() - start
    tree = tree if kernel else without_kernel(tree)
    served = runtime.resident_model(config_lib.model_from_config(config.model, config.data.vocab_size),
                                    int8_matmuls=int8_matmuls)
    variables = {"params": tree}
    search = lambda f, n: jax.block_until_ready(decoding.greedy_search(served, variables, f, n))
    encode = lambda f, n: jax.block_until_ready(decoding._encode(served, variables, f, n))
    return load_s, tree, search, encode


def worker(args) -> None:
    """Load one packed file and decode once in this process alone; print one JSON line (memory,
    load time, tokens). Timing is done interleaved by `main`, where machine load hits every variant alike."""
    import jax

    from gq_jax import runtime

    config = load_config(args.config)
    feats, lengths, _ = jax.block_until_ready(utterances(config, args.corpus, args.utterances, args.seconds))
    rss_before = status_bytes("VmRSS")
    load_s, tree, search, _ = decoder(config, args.worker)
    rss_loaded = status_bytes("VmRSS") - rss_before
    search(feats, lengths), search(feats[:1], lengths[:1])
    print(json.dumps({"resident_bytes": runtime.resident_bytes(tree), "load_s": load_s,
                      "rss_load_bytes": rss_loaded, "peak_rss_bytes": status_bytes("VmHWM")}))


def clip_stats(clips: list, num_mel_bins: int):
    """`frontend.FeatureStats` of the log-mel frames of `clips` (the streaming decoder's normalisation)."""
    import jax.numpy as jnp

    from models import frontend

    total = None
    for clip in clips:
        feats, lengths = frontend.log_mel_spectrogram(jnp.asarray(clip)[None], jnp.array([len(clip)]),
                                                      num_mel_bins=num_mel_bins)
        stats = frontend.feature_stats(feats, lengths)
        total = stats if total is None else total.merge(stats)
    return total


def chunk_latencies(config, tree, stats, chunk_samples: int, int8_matmuls: bool):
    """`stream(clip) -> [seconds per chunk]`: the clip streamed through `models.streaming.greedy` of
    the resident tree, each `step` timed until its state (tokens included) is ready."""
    import jax

    from gq_jax import runtime
    from models import streaming
    from training import config as config_lib

    served = runtime.resident_model(config_lib.model_from_config(config.model, config.data.vocab_size),
                                    int8_matmuls=int8_matmuls)
    decoder = streaming.greedy(served, {"params": tree}, stats, chunk_samples=chunk_samples)

    def stream(clip) -> list[float]:
        state, seconds = jax.block_until_ready(decoder.init()), []
        for start in range(0, len(clip), chunk_samples):
            began = time.perf_counter()
            state = jax.block_until_ready(decoder.step(state, clip[start:start + chunk_samples]))
            seconds.append(time.perf_counter() - began)
        jax.block_until_ready(decoder.finish(state))
        return seconds

    return stream


def timings(config, files: dict, args, names: list[tuple[str, bool]]) -> dict:
    """Best-of-`repeats` seconds per (variant, int8) for batch 1 (each utterance alone), batched, and
    batch-1 encoder alone, and every chunk's streaming latency, the variants interleaved round by
    round; plus XLA's temporaries and tokens."""
    import jax
    import numpy as np

    from gq_jax import runtime
    from models import decoding
    from training import config as config_lib

    feats, lengths, audio_s = utterances(config, args.corpus, args.utterances, args.seconds)
    singles = [(feats[i:i + 1], lengths[i:i + 1]) for i in range(len(lengths))]
    decoders = {key: decoder(config, files[key[0]]["path"], key[1], kernel=key[0] != XLA_LOOKUP)
                for key in names}
    clips = audio_clips(args.corpus, args.utterances, args.seconds)
    stats, chunk_samples = clip_stats(clips, config.features.num_mel_bins), int(args.chunk_ms * 16)
    streams = {key: chunk_latencies(config, decoders[key][1], stats, chunk_samples, key[1]) for key in names}
    expand = jax.jit(runtime.expand)
    out = {key: {"batch1": [], "batched": [], "encode": [], "expand": [], "chunks": []} for key in names}
    for key, (_, tree, search, encode) in decoders.items():
        search(feats, lengths), search(*singles[0]), encode(*singles[0]), streams[key](clips[0])  # compile
        jax.block_until_ready(expand(tree))
    for _ in range(args.repeats):
        for key, (_, tree, search, encode) in decoders.items():
            for name, fn in (("expand", lambda: jax.block_until_ready(expand(tree))),
                             ("batched", lambda: search(feats, lengths)),
                             ("batch1", lambda: [search(f, n) for f, n in singles]),
                             ("encode", lambda: [encode(f, n) for f, n in singles])):
                start = time.perf_counter()
                fn()
                out[key][name].append(time.perf_counter() - start)
            out[key]["chunks"] += [s for clip in clips for s in streams[key](clip)]
    result = {}
    for key, (_, tree, search, _) in decoders.items():
        tokens, num_tokens = jax.device_get(search(feats, lengths))
        served = runtime.resident_model(config_lib.model_from_config(config.model, config.data.vocab_size), key[1])
        memory = decoding.greedy_search.lower(served, {"params": tree}, feats, lengths, 3).compile().memory_analysis()
        chunks = np.array(out[key].pop("chunks"))
        times = {name: min(values) for name, values in out[key].items()}
        result[key] = {"chunk_seconds": chunks, "expand_s": times["expand"],
                       "chunk_p50_s": float(np.median(chunks)), "chunk_p90_s": float(np.percentile(chunks, 90)),
                       "chunks": len(chunks), "rtf_batch1": times["batch1"] / float(audio_s.sum()),
                       "rtf_batched": times["batched"] / float(audio_s.sum()),
                       "encoder_share_batch1": times["encode"] / times["batch1"],
                       "temp_bytes": memory.temp_size_in_bytes,
                       "tokens": [row[:n].tolist() for row, n in zip(tokens, num_tokens)],
                       "audio_s": float(audio_s.sum()), "padded_s": float(len(audio_s) * feats.shape[1] / 100),
                       "devices": str(jax.devices())}
    return result


LOOKUP_BITS = range(1, 9)
SELECT_BITS = {"float32": range(1, 7), "int8": range(1, 8)}  # 2^b − 1 selects: wider trees only grow


def lookup_costs(files: dict, calls: int) -> dict:
    """Median seconds over `calls` calls to expand the largest kernel of the model from its resident
    form: int8 values (`Int8Array`, the 8-bit model's), and at each width b bit planes of random
    b-bit indices with the lookup as a gather, for b in SELECT_BITS as `runtime.select_tree`, and as
    the `cpu_lookup` kernel where it serves, into two tables: the float32 codebook, scaled
    (`PackedArray.expand`), and its int8 grid (`runtime.to_int8`, for `int8_matmuls`; no kernel).
    {"shape", "int8_values", dtype: {"gather"|"select"|"kernel": {b: s}}, "uses": {dtype: {b: name}}}."""
    import dataclasses

    import jax
    import jax.numpy as jnp
    import numpy as np

    from benchmarks.quantizer import median_seconds
    from gq_jax import cpu_lookup, runtime

    kernel = max((x for x in jax.tree_util.tree_leaves(runtime.load_resident(files["uniform8"]["path"]),
                                                       is_leaf=runtime.is_resident)
                  if isinstance(x, runtime.Int8Array)), key=lambda x: x.values.size)
    shape, count, rng = kernel.shape, kernel.values.size, np.random.default_rng(0)
    
    def median(fn, *args) -> float:
        return median_seconds(jax.jit(fn), args, calls)

    out = {"shape": shape, "int8_values": median(lambda x: x.expand(), kernel),
           "uses": {dtype: {} for dtype in SELECT_BITS}}
    out.update({dtype: {"gather": {}, "select": {}, "kernel": {}} for dtype in SELECT_BITS})
    for bits in LOOKUP_BITS:
        planes = tuple(map(jnp.asarray, runtime.pack_planes(rng.integers(0, 2**bits, count), bits)))
        codebook = np.sort(rng.normal(size=2**bits)) / 4
        tables = {"float32": (jnp.asarray(codebook, jnp.float32), kernel.scale),
                  "int8": (jnp.asarray(np.clip(np.round(codebook * 127), -127, 127), jnp.int8), jnp.int8(1))}
        index = lambda p: runtime.unpack_planes(p, bits, count)
        for dtype, (table, scale) in tables.items():
            costs = out[dtype]
            costs["gather"][bits] = median(
                lambda p, t, s: t.at[index(p)].get(mode="promise_in_bounds").reshape(shape) * s, planes, table, scale)
            if bits in SELECT_BITS[dtype]:
                costs["select"][bits] = median(
                    lambda p, t, s: runtime.select_tree(t, index(p), bits).reshape(shape) * s, planes, table, scale)
            serves = dtype == "float32" and cpu_lookup.serves(bits, shape, kernel.scale.shape)
            if serves:
                leaf = runtime.PackedArray(planes, table, scale, bits, shape, "float32", kernel=True)
                costs["kernel"][bits] = median(lambda x: x.expand(), leaf)
            out["uses"][dtype][bits] = ("kernel" if serves else
                                        "select" if runtime.select_tree_wins(bits, dtype) else "gather")
    return out


def print_lookup_costs(costs: dict) -> None:
    base = costs["int8_values"]
    us = lambda seconds: f"{1e6 * seconds:.1f}" if seconds is not None else ""
    ratio = lambda seconds: f"{seconds / base:.2f}x" if seconds is not None else ""
    print(f"\nexpansion of one {list(costs['shape'])} kernel (the largest), median of calls: int8 values "
          f"{1e6 * base:.1f} us; b-bit planes with the lookup as a gather, a select tree or the AVX-512 kernel "
          f"(gq_jax.cpu_lookup), into the float32 codebook (scaled) and into its int8 grid (--int8_matmuls):")
    print(f"{'bits':>4} {'gather us':>10} {'select us':>10} {'kernel us':>10} {'gather/int8':>12} {'select/int8':>12} "
          f"{'kernel/int8':>12}  {'uses':<6} | {'int8 grid: gather us':>20} {'select us':>10}  uses")
    for bits in costs["float32"]["gather"]:
        cells = []
        for dtype in SELECT_BITS:
            times = [costs[dtype][way].get(bits) for way in ("gather", "select", "kernel")]
            if dtype == "float32":
                cells.append(" ".join(f"{us(t):>10}" for t in times) + " " + " ".join(f"{ratio(t):>12}" for t in times)
                             + f"  {costs['uses'][dtype][bits]:<6}")
            else:
                cells.append(f"{us(times[0]):>20} {us(times[1]):>10}  {costs['uses'][dtype][bits]}")
        print(f"{bits:>4} " + " | ".join(cells))


def paired_median_ratio(a, b, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """median(b) / median(a) for latencies of the same items, and its paired bootstrap 95 %
    percentile interval: items resampled with replacement, the same indices for a and b."""
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    draws = np.random.default_rng(seed).integers(0, len(a), size=(resamples, len(a)))
    ratios = np.median(b[draws], axis=1) / np.median(a[draws], axis=1)
    return float(np.median(b) / np.median(a)), *map(float, np.percentile(ratios, [2.5, 97.5]))


def token_error_rate(hyps: list[list[int]], refs: list[list[int]]) -> float:
    """Levenshtein distance over token ids, summed, / reference tokens."""
    def distance(a, b):
        row = list(range(len(b) + 1))
        for i, x in enumerate(a, 1):
            prev, row[0] = row[0], i
            for j, y in enumerate(b, 1):
                prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
        return row[-1]
    return sum(distance(h, r) for h, r in zip(hyps, refs)) / max(1, sum(map(len, refs)))


def measure(args, path: str) -> dict:
    """The worker's figures for the packed file at `path`, measured in a fresh subprocess."""
    command = [sys.executable, __file__, "--worker", path, "--config", args.config, "--corpus", args.corpus,
               "--utterances", str(args.utterances), "--seconds", str(args.seconds)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        sys.exit(f"worker for {path} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/rnnt_synth_large.py")
    parser.add_argument("--corpus", default="data/synth-en-large")
    parser.add_argument("--utterances", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0, help="per utterance, with --corpus ''")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk_ms", type=float, default=100.0, help="streaming chunk length")
    parser.add_argument("--int8_matmuls", action="store_true")
    parser.add_argument("--lookup_calls", type=int, default=200, help="calls per expansion in the lookup table")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    config = load_config(args.config)
    names = ([(name, False) for name, _, _ in VARIANTS] + [(XLA_LOOKUP, False)]
             + ([("uniform8", True), ("gq5", True)] if args.int8_matmuls else []))
    with tempfile.TemporaryDirectory() as folder:
        files = write_variants(config, pathlib.Path(folder))
        files[XLA_LOOKUP] = files["gq5"]
        alone = {name: measure(args, files[name]["path"]) for name, _, _ in VARIANTS}
        timed = timings(config, files, args, names)
        lookups = lookup_costs(files, args.lookup_calls)
    results = {name: {**files[name], **alone[name], **timed[(name, False)]} for name, _, _ in VARIANTS}
    int8 = {name: timed[(name, True)] for name, int8_matmuls in names if int8_matmuls}
    first = results["float32"]
    print(f"model: {args.config} ({config.model.name}), random weights (seed {config.seed}); "
          f"{args.utterances} utterances, {first['audio_s']:.2f} s of audio "
          f"({first['padded_s']:.2f} s padded to the longest); greedy, decoding only; {first['devices']}; "
          f"streaming: {args.chunk_ms:g} ms chunks, batch 1, latency per chunk over {first['chunks']} chunks")
    header = (f"{'variant':<9} {'bits':>5} {'resident B':>11} {'file B':>10} {'XLA temp B':>11} "
              f"{'peak RSS MB':>11} {'load RSS MB':>11} {'load s':>7} {'RTF b1':>7} {'RTF bN':>7} {'enc %':>6} "
              f"{'chunk p50 ms':>12} {'chunk p90 ms':>12} {'expand ms':>9}")
    print(header)
    for name, _, bits in VARIANTS:
        r = results[name]
        shown_bits = f"{r['average_bits']:.0f}" if r["average_bits"] else "32"
        print(f"{name:<9} {shown_bits:>5} {r['resident_bytes']:>11} {r['file_bytes']:>10} {r['temp_bytes']:>11} "
              f"{r['peak_rss_bytes'] / 2**20:>11.1f} {r['rss_load_bytes'] / 2**20:>11.1f} {r['load_s']:>7.3f} "
              f"{r['rtf_batch1']:>7.4f} {r['rtf_batched']:>7.4f} {100 * r['encoder_share_batch1']:>6.1f} "
              f"{1000 * r['chunk_p50_s']:>12.2f} {1000 * r['chunk_p90_s']:>12.2f} {1000 * r['expand_s']:>9.2f}")
    base = results["uniform8"]
    print("\nagainst uniform 8-bit (goal at 5 bits: resident <= 0.70x, latency <= 1.00x):")
    print(f"{'variant':<9} {'resident':>9} {'peak RSS':>9} {'load':>7} {'RTF b1':>7} {'RTF bN':>7} "
          f"{'chunk p50':>9} {'chunk p90':>9} {'expand':>7}  paired chunk median ratio [95 %]")
    for name, _, _ in VARIANTS:
        r = results[name]
        ratio, low, high = paired_median_ratio(base["chunk_seconds"], r["chunk_seconds"])
        print(f"{name:<9} {r['resident_bytes'] / base['resident_bytes']:>8.3f}x "
              f"{r['peak_rss_bytes'] / base['peak_rss_bytes']:>8.3f}x {r['load_s'] / base['load_s']:>6.2f}x "
              f"{r['rtf_batch1'] / base['rtf_batch1']:>6.2f}x {r['rtf_batched'] / base['rtf_batched']:>6.2f}x "
              f"{r['chunk_p50_s'] / base['chunk_p50_s']:>8.2f}x {r['chunk_p90_s'] / base['chunk_p90_s']:>8.2f}x "
              f"{r['expand_s'] / base['expand_s']:>6.2f}x  {ratio:.3f}x [{low:.3f}, {high:.3f}]")
    xla, gq5 = timed[(XLA_LOOKUP, False)], results["gq5"]
    print(f"gq5 with XLA's lookup instead of the kernel ({XLA_LOOKUP}): chunk p50 {1000 * xla['chunk_p50_s']:.2f} ms, "
          f"paired chunk median ratio {'{:.3f}x [{:.3f}, {:.3f}]'.format(*paired_median_ratio(base['chunk_seconds'], xla['chunk_seconds']))} "
          f"against uniform 8-bit; the kernel's against it "
          f"{'{:.3f}x [{:.3f}, {:.3f}]'.format(*paired_median_ratio(xla['chunk_seconds'], gq5['chunk_seconds']))}; "
          f"expand {1000 * xla['expand_s']:.2f} ms ({xla['expand_s'] / base['expand_s']:.2f}x)")
    for name, r in int8.items():
        ter = token_error_rate(r["tokens"], results[name]["tokens"])
        print(f"int8 x int8 matmuls, {name}: RTF b1 {r['rtf_batch1']:.4f} ({r['rtf_batch1'] / results[name]['rtf_batch1']:.2f}x "
              f"its exact decode), batched {r['rtf_batched']:.4f} ({r['rtf_batched'] / results[name]['rtf_batched']:.2f}x), "
              f"chunk p50 {1000 * r['chunk_p50_s']:.2f} ms ({r['chunk_p50_s'] / results[name]['chunk_p50_s']:.2f}x); "
              f"token error rate against its exact decode {100 * ter:.2f} %")
    print_lookup_costs(lookups)


if __name__ == "__main__":
    main()
