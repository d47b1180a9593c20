"""RNN-T (transducer) negative log-likelihood, exact, in log space, jit-compatible.

Notation (Graves, 2012, "Sequence Transduction with Recurrent Neural Networks"): an utterance
has T frames and U labels y_1..y_U; the joint network gives, at every lattice node (t, u) with
0 <= t < T and 0 <= u <= U, a distribution over V symbols including blank. Let

    blank(t, u) = log P(blank | t, u)           (move t -> t + 1)
    emit(t, u)  = log P(y_{u+1} | t, u), u < U  (move u -> u + 1)

The forward variable alpha(t, u) = log P(reach node (t, u)) obeys

    alpha(0, 0) = 0
    alpha(t, u) = logaddexp(alpha(t-1, u) + blank(t-1, u), alpha(t, u-1) + emit(t, u-1))

and the loss is  -log P(y | x) = -(alpha(T-1, U) + blank(T-1, U)).

Both public functions reduce their inputs to the same [B, T, U+1] blank and [B, T, U] emit
log-probs (`_transition_log_probs`) and run the same recursion (`_alignment_nll`). The recursion
scans over anti-diagonals n = t + u, every node of which depends only on diagonal n - 1, so one
step is a vectorised logaddexp over [B, U+1] and there are T + U - 1 steps. Gradients come from
autodiff through the scan, and from a custom VJP for the log-softmax selection that writes the
logits' cotangent in one pass. `rnnt_loss_chunked` evaluates the joint network a chunk of frames
at a time under `jax.checkpoint`, so the [B, T, U+1, V] logits never exist for the whole batch:
memory is O(B T U) plus one chunk's [B, Tc, U+1, V], at the price of recomputing each chunk's
joint once in the backward pass.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

# Log-probability of an unreachable lattice node. Finite (not -inf) so that logaddexp and its
# gradient never see inf - inf.
_LOG_ZERO = -1e30

JointFn = Callable[[jax.Array, jax.Array], jax.Array]


def rnnt_loss(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    logit_lengths: jax.typing.ArrayLike,
    label_lengths: jax.typing.ArrayLike,
    blank_id: int = 0,
) -> jax.Array:
    """Per-example RNN-T negative log-likelihood from the full joint logits.

    Args:
      logits: [B, T, U+1, V] unnormalised joint outputs (log_softmax over V is applied here,
        in float32, or float64 for float64 logits).
      labels: [B, U] int label ids in [0, V), never `blank_id`; entries at u >= label_lengths[b]
        are padding and ignored.
      logit_lengths: [B] int number of valid frames, 1 <= T_b <= T.
      label_lengths: [B] int number of valid labels, 0 <= U_b <= U.
      blank_id: index of blank in the vocabulary.

    Returns:
      [B] float32 (float64 for float64 logits), -log P(labels[b, :U_b] | logits[b, :T_b, :U_b+1]).

    Raises:
      ValueError: on mismatched shapes, or, when the inputs are concrete (not traced), on label ids
        outside [0, V) or equal to blank, or lengths out of range.
    """
    logits = jnp.asarray(logits)
    if logits.ndim != 4:
        raise ValueError(f"logits must be [B, T, U+1, V], got shape {logits.shape}")
    batch, num_frames, num_nodes, vocab = logits.shape
    labels, logit_lengths, label_lengths = map(jnp.asarray, (labels, logit_lengths, label_lengths))
    _check_labels_and_lengths(
        labels, logit_lengths, label_lengths, batch, num_frames, num_nodes - 1, vocab, blank_id,
        nodes_name="logits",
    )
    return _rnnt_nll_from_logits(logits, labels, logit_lengths, label_lengths, blank_id)


def rnnt_loss_chunked(
    encoder_out: jax.typing.ArrayLike,
    predictor_out: jax.typing.ArrayLike,
    joint_fn: JointFn,
    labels: jax.typing.ArrayLike,
    logit_lengths: jax.typing.ArrayLike,
    label_lengths: jax.typing.ArrayLike,
    blank_id: int = 0,
    chunk_size: int = 8,
) -> jax.Array:
    """Per-example RNN-T negative log-likelihood, evaluating the joint network in time chunks.

    Equal to `rnnt_loss(joint_fn(encoder_out, predictor_out), ...)` but the [B, T, U+1, V] logits
    are only ever built for `chunk_size` frames at a time, under `jax.checkpoint`, and reduced at
    once to the blank and next-label log-probs [B, chunk_size, U+1]. With `chunk_size >= T` the
    whole lattice is built once and kept for the backward (faster when it fits in memory). Gradients flow to
    `encoder_out`, `predictor_out` and whatever `joint_fn` closes over (e.g. joint parameters).

    Args:
      encoder_out: [B, T, De] encoder frames.
      predictor_out: [B, U+1, Dp] prediction-network outputs for <start>, y_1, ..., y_U.
      joint_fn: pure function (enc [B, Tc, De], pred [B, U+1, Dp]) -> logits [B, Tc, U+1, V].
      labels: [B, U] int label ids in [0, V), never `blank_id`; padding past label_lengths ignored.
      logit_lengths: [B] int number of valid frames, 1 <= T_b <= T.
      label_lengths: [B] int number of valid labels, 0 <= U_b <= U.
      blank_id: index of blank in the vocabulary.
      chunk_size: frames per joint evaluation (Tc); peak memory grows linearly with it.

    Returns:
      [B] float32 negative log-likelihoods (float64 if the joint returns float64).

    Raises:
      ValueError: as `rnnt_loss`, and when `joint_fn`'s output shape is not [B, Tc, U+1, V].
    """
    encoder_out = jnp.asarray(encoder_out)
    predictor_out = jnp.asarray(predictor_out)
    if encoder_out.ndim != 3:
        raise ValueError(f"encoder_out must be [B, T, De], got shape {encoder_out.shape}")
    if predictor_out.ndim != 3 or predictor_out.shape[0] != encoder_out.shape[0]:
        raise ValueError(
            f"predictor_out must be [B, U+1, Dp] with B={encoder_out.shape[0]} "
            f"(from encoder_out), got shape {predictor_out.shape}"
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    batch, num_frames, _ = encoder_out.shape
    num_nodes = predictor_out.shape[1]
    chunk_size = min(chunk_size, num_frames)
    probe = jax.eval_shape(joint_fn, encoder_out[:, :chunk_size], predictor_out)
    if probe.ndim != 4 or probe.shape[:3] != (batch, chunk_size, num_nodes):
        raise ValueError(
            f"joint_fn must map enc [B, Tc, De] and pred [B, U+1, Dp] to logits [B, Tc, U+1, V] = "
            f"[{batch}, {chunk_size}, {num_nodes}, V], got shape {probe.shape}"
        )
    labels, logit_lengths, label_lengths = map(jnp.asarray, (labels, logit_lengths, label_lengths))
    _check_labels_and_lengths(
        labels, logit_lengths, label_lengths, batch, num_frames, num_nodes - 1, probe.shape[3],
        blank_id, nodes_name="predictor_out",
    )
    blank_lp, emit_lp = _chunked_transition_log_probs(
        encoder_out, predictor_out, joint_fn, labels, label_lengths, blank_id, chunk_size
    )
    return _alignment_nll(blank_lp, emit_lp, logit_lengths, label_lengths)


def rnnt_loss_pruned(
    encoder_out: jax.typing.ArrayLike,
    predictor_out: jax.typing.ArrayLike,
    logits_fn: JointFn,
    simple_am: jax.typing.ArrayLike,
    simple_lm: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    logit_lengths: jax.typing.ArrayLike,
    label_lengths: jax.typing.ArrayLike,
    prune_range: int,
    blank_id: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """Pruned RNN-T loss (Kuang et al., 2022): (pruned NLL [B], simple NLL [B]).

    1. A trivial joiner, logits(t, u) = simple_am[t] + simple_lm[u], gives the whole lattice's
       blank and emit log-probs at the cost of one [B, T, V] x [B, V, U+1] matmul (its log-normaliser
       is log(exp(am - max am) exp(lm - max lm)ᵀ) + max am + max lm), and the simple NLL.
    2. The posterior occupancy of each node under the simple model (minus the gradient of its NLL
       with respect to the node's outgoing log-probs, computed without gradient) picks, per frame, a
       band of `prune_range` = S label positions u in [s_t, s_t + S) (`prune_ranges`).
    3. The real joint `logits_fn` runs on that band only, [B, T, S, V] instead of [B, T, U+1, V];
       its log-probs are put back on the lattice with every node outside the band unreachable, and
       the exact recursion gives the pruned NLL.

    An utterance with more labels than the bands can emit (U_b > T_b (S - 1)) has no path through
    them; its pruned NLL is its simple NLL.

    Args:
      encoder_out: [B, T, J] and predictor_out: [B, U+1, J]: the joint's inputs, broadcastable
        through `logits_fn` (enc [..., J], pred [..., J]) -> logits [..., V].
      simple_am: [B, T, V] and simple_lm: [B, U+1, V]: the trivial joiner's two halves.
      labels, logit_lengths, label_lengths, blank_id: as `rnnt_loss`.
      prune_range: S >= 2, label positions kept per frame.

    Raises:
      ValueError: as `rnnt_loss`, on S < 2, and on mismatched shapes of the trivial joiner.
    """
    encoder_out, predictor_out, simple_am, simple_lm = map(
        jnp.asarray, (encoder_out, predictor_out, simple_am, simple_lm))
    if prune_range < 2:
        raise ValueError(f"prune_range must be >= 2 (a band of S label positions), got {prune_range}")
    batch, num_frames, _ = encoder_out.shape
    num_nodes = predictor_out.shape[1]
    vocab = simple_am.shape[-1]
    for name, array, shape in (("simple_am", simple_am, (batch, num_frames, vocab)),
                               ("simple_lm", simple_lm, (batch, num_nodes, vocab))):
        if array.shape != shape:
            raise ValueError(f"{name} must be {shape} (B, T from encoder_out, U+1 from predictor_out, "
                             f"V from simple_am), got {array.shape}")
    labels, logit_lengths, label_lengths = map(jnp.asarray, (labels, logit_lengths, label_lengths))
    _check_labels_and_lengths(labels, logit_lengths, label_lengths, batch, num_frames, num_nodes - 1,
                              vocab, blank_id, nodes_name="predictor_out")
    safe_labels = jnp.where(jnp.arange(labels.shape[1])[None, :] < label_lengths[:, None], labels,
                            blank_id).astype(jnp.int32)
    simple_blank, simple_emit = _simple_transition_log_probs(simple_am, simple_lm, safe_labels, blank_id)
    simple_nll, (blank_posterior, emit_posterior) = _nll_and_posteriors(
        simple_blank, simple_emit, logit_lengths, label_lengths)
    occupancy = blank_posterior + jnp.pad(emit_posterior, ((0, 0), (0, 0), (0, 1)))  # [B, T, U+1]
    starts = prune_ranges(occupancy, logit_lengths, label_lengths, prune_range)  # [B, T]
    band = jnp.minimum(starts[..., None] + jnp.arange(prune_range), num_nodes - 1)  # [B, T, S]
    band_pred = jnp.take_along_axis(predictor_out[:, None], band[..., None], axis=2)  # [B, T, S, J]
    logits = logits_fn(encoder_out[:, :, None, :], band_pred)  # [B, T, S, V]
    band_labels = jnp.take_along_axis(
        jnp.pad(safe_labels, ((0, 0), (0, 1)), constant_values=blank_id)[:, None, :],
        band[:, :, :-1], axis=2)  # [B, T, S-1]: y_{u+1} at u = s_t + k
    band_blank, band_emit = _selected_log_probs(logits, band_labels, blank_id)
    pruned_nll = _alignment_nll(*_unband(band_blank, band_emit, starts, num_nodes), logit_lengths,
                                label_lengths)
    feasible = label_lengths <= logit_lengths * (prune_range - 1)
    return jnp.where(feasible, pruned_nll, simple_nll), simple_nll


def prune_ranges(occupancy: jax.Array, logit_lengths: jax.Array, label_lengths: jax.Array,
                 prune_range: int) -> jax.Array:
    """Band starts s [B, T] (int32) of S = `prune_range` label positions per frame, from the node
    occupancy [B, T, U+1]: s_t maximises the occupancy in [s_t, s_t + S), then is made a path-holding
    band with, for every valid frame t < T_b,

        0 <= s_t <= max(U_b + 1 - S, 0)      (the band inside [0, U_b])
        s_0 = 0 and s_t <= t (S - 1)          (the start node is in the first band; reachable)
        s_t <= s_{t+1} <= s_t + S - 1         (monotone, consecutive bands overlap)
        s_{T_b - 1} = max(U_b + 1 - S, 0)    (the final node is in the last band)

    whenever U_b <= T_b (S - 1) (else no band sequence holds a path). In that order: the clamp, the
    last band, a running maximum, the backward overlap s_t = max(s_t, s_{t+1} - (S - 1)), and the
    forward bound s_t = min(s_t, t (S - 1)), each keeping the ones before.
    """
    batch, num_frames, num_nodes = occupancy.shape
    windows = jnp.cumsum(jnp.pad(occupancy, ((0, 0), (0, 0), (1, prune_range))), axis=2)
    window_sums = windows[:, :, prune_range:prune_range + num_nodes] - windows[:, :, :num_nodes]
    starts = jnp.argmax(window_sums, axis=2).astype(jnp.int32)  # [B, T]
    highest = jnp.maximum(label_lengths + 1 - prune_range, 0).astype(jnp.int32)[:, None]
    frames = jnp.arange(num_frames)[None, :]
    starts = jnp.where(frames >= logit_lengths[:, None] - 1, highest, jnp.clip(starts, 0, highest))
    starts = jax.lax.cummax(starts, axis=1)
    step = prune_range - 1
    starts = frames * step + jax.lax.cummax(starts - frames * step, axis=1, reverse=True)
    return jnp.minimum(starts, frames * step).astype(jnp.int32)


def _simple_transition_log_probs(simple_am: jax.Array, simple_lm: jax.Array, labels: jax.Array,
                                 blank_id: int) -> tuple[jax.Array, jax.Array]:
    """Blank [B, T, U+1] and emit [B, T, U] log-probs of the trivial joiner am[t] + lm[u] (labels
    [B, U], padding already blank); log_softmax over V is never formed."""
    am_max = jnp.max(simple_am, axis=-1, keepdims=True)  # [B, T, 1]
    lm_max = jnp.max(simple_lm, axis=-1, keepdims=True)  # [B, U+1, 1]
    products = jnp.einsum("btv,buv->btu", jnp.exp(simple_am - am_max), jnp.exp(simple_lm - lm_max))
    log_norm = (jnp.log(products + jnp.finfo(products.dtype).tiny)
                + am_max + lm_max.swapaxes(1, 2))  # [B, T, U+1]
    blank = simple_am[..., blank_id][:, :, None] + simple_lm[..., blank_id][:, None, :] - log_norm
    am_label = jnp.take_along_axis(simple_am, jnp.broadcast_to(labels[:, None, :], (*simple_am.shape[:2],
                                                                                     labels.shape[1])), axis=2)
    lm_label = jnp.take_along_axis(simple_lm[:, :-1], labels[..., None], axis=2)[..., 0]  # [B, U]
    return blank, am_label + lm_label[:, None, :] - log_norm[:, :, :-1]


def _posteriors(blank_lp: jax.Array, emit_lp: jax.Array, logit_lengths: jax.Array,
                label_lengths: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """(NLL [B], transition posteriors (blank [B, T, U+1], emit [B, T, U])): the posterior of a
    transition is -d NLL / d its log-prob, got from one forward and one backward scan."""
    nll, pullback = jax.vjp(lambda b, e: _alignment_nll(b, e, logit_lengths, label_lengths), blank_lp,
                            emit_lp)
    blank_grad, emit_grad = pullback(jnp.ones_like(nll))
    return nll, (-blank_grad, -emit_grad)


@jax.custom_vjp
def _nll_and_posteriors(blank_lp: jax.Array, emit_lp: jax.Array, logit_lengths: jax.Array,
                        label_lengths: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """`_posteriors`, differentiable in the NLL only: its backward is g_b times minus the posteriors
    the forward already holds (no second scan), and the posteriors are constants (their cotangent
    is dropped), as the band choice that reads them is."""
    return _posteriors(blank_lp, emit_lp, logit_lengths, label_lengths)


def _nll_and_posteriors_fwd(blank_lp, emit_lp, logit_lengths, label_lengths):
    nll, posteriors = _posteriors(blank_lp, emit_lp, logit_lengths, label_lengths)
    return (nll, posteriors), posteriors


def _nll_and_posteriors_bwd(posteriors, cotangents):
    nll_cotangent = cotangents[0][:, None, None]  # [B, 1, 1]
    blank_posterior, emit_posterior = posteriors
    return -nll_cotangent * blank_posterior, -nll_cotangent * emit_posterior, None, None


_nll_and_posteriors.defvjp(_nll_and_posteriors_fwd, _nll_and_posteriors_bwd)


def _unband(band_blank: jax.Array, band_emit: jax.Array, starts: jax.Array, num_nodes: int
            ) -> tuple[jax.Array, jax.Array]:
    """Band log-probs (blank [B, T, S], emit [B, T, S-1] at u = s_t + k) -> lattice blank [B, T, U+1]
    and emit [B, T, U], `_LOG_ZERO` outside the band (emit also at the band's last position)."""
    width = band_blank.shape[-1]
    offset = jnp.arange(num_nodes)[None, None, :] - starts[..., None]  # u - s_t  [B, T, U+1]
    blank = jnp.where((offset >= 0) & (offset < width),
                      jnp.take_along_axis(band_blank, jnp.clip(offset, 0, width - 1), axis=2), _LOG_ZERO)
    offset = offset[..., :-1]
    emit = jnp.where((offset >= 0) & (offset < width - 1),
                     jnp.take_along_axis(band_emit, jnp.clip(offset, 0, width - 2), axis=2), _LOG_ZERO)
    return blank, emit


@functools.partial(jax.jit, static_argnames="blank_id")
def _rnnt_nll_from_logits(
    logits: jax.Array,
    labels: jax.Array,
    logit_lengths: jax.Array,
    label_lengths: jax.Array,
    blank_id: int,
) -> jax.Array:
    blank_lp, emit_lp = _transition_log_probs(logits, labels, label_lengths, blank_id)
    return _alignment_nll(blank_lp, emit_lp, logit_lengths, label_lengths)


def _chunked_transition_log_probs(
    encoder_out: jax.Array,
    predictor_out: jax.Array,
    joint_fn: JointFn,
    labels: jax.Array,
    label_lengths: jax.Array,
    blank_id: int,
    chunk_size: int,
) -> tuple[jax.Array, jax.Array]:
    """Blank [B, T, U+1] and emit [B, T, U] log-probs, one checkpointed joint chunk at a time;
    when one chunk covers every frame, the whole lattice at once without recomputation."""
    batch, num_frames, enc_dim = encoder_out.shape
    if chunk_size >= num_frames:
        return _transition_log_probs(joint_fn(encoder_out, predictor_out), labels, label_lengths, blank_id)
    num_chunks = -(-num_frames // chunk_size)
    padded = jnp.pad(encoder_out, ((0, 0), (0, num_chunks * chunk_size - num_frames), (0, 0)))
    chunks = padded.reshape(batch, num_chunks, chunk_size, enc_dim).swapaxes(0, 1)

    # prevent_cse=False is safe (and faster) under a loop, which already keeps the recompute.
    @functools.partial(jax.checkpoint, prevent_cse=False)
    def chunk_log_probs(enc_chunk: jax.Array) -> tuple[jax.Array, jax.Array]:
        return _transition_log_probs(
            joint_fn(enc_chunk, predictor_out), labels, label_lengths, blank_id
        )

    blank_lp, emit_lp = jax.lax.map(chunk_log_probs, chunks)  # [C, B, Tc, U+1], [C, B, Tc, U]

    def unchunk(x: jax.Array) -> jax.Array:
        x = x.swapaxes(0, 1)
        return x.reshape(batch, num_chunks * chunk_size, x.shape[-1])[:, :num_frames]

    return unchunk(blank_lp), unchunk(emit_lp)


def _transition_log_probs(
    logits: jax.Array, labels: jax.Array, label_lengths: jax.Array, blank_id: int
) -> tuple[jax.Array, jax.Array]:
    """logits [B, T, U+1, V] -> blank(t, u) [B, T, U+1] and emit(t, u) = log P(y_{u+1}) [B, T, U].

    Padding labels (u >= label_lengths) are replaced by blank so that any id gathers safely.
    """
    is_valid = jnp.arange(labels.shape[1])[None, :] < label_lengths[:, None]
    safe_labels = jnp.where(is_valid, labels, blank_id).astype(jnp.int32)
    return _selected_log_probs(logits, safe_labels[:, None, :], blank_id)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _selected_log_probs(
    logits: jax.Array, labels: jax.Array, blank_id: int
) -> tuple[jax.Array, jax.Array]:
    """log_softmax(logits)[..., blank_id] [B, T, N] and at labels[b, t, n] for n < N - 1
    [B, T, N - 1] (labels [B, T, N - 1], or [B, 1, N - 1] for the same labels at every frame).

    Each is a logit minus logsumexp over V, in float32 (float64 for float64 logits); log_softmax
    over V is never formed. The custom VJP writes the logits' cotangent in one fused pass,

        d/dlogits[v] = g_blank [v = blank] + g_emit [v = y_{u+1}] - (g_blank + g_emit) softmax[v],

    instead of autodiff's scatter plus a stored softmax, saving a [B, T, U+1, V] temporary.
    """
    return _selected_log_probs_fwd(logits, labels, blank_id)[0]


def _selected_log_probs_fwd(
    logits: jax.Array, labels: jax.Array, blank_id: int
) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array, jax.Array]]:
    values = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    num_labels = labels.shape[-1]
    log_norm = jax.nn.logsumexp(values, axis=-1)  # [B, T, N]
    blank_lp = values[..., blank_id] - log_norm
    label_values = jnp.take_along_axis(values[:, :, :num_labels, :], labels[..., None], axis=-1)[..., 0]
    emit_lp = label_values - log_norm[:, :, :num_labels]
    return (blank_lp, emit_lp), (logits, labels, log_norm)


def _selected_log_probs_bwd(
    blank_id: int,
    residuals: tuple[jax.Array, jax.Array, jax.Array],
    cotangents: tuple[jax.Array, jax.Array],
) -> tuple[jax.Array, None]:
    logits, labels, log_norm = residuals
    blank_grad, emit_grad = cotangents  # [B, T, N], [B, T, N-1]
    emit_grad = jnp.pad(emit_grad, ((0, 0), (0, 0), (0, 1)))  # the last node emits nothing
    labels = jnp.pad(labels, ((0, 0), (0, 0), (0, 1)), constant_values=blank_id)
    vocab_ids = jnp.arange(logits.shape[-1])
    softmax = jnp.exp(logits.astype(log_norm.dtype) - log_norm[..., None])
    logits_grad = (
        jnp.where(vocab_ids == blank_id, blank_grad[..., None], 0.0)
        + jnp.where(vocab_ids == labels[..., None], emit_grad[..., None], 0.0)
        - (blank_grad + emit_grad)[..., None] * softmax
    )
    return logits_grad.astype(logits.dtype), None


_selected_log_probs.defvjp(_selected_log_probs_fwd, _selected_log_probs_bwd)


def _alignment_nll(
    blank_lp: jax.Array,
    emit_lp: jax.Array,
    logit_lengths: jax.Array,
    label_lengths: jax.Array,
) -> jax.Array:
    """-(alpha(T_b-1, U_b) + blank(T_b-1, U_b)) by a scan over anti-diagonals n = t + u.

    blank_lp: [B, T, U+1], emit_lp: [B, T, U]. Nodes outside (t < T_b, u <= U_b) never feed the
    nodes inside, so padding cannot change the result and receives zero gradient.
    """
    batch, num_frames, num_nodes = blank_lp.shape
    num_diagonals = num_frames + num_nodes - 1
    # Skewed so that [..., u, n] holds the value at node (n - u, u); 0 where n - u is out of range.
    blank_diag = _skew(blank_lp)  # [B, U+1, T+U]
    emit_diag = _skew(emit_lp)  # [B, U, T+U-1]
    final_diag = logit_lengths - 1 + label_lengths  # [B] the diagonal holding (T_b - 1, U_b)
    alpha0 = jnp.full((batch, num_nodes), _LOG_ZERO, blank_lp.dtype).at[:, 0].set(0.0)
    final0 = jnp.where(final_diag == 0, alpha0[:, 0], 0.0)
    gather_final = jax.nn.one_hot(label_lengths, num_nodes, dtype=jnp.bool_)  # [B, U+1]

    def step(carry, inputs):
        alpha, final = carry
        n, blank_prev, emit_prev = inputs  # diagonal n; log-probs on diagonal n - 1
        from_below = alpha + blank_prev  # (t-1, u) -> (t, u)
        from_left = alpha[:, :-1] + emit_prev  # (t, u-1) -> (t, u)
        from_left = jnp.concatenate([jnp.full((batch, 1), _LOG_ZERO, alpha.dtype), from_left], 1)
        alpha = jnp.logaddexp(from_below, from_left)
        at_final = jnp.sum(jnp.where(gather_final, alpha, 0.0), axis=1)
        final = jnp.where(final_diag == n, at_final, final)
        return (alpha, final), None

    inputs = (
        jnp.arange(1, num_diagonals),
        jnp.moveaxis(blank_diag[:, :, : num_diagonals - 1], 2, 0),
        jnp.moveaxis(emit_diag[:, :, : num_diagonals - 1], 2, 0),
    )
    (_, final_alpha), _ = jax.lax.scan(step, (alpha0, final0), inputs)
    batch_index = jnp.arange(batch)
    final_blank = blank_lp[batch_index, logit_lengths - 1, label_lengths]
    return -(final_alpha + final_blank)


def _skew(x: jax.Array) -> jax.Array:
    """x [B, T, K] -> [B, K, T+K-1] with out[b, k, n] = x[b, n-k, k] (0 where n-k is not in [0, T)).

    Pad-and-reshape: rows of length T + K laid end to end and re-read with length T + K - 1 shift
    row k right by k.
    """
    batch, num_frames, width = x.shape
    rows = jnp.pad(x.swapaxes(1, 2), ((0, 0), (0, 0), (0, width)))  # [B, K, T+K]
    flat = rows.reshape(batch, width * (num_frames + width))
    return flat[:, : width * (num_frames + width - 1)].reshape(batch, width, num_frames + width - 1)


def _check_labels_and_lengths(
    labels: jax.Array,
    logit_lengths: jax.Array,
    label_lengths: jax.Array,
    batch: int,
    num_frames: int,
    num_labels: int,
    vocab: int,
    blank_id: int,
    nodes_name: str,
) -> None:
    """Raise ValueError naming the culprit; value checks only for concrete (untraced) inputs."""
    if not 0 <= blank_id < vocab:
        raise ValueError(f"blank_id must be in [0, V={vocab}), got {blank_id}")
    expected = {
        "labels": (batch, num_labels),
        "logit_lengths": (batch,),
        "label_lengths": (batch,),
    }
    arrays = {"labels": labels, "logit_lengths": logit_lengths, "label_lengths": label_lengths}
    for name, array in arrays.items():
        shape = tuple(array.shape)
        if shape != expected[name]:
            raise ValueError(
                f"{name} must have shape {expected[name]} (B={batch}, U={num_labels} from "
                f"{nodes_name} with U+1={num_labels + 1} nodes), got {shape}"
            )
        if not jnp.issubdtype(array.dtype, jnp.integer):
            raise ValueError(f"{name} must be integer, got dtype {array.dtype}")
    if any(isinstance(a, jax.core.Tracer) for a in arrays.values()):
        return
    labels, logit_lengths, label_lengths = (np.asarray(a) for a in arrays.values())
    if np.any((logit_lengths < 1) | (logit_lengths > num_frames)):
        raise ValueError(f"logit_lengths must be in [1, T={num_frames}], got {logit_lengths}")
    if np.any((label_lengths < 0) | (label_lengths > num_labels)):
        raise ValueError(f"label_lengths must be in [0, U={num_labels}], got {label_lengths}")
    valid = labels[np.arange(num_labels)[None, :] < label_lengths[:, None]]
    bad = valid[(valid < 0) | (valid >= vocab) | (valid == blank_id)]
    if bad.size:
        raise ValueError(
            f"labels must be ids in [0, V={vocab}) other than blank_id={blank_id}, "
            f"got {sorted(set(bad.tolist()))}"
        )
