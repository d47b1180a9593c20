"""Transducer loss benchmark: loss + gradient time and peak memory, ratios from one run.

    python benchmarks/transducer_loss.py [--quick] [--repeats N]

Columns, on the same logits (B=8, T=200, U=50; V=128 and V=1024):
  ours        models.transducer.rnnt_loss (anti-diagonal scan over the [B, T, U+1] log-probs)
  naive       naive_rnnt_loss below: full log_softmax, then a scan over time with an inner scan
              over labels
  torchaudio  torchaudio.functional.rnnt_loss, when torchaudio is installed (`bench` extra)
and, with a joint network tanh(enc We + pred Wp) Wo included in the gradient:
  full        rnnt_loss(joint(enc, pred))           (builds [B, T, U+1, V])
  chunked     rnnt_loss_chunked(enc, pred, joint)   (builds [B, chunk, U+1, V] at a time)
  pruned      rnnt_loss_pruned with S = 4 label positions per frame, its trivial joiner enc Wa and
              pred Wl, loss = pruned NLL + 0.5 simple NLL   (builds [B, T, 4, V])

Peak memory of a jitted function is XLA's compiled memory analysis: argument + output + temp bytes
(deterministic on CPU). Times are the fastest of --repeats calls after a warm-up.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from models.transducer import rnnt_loss, rnnt_loss_chunked, rnnt_loss_pruned  # noqa: E402

JOINT_DIM = 256
PRUNE_RANGE = 4


def naive_rnnt_loss(
    logits: jax.Array,
    labels: jax.Array,
    logit_lengths: jax.Array,
    label_lengths: jax.Array,
    blank_id: int = 0,
) -> jax.Array:
    """Textbook RNN-T NLL: log_softmax on all of logits [B, T, U+1, V], then alpha(t, u) row by row.

    alpha(t, 0) = alpha(t-1, 0) + blank(t-1, 0); alpha(t, u) = logaddexp(alpha(t-1, u) +
    blank(t-1, u), alpha(t, u-1) + emit(t, u-1)), an outer scan over t and an inner one over u.
    Returns [B] float32 -(alpha(T_b-1, U_b) + blank(T_b-1, U_b)).
    """
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    num_labels = labels.shape[1]
    blank = log_probs[..., blank_id]  # [B, T, U+1]
    emit = jnp.take_along_axis(
        log_probs[:, :, :num_labels], jnp.clip(labels, 0)[:, None, :, None], axis=-1
    )[..., 0]  # [B, T, U]

    def row(alpha_prev_row, t):
        above = jnp.where(t == 0, alpha_prev_row, alpha_prev_row + blank[:, t - 1])  # [B, U+1]

        def cell(alpha_left, u):
            from_left = alpha_left + emit[:, t, u - 1]
            value = jnp.where(u == 0, above[:, 0], jnp.logaddexp(above[:, u], from_left))
            return value, value

        _, cells = jax.lax.scan(cell, jnp.zeros(labels.shape[0]), jnp.arange(num_labels + 1))
        alpha_row = cells.T
        return alpha_row, alpha_row

    first = jnp.full((labels.shape[0], num_labels + 1), -jnp.inf).at[:, 0].set(0.0)
    _, alphas = jax.lax.scan(row, first, jnp.arange(logits.shape[1]))  # [T, B, U+1]
    batch_index = jnp.arange(labels.shape[0])
    last_t, last_u = logit_lengths - 1, label_lengths
    return -(alphas[last_t, batch_index, last_u] + blank[batch_index, last_t, last_u])


def joint(params: dict, enc: jax.Array, pred: jax.Array) -> jax.Array:
    """enc [B, Tc, De], pred [B, U+1, Dp] -> [B, Tc, U+1, V] = tanh(enc We + pred Wp) Wo + bo."""
    hidden = jnp.tanh((enc @ params["w_enc"])[:, :, None] + (pred @ params["w_pred"])[:, None])
    return hidden @ params["w_out"] + params["b_out"]


def best_time_s(fns: dict[str, Callable], args: tuple, repeats: int) -> dict[str, float]:
    """Fastest of `repeats` calls of each function after a warm-up, the functions interleaved so
    that load from other processes hits them alike."""
    for fn in fns.values():
        jax.block_until_ready(fn(*args))
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def _time_and_memory(fns: dict[str, Callable], args: tuple, repeats: int) -> dict[str, tuple]:
    times = best_time_s({name: jax.jit(fn) for name, fn in fns.items()}, args, repeats)
    return {name: (times[name], peak_bytes(fn, args)) for name, fn in fns.items()}


def peak_bytes(fn: Callable, args: tuple) -> int:
    stats = jax.jit(fn).lower(*args).compile().memory_analysis()
    return stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes


def torchaudio_time_s(logits: jax.Array, labels: jax.Array, logit_lengths: jax.Array,
                      label_lengths: jax.Array, repeats: int) -> float | None:
    """Fastest loss + backward of torchaudio.functional.rnnt_loss, or None without torchaudio."""
    try:
        import torch
        import torchaudio.functional
    except ImportError:
        return None
    logits_t = torch.tensor(np.asarray(logits), requires_grad=True)
    args = (torch.tensor(np.asarray(labels)), torch.tensor(np.asarray(logit_lengths)),
            torch.tensor(np.asarray(label_lengths)))

    def loss_and_grad():
        logits_t.grad = None
        torchaudio.functional.rnnt_loss(logits_t, *args, blank=0, reduction="sum").backward()

    loss_and_grad()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        loss_and_grad()
        times.append(time.perf_counter() - start)
    return min(times)


def random_problem(key: jax.Array, batch: int, frames: int, labels_max: int,
                   vocab: int) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Normal logits [B, T, U+1, V], non-blank labels, lengths in [T/2, T] and [U/2, U], the
    first example full length."""
    k_logits, k_labels, k_t, k_u = jax.random.split(key, 4)
    logits = jax.random.normal(k_logits, (batch, frames, labels_max + 1, vocab), jnp.float32)
    labels = jax.random.randint(k_labels, (batch, labels_max), 1, vocab, jnp.int32)
    logit_lengths = jax.random.randint(k_t, (batch,), frames // 2, frames + 1).at[0].set(frames)
    label_lengths = jax.random.randint(k_u, (batch,), labels_max // 2, labels_max + 1)
    label_lengths = label_lengths.at[0].set(labels_max)
    return logits, labels, logit_lengths.astype(jnp.int32), label_lengths.astype(jnp.int32)


def bench_logits(vocab: int, batch: int, frames: int, labels_max: int, repeats: int) -> None:
    logits, labels, logit_lengths, label_lengths = random_problem(
        jax.random.PRNGKey(vocab), batch, frames, labels_max, vocab
    )
    args = (logits, labels, logit_lengths, label_lengths)
    grad_fns = {}
    for name, loss_fn in (("ours", rnnt_loss), ("naive", naive_rnnt_loss)):
        def total(logits, labels, logit_lengths, label_lengths, loss_fn=loss_fn):
            return jnp.sum(loss_fn(logits, labels, logit_lengths, label_lengths))

        grad_fns[name] = jax.value_and_grad(total)
    rows = _time_and_memory(grad_fns, args, repeats)
    print(f"\n[logits only] B={batch} T={frames} U={labels_max} V={vocab}  (loss + d/dlogits)")
    for name, (time_s, size) in rows.items():
        print(f"  {name:<11} {time_s * 1e3:9.1f} ms   peak {size / 2**20:8.1f} MiB")
    ours_s = rows["ours"][0]
    print(f"  naive / ours time: {rows['naive'][0] / ours_s:.2f}x")
    torch_s = torchaudio_time_s(*args, repeats)
    if torch_s is None:
        print("  torchaudio  skipped: torchaudio not installed (pip install '.[bench]')")
    else:
        print(f"  torchaudio  {torch_s * 1e3:9.1f} ms   peak n/a (torch CPU allocator)")
        print(f"  torchaudio / ours time: {torch_s / ours_s:.2f}x")


def bench_with_joint(vocab: int, batch: int, frames: int, labels_max: int, repeats: int,
                     chunk_size: int) -> None:
    keys = jax.random.split(jax.random.PRNGKey(1000 + vocab), 6)
    _, labels, logit_lengths, label_lengths = random_problem(keys[0], batch, frames, labels_max, 2)
    labels = jax.random.randint(keys[1], labels.shape, 1, vocab, jnp.int32)
    scale = JOINT_DIM ** -0.5
    params = {
        "w_enc": scale * jax.random.normal(keys[2], (JOINT_DIM, JOINT_DIM)),
        "w_pred": scale * jax.random.normal(keys[3], (JOINT_DIM, JOINT_DIM)),
        "w_out": scale * jax.random.normal(keys[4], (JOINT_DIM, vocab)),
        "b_out": jnp.zeros((vocab,)),
        "w_am": scale * jax.random.normal(keys[1], (JOINT_DIM, vocab)),
        "w_lm": scale * jax.random.normal(keys[2], (JOINT_DIM, vocab)),
    }
    enc = jax.random.normal(keys[5], (batch, frames, JOINT_DIM))
    pred = jax.random.normal(keys[0], (batch, labels_max + 1, JOINT_DIM))
    args = (params, enc, pred, labels, logit_lengths, label_lengths)

    def full(params, enc, pred, labels, logit_lengths, label_lengths):
        return jnp.sum(rnnt_loss(joint(params, enc, pred), labels, logit_lengths, label_lengths))

    def chunked(params, enc, pred, labels, logit_lengths, label_lengths):
        joint_fn = lambda e, p: joint(params, e, p)  # noqa: E731
        return jnp.sum(rnnt_loss_chunked(enc, pred, joint_fn, labels, logit_lengths,
                                         label_lengths, chunk_size=chunk_size))

    def pruned(params, enc, pred, labels, logit_lengths, label_lengths):
        joint_fn = lambda e, p: (jnp.tanh(e @ params["w_enc"] + p @ params["w_pred"])  # noqa: E731
                                 @ params["w_out"] + params["b_out"])
        pruned_nll, simple_nll = rnnt_loss_pruned(
            enc, pred, joint_fn, enc @ params["w_am"], pred @ params["w_lm"], labels, logit_lengths,
            label_lengths, prune_range=PRUNE_RANGE)
        return jnp.sum(pruned_nll + 0.5 * simple_nll)

    grad_fns = {name: jax.value_and_grad(fn, argnums=(0, 1, 2))
                for name, fn in (("full", full), ("chunked", chunked), ("pruned", pruned))}
    rows = _time_and_memory(grad_fns, args, repeats)
    print(f"\n[with joint, H={JOINT_DIM}] B={batch} T={frames} U={labels_max} V={vocab} "
          f"chunk={chunk_size}  (loss + d/d(params, enc, pred))")
    for name, (time_s, size) in rows.items():
        print(f"  {name:<11} {time_s * 1e3:9.1f} ms   peak {size / 2**20:8.1f} MiB")
    print(f"  chunked / full: time {rows['chunked'][0] / rows['full'][0]:.2f}x, "
          f"peak memory {rows['chunked'][1] / rows['full'][1]:.3f}x")
    print(f"  pruned / full: time {rows['pruned'][0] / rows['full'][0]:.2f}x, "
          f"peak memory {rows['pruned'][1] / rows['full'][1]:.3f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="B=2, T=50, U=12: a smoke run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk-size", type=int, default=8)
    args = parser.parse_args()
    batch, frames, labels_max = (2, 50, 12) if args.quick else (8, 200, 50)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}")
    for vocab in (128, 1024):
        bench_logits(vocab, batch, frames, labels_max, args.repeats)
    for vocab in (128, 1024):
        bench_with_joint(vocab, batch, frames, labels_max, args.repeats, args.chunk_size)


if __name__ == "__main__":
    main()
