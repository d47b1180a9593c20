"""Transducer decoding: batched greedy search (jit) and modified beam search, for any `Transducer`.

Both decoders walk the encoder frames of each utterance and, at frame t, emit at most
`max_symbols_per_frame` non-blank tokens before moving to frame t + 1 (emitting blank also moves on).

- Greedy: at every step take `argmax_k logits(t, u)`; blank ends the frame. One `lax.scan` over
  frames for the whole batch, of `greedy_frame` (which `models.streaming` runs chunk by chunk).
- Modified beam search: keep the `beam_width` best hypotheses (token sequence, log-probability) at
  every step. In each of up to `max_symbols_per_frame` rounds per frame, every hypothesis still
  emitting in this frame offers its blank extension (done with the frame) and its non-blank
  extensions (may emit again); these compete with the hypotheses already done with the frame, and
  the best `beam_width` survive. Hypotheses with equal sequences and status are merged
  (`logaddexp`). After the last round, the ones still emitting move on without a blank. With
  `beam_width = 1` this is greedy search exactly. With an `LMFusion` (shallow fusion of a token
  language model such as `models.ngram.NgramLM`), a non-blank token k after sequence y scores
  log P(k | t, y) + w log P_LM(k | y) + b (weight w, per-token bonus b) in place of
  log P(k | t, y); blank keeps its transducer score, so a hypothesis's score is its transducer
  log-probability plus w times its language-model log-probability plus b per token.

Both return token ids; pass a `tokenizer` (any object with `decode(ids) -> str`) to get text too.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from models.transducer_parts import PredictorState, Transducer


class Tokenizer(Protocol):
    def decode(self, ids: list[int]) -> str: ...


class DecodeResult(NamedTuple):
    """`token_ids[b]`: the hypothesis for utterance b; `texts[b]` its text (None: no tokenizer)."""

    token_ids: list[list[int]]
    texts: list[str] | None


def _result(token_ids: list[list[int]], tokenizer: Tokenizer | None) -> DecodeResult:
    texts = None if tokenizer is None else [tokenizer.decode(ids) for ids in token_ids]
    return DecodeResult(token_ids, texts)


def _check_max_symbols(max_symbols_per_frame: int) -> None:
    if max_symbols_per_frame < 1:
        raise ValueError(f"max_symbols_per_frame must be >= 1, got {max_symbols_per_frame}")


def run_decoder(model: Transducer, fn: Callable[..., Any], variables, *args) -> Any:
    """`fn(model, variables, *args)`, or, for a model that runs decoders itself (a
    `gq_jax.runtime.ResidentModel`, whose weights are expanded inside the call), `model.run(fn,
    variables, *args)`: the whole loop traced once, so its weights are expanded before the loop,
    not on every iteration."""
    run = getattr(type(model), "run", None)
    return run(model, fn, variables, *args) if run is not None else fn(model, variables, *args)


@functools.partial(jax.jit, static_argnames=("model",))
def _encode(model: Transducer, variables, features: jax.Array, feature_lengths: jax.Array):
    return model.apply(variables, features, feature_lengths, method=model.encode)


@functools.partial(jax.jit, static_argnames=("model",))
def _predict(model: Transducer, variables, tokens: jax.Array, state: PredictorState | None):
    """tokens `[N]` -> (pred_proj `[N, J]`, state) after one prediction-network step."""
    pred_proj, state = model.apply(variables, tokens[:, None], state, method=model.predict)
    return pred_proj[:, 0], state


class GreedyState(NamedTuple):
    """Greedy search after some frames: `tokens [B, capacity]` emitted (-1 after the end),
    `num_tokens [B]`, and the prediction after the last token (blank at the start): `pred_proj
    [B, J]` in joint space and the prediction network's `predictor` state."""

    tokens: jax.Array
    num_tokens: jax.Array
    pred_proj: jax.Array
    predictor: PredictorState


def greedy_start(model: Transducer, variables, batch_size: int, capacity: int) -> GreedyState:
    """The search before the first frame: no tokens (room for `capacity`), the prediction of blank."""
    pred_proj, state = _predict(model, variables, jnp.full((batch_size,), model.blank_id, jnp.int32), None)
    return GreedyState(jnp.full((batch_size, capacity), -1, jnp.int32), jnp.zeros((batch_size,), jnp.int32),
                       pred_proj, state)


def greedy_frame(model: Transducer, variables, search: GreedyState, enc_t: jax.Array, active: jax.Array,
                 max_symbols_per_frame: int) -> GreedyState:
    """One encoder frame `enc_t [B, J]` of greedy search: in each of `max_symbols_per_frame` rounds,
    the rows still emitting take `argmax_k logits(t, u)`; blank (or `active [B]` False) ends the
    row's frame, another token is appended (dropped past the capacity) and advances its prediction."""
    blank = model.blank_id
    rows = jnp.arange(enc_t.shape[0])

    def symbol_step(carry, _):
        (tokens, num_tokens, pred_proj, state), emitting = carry
        logits = model.apply(variables, enc_t, pred_proj, method=model.joint_logits)
        best = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        emit = emitting & (best != blank)
        tokens = tokens.at[rows, num_tokens].set(
            jnp.where(emit, best, tokens[rows, num_tokens]), mode="drop")
        new_pred, new_state = _predict(model, variables, best, state)
        keep = lambda new, old: jnp.where(emit.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)
        return (GreedyState(tokens, num_tokens + emit, keep(new_pred, pred_proj),
                            jax.tree_util.tree_map(keep, new_state, state)), emit), None

    (search, _), _ = jax.lax.scan(symbol_step, (search, active), None, length=max_symbols_per_frame)
    return search


@functools.partial(jax.jit, static_argnames=("model", "max_symbols_per_frame"))
def greedy_search(
    model: Transducer,
    variables,
    features: jax.Array,
    feature_lengths: jax.Array,
    max_symbols_per_frame: int = 3,
) -> tuple[jax.Array, jax.Array]:
    """Batched greedy decoding: `greedy_frame` over every encoder frame.

    Args:
      features: `[B, T, F]`; feature_lengths: `[B]`.
    Returns:
      `tokens [B, T' * max_symbols_per_frame]` int32 (-1 after the end) and `num_tokens [B]`.
    """
    return run_decoder(model, functools.partial(_greedy_search, max_symbols_per_frame=max_symbols_per_frame),
                       variables, features, feature_lengths)


def _greedy_search(model: Transducer, variables, features: jax.Array, feature_lengths: jax.Array,
                   max_symbols_per_frame: int) -> tuple[jax.Array, jax.Array]:
    enc_proj, enc_lengths = _encode(model, variables, features, feature_lengths)
    batch, num_frames, _ = enc_proj.shape
    start = greedy_start(model, variables, batch, num_frames * max_symbols_per_frame)

    def frame_step(search, t):
        return greedy_frame(model, variables, search, enc_proj[:, t], t < enc_lengths, max_symbols_per_frame), None

    search, _ = jax.lax.scan(frame_step, start, jnp.arange(num_frames))
    return search.tokens, search.num_tokens


def greedy_decode(
    model: Transducer,
    variables,
    features: jax.Array,
    feature_lengths: jax.Array,
    *,
    max_symbols_per_frame: int = 3,
    tokenizer: Tokenizer | None = None,
) -> DecodeResult:
    """`greedy_search` as lists of token ids (and texts through `tokenizer`)."""
    _check_max_symbols(max_symbols_per_frame)
    tokens, num_tokens = jax.device_get(
        greedy_search(model, variables, features, feature_lengths, max_symbols_per_frame))
    return _result([row[:n].tolist() for row, n in zip(tokens, num_tokens)], tokenizer)


@functools.partial(jax.jit, static_argnames=("model",))
def _ctc_best_path(model: Transducer, variables, features: jax.Array, feature_lengths: jax.Array):
    logits, lengths = model.apply(variables, features, feature_lengths, method=model.ctc_logits)
    return jnp.argmax(logits, axis=-1), lengths


def ctc_greedy_decode(model: Transducer, variables, features: jax.Array, feature_lengths: jax.Array, *,
                      tokenizer: Tokenizer | None = None) -> DecodeResult:
    """Best-path CTC decoding with the model's CTC head (`model.ctc_weight` > 0): the arg-max
    label of every valid frame, repeats merged, then blanks removed."""
    best, lengths = jax.device_get(_ctc_best_path(model, variables, features, feature_lengths))
    token_ids = []
    for row, n in zip(best, lengths):
        path = row[:n]
        merged = path[np.r_[True, path[1:] != path[:-1]]] if n else path
        token_ids.append([int(t) for t in merged if t != model.blank_id])
    return _result(token_ids, tokenizer)


class LanguageModel(Protocol):
    def log_probs(self, history: tuple[int, ...]) -> np.ndarray: ...


class LMFusion(NamedTuple):
    """Shallow fusion in beam search (see the module docstring): `lm.log_probs(sequence)` gives the
    `[V]` natural-log next-token distribution, `weight` w scales it, `bonus` b is added per token."""

    lm: LanguageModel
    weight: float
    bonus: float = 0.0


def fused_log_probs(log_probs: np.ndarray, sequences: list[tuple[int, ...]], fusion: LMFusion | None,
                    blank: int) -> np.ndarray:
    """Transducer log-probabilities `[N, V]` of the hypotheses `sequences` with the language model's
    w log P_LM(k | sequence) + b added to every non-blank token k (the input itself without `fusion`)."""
    if fusion is None:
        return log_probs
    lm_rows = np.stack([fusion.lm.log_probs(sequence) for sequence in sequences])
    fused = log_probs + fusion.weight * np.where(np.isneginf(lm_rows), -1e30, lm_rows) + fusion.bonus
    fused[:, blank] = log_probs[:, blank]
    return fused


class _Hypothesis(NamedTuple):
    log_prob: float
    pred_proj: np.ndarray  # [J] prediction after the last token (joint space)
    state: PredictorState  # leaves [H]


@functools.partial(jax.jit, static_argnames=("model",))
def _joint_log_probs(model: Transducer, variables, enc_rows: jax.Array, pred_rows: jax.Array):
    """enc_rows `[N, J]`, pred_rows `[N, J]` (row n pairs a frame with a hypothesis) -> `[N, V]`."""
    return jax.nn.log_softmax(model.apply(variables, enc_rows, pred_rows, method=model.joint_logits), axis=-1)


def _padded(rows: list) -> np.ndarray:
    """Stack `rows` and repeat the last one up to the next power of two (few compiled shapes)."""
    width = 1 << (len(rows) - 1).bit_length()
    return np.stack(rows + [rows[-1]] * (width - len(rows)))


def _stack_states(states: list[PredictorState]) -> PredictorState:
    return jax.tree_util.tree_map(lambda *leaves: _padded(list(leaves)), *states)


def _add_merged(pool: dict[tuple[int, ...], _Hypothesis], sequence: tuple[int, ...],
                hypothesis: _Hypothesis) -> None:
    """Insert into `pool`, summing probabilities with an existing hypothesis of equal sequence."""
    if sequence in pool:
        hypothesis = hypothesis._replace(
            log_prob=float(np.logaddexp(pool[sequence].log_prob, hypothesis.log_prob)))
    pool[sequence] = hypothesis


class _Extension(NamedTuple):
    """A non-blank extension chosen in a round: `parent` emits `token`, giving `sequence`."""

    sequence: tuple[int, ...]
    log_prob: float
    parent: _Hypothesis
    token: int


def _select(done: dict[tuple[int, ...], _Hypothesis], emitting: dict[tuple[int, ...], _Hypothesis],
            log_probs: np.ndarray, beam_width: int, blank: int
            ) -> tuple[dict[tuple[int, ...], _Hypothesis], list[_Extension]]:
    """One round of one utterance: the `beam_width` best of the done hypotheses and the blank and
    top non-blank extensions of the `emitting` ones (`log_probs[i]`: `[V]` of the i-th), merged by
    (sequence, emitted). Returns the next done pool and the chosen non-blank extensions."""
    hyps = list(emitting.values())
    # Candidates: (log_prob, sequence, parent index or -1 for "done", token or None).
    candidates = [(h.log_prob, s, -1, None) for s, h in done.items()]
    for i, (sequence, hyp) in enumerate(emitting.items()):
        candidates.append((hyp.log_prob + float(log_probs[i, blank]), sequence, i, None))
        tokens = np.argsort(-log_probs[i])[:beam_width + 1]
        candidates += [(hyp.log_prob + float(log_probs[i, k]), sequence + (int(k),), i, int(k))
                       for k in tokens if k != blank]
    merged: dict[tuple[tuple[int, ...], bool], tuple[float, int, int | None]] = {}
    for log_prob, sequence, parent, token in candidates:
        key = (sequence, token is not None)  # equal keys have equal predictor states
        if key in merged:
            merged[key] = (float(np.logaddexp(merged[key][0], log_prob)),) + merged[key][1:]
        else:
            merged[key] = (log_prob, parent, token)
    best = sorted(merged.items(), key=lambda item: -item[1][0])[:beam_width]
    next_done: dict[tuple[int, ...], _Hypothesis] = {}
    extend = []
    for (sequence, emitted), (log_prob, parent, token) in best:
        if emitted:
            extend.append(_Extension(sequence, log_prob, hyps[parent], token))
        else:
            source = done[sequence] if parent < 0 else hyps[parent]
            next_done[sequence] = source._replace(log_prob=log_prob)
    return next_done, extend


def _beam_search_batch(model: Transducer, variables, enc_proj: np.ndarray, enc_lengths: np.ndarray,
                       beam_width: int, max_symbols_per_frame: int, fusion: LMFusion | None = None
                       ) -> list[list[int]]:
    """Modified beam search of every utterance of a batch (`enc_proj [B, T, J]`, `enc_lengths [B]`).

    The utterances advance in lockstep, frame by frame and round by round, so each round is one
    joint call and one prediction call (rows padded to a power of two) for the whole batch; the
    choice of hypotheses (`_select`) stays per utterance, so each result is that utterance's search.
    """
    blank = model.blank_id
    start_pred, start_state = jax.device_get(
        _predict(model, variables, jnp.full((1,), blank, jnp.int32), None))
    start = _Hypothesis(0.0, start_pred[0], jax.tree_util.tree_map(lambda x: x[0], start_state))
    done: list[dict[tuple[int, ...], _Hypothesis]] = [{(): start} for _ in enc_lengths]
    for t in range(int(max(enc_lengths, default=0))):
        active = [b for b, n in enumerate(enc_lengths) if t < n]
        emitting = {b: done[b] for b in active}
        for b in active:
            done[b] = {}
        for _ in range(max_symbols_per_frame):
            rows = [(b, sequence, h) for b in active for sequence, h in emitting[b].items()]
            if not rows:
                break
            log_probs = fused_log_probs(np.asarray(_joint_log_probs(
                model, variables, _padded([enc_proj[b, t] for b, _, _ in rows]),
                _padded([h.pred_proj for _, _, h in rows])))[:len(rows)],
                [sequence for _, sequence, _ in rows], fusion, blank)
            extensions, offset = [], 0
            for b in active:
                count = len(emitting[b])
                if count:
                    done[b], extend = _select(done[b], emitting[b], log_probs[offset:offset + count],
                                              beam_width, blank)
                    extensions += [(b, e) for e in extend]
                    offset += count
            emitting = {b: {} for b in active}
            if not extensions:
                break
            pred_proj, state = jax.device_get(_predict(
                model, variables, jnp.asarray(_padded([e.token for _, e in extensions])),
                _stack_states([e.parent.state for _, e in extensions])))
            for j, (b, e) in enumerate(extensions):
                emitting[b][e.sequence] = _Hypothesis(
                    e.log_prob, pred_proj[j], jax.tree_util.tree_map(lambda x: x[j], state))
        for b in active:  # symbol cap reached: move on without a blank
            for sequence, hyp in emitting[b].items():
                _add_merged(done[b], sequence, hyp)
    return [list(max(pool.items(), key=lambda item: item[1].log_prob)[0]) for pool in done]


def beam_search(
    model: Transducer,
    variables,
    features: jax.Array,
    feature_lengths: jax.Array,
    *,
    beam_width: int = 4,
    max_symbols_per_frame: int = 3,
    tokenizer: Tokenizer | None = None,
    fusion: LMFusion | None = None,
) -> DecodeResult:
    """Modified beam search (see the module docstring), with `fusion`'s language model if given:
    the encoder runs batched, the search on the host with jit-compiled joint and prediction steps
    shared by all utterances (`_beam_search_batch`)."""
    if beam_width < 1:
        raise ValueError(f"beam_width must be >= 1, got {beam_width}")
    _check_max_symbols(max_symbols_per_frame)
    enc_proj, enc_lengths = jax.device_get(_encode(model, variables, features, feature_lengths))
    return _result(_beam_search_batch(model, variables, enc_proj, enc_lengths, beam_width,
                                      max_symbols_per_frame, fusion), tokenizer)
