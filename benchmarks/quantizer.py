"""Time and peak memory of a jit-compiled forward+backward of `gq_jax.quantize_params`.

On a 10M-weight tree (10 kernels of 1000 x 1000) at 1, 2, 4 and 8 bits, the dense [N, K] soft
assignment against the windowed one (window=4: 8 centroids per weight), each as a ratio to a plain
elementwise pass (forward+backward of sum(W²)) over the same tree, measured in the same run.

Peak memory is XLA's buffer assignment for the compiled program (arguments + outputs + temporaries,
`compiled.memory_analysis()`), which is exact and repeatable on CPU. A program needing more than
--max-run-gib is compiled and measured but not run.

    python benchmarks/quantizer.py            # the full 10M-weight run
    python benchmarks/quantizer.py --quick    # 1M weights
Goal: windowed memory grows by at most 2x from 1 bit to 8 bits.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

import gq_jax

GIB = 2**30


def make_tree(num_leaves: int, side: int) -> dict:
    keys = jax.random.split(jax.random.key(0), num_leaves)
    return {f"layer_{i}": {"kernel": jax.random.normal(k, (side, side))} for i, k in enumerate(keys)}


def peak_bytes(compiled) -> int:
    stats = compiled.memory_analysis()
    return stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes


def median_seconds(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(loss, args, repeats: int, max_run_bytes: int) -> tuple[int, float | None]:
    """(peak bytes, median seconds or None when the program is too large to run here)."""
    grad_fn = jax.jit(jax.grad(loss, argnums=tuple(range(len(args)))))
    compiled = grad_fn.lower(*args).compile()
    peak = peak_bytes(compiled)
    if peak > max_run_bytes:
        return peak, None
    return peak, median_seconds(compiled, args, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M weights instead of 10M")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-run-gib", type=float, default=6.0)
    args = parser.parse_args()
    params = make_tree(10, 316 if args.quick else 1000)
    num_weights = sum(x.size for x in jax.tree.leaves(params))
    max_run = int(args.max_run_gib * GIB)
    print(f"tree: {num_weights:,} weights in {len(params)} kernels; device {jax.devices()[0]}")

    plain = lambda p: sum(jnp.sum(w * w) for w in jax.tree.leaves(p))
    base_bytes, base_s = measure(plain, (params,), args.repeats, max_run)
    print(f"baseline elementwise fwd+bwd: {base_bytes / GIB:.3f} GiB, {1e3 * base_s:.1f} ms")
    print(f"{'bits':>4} {'form':>9} {'peak GiB':>9} {'x base':>7} {'ms':>9} {'x base':>7}")
    windowed_peaks = {}
    for bits in (1, 2, 4, 8):
        for form, window in (("dense", None), ("windowed", 4)):
            config = gq_jax.GQConfig([gq_jax.Rule(".*kernel", bits)], window=window)
            state = gq_jax.init(params, config)
            loss = lambda p, s: sum(
                jnp.sum(w * w) for w in jax.tree.leaves(gq_jax.quantize_params(p, s, config, 5.0))
            )
            peak, seconds = measure(loss, (params, state), args.repeats, max_run)
            if form == "windowed":
                windowed_peaks[bits] = peak
            timing = (
                f"{1e3 * seconds:9.1f} {seconds / base_s:7.1f}"
                if seconds is not None
                else f"{'not run':>9} {'(> ' + str(args.max_run_gib) + ' GiB)':>7}"
            )
            print(f"{bits:>4} {form:>9} {peak / GIB:9.3f} {peak / base_bytes:7.1f} {timing}")
    growth = windowed_peaks[8] / windowed_peaks[1]
    verdict = "met" if growth <= 2.0 else "NOT met"
    print(f"windowed peak memory, 8 bits / 1 bit: {growth:.2f}x (goal <= 2x: {verdict})")


if __name__ == "__main__":
    main()
