"""Model-agnostic transducer pieces: LSTM layer, prediction network, joint network, `Transducer`.

A transducer (Graves, 2012) scores every (frame t, label prefix u) pair with

    logits(t, u) = W_out tanh(W_enc enc_t + b_enc + W_pred pred_u) + b_out        [V]

where `enc_t` comes from an acoustic encoder (LSTM in `models.rnnt`, Conformer in
`models.conformer`) and `pred_u` from the prediction network run over <blank>, y_1, ..., y_u (blank
doubles as the start symbol). `Transducer` composes an encoder with these shared parts and gives every
model the same interface:

    loss = model.apply(variables, features, feature_lengths, labels, label_lengths, train=False)
    enc, enc_lengths = model.apply(variables, features, feature_lengths, method=model.encode)
    pred, state = model.apply(variables, tokens, state, method=model.predict)
    logits = model.apply(variables, enc[:, t], pred[:, 0], method=model.joint_logits)

`encode` and `predict` return outputs already projected into the joint space (`[..., joint_dim]`),
so decoders project each encoder frame and each prediction once. Parameter paths are stable, e.g.
`predictor/lstm_0/recurrent_kernel`, `joint/output/kernel`.

With `ctc_weight` w > 0 the model also has a CTC head `ctc/kernel` on the encoder output, and the
training loss is the auxiliary-CTC objective (Graves et al., 2006; used with transducers in
e.g. ESPnet and icefall)

    loss_b = NLL_transducer(y_b | x_b) + w * NLL_CTC(y_b | x_b),

whose CTC term gives the encoder a direct, alignment-free gradient early in training; `ctc_logits`
serves CTC greedy decoding (`models.decoding.ctc_greedy_decode`).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from models import transducer


class LSTMState(NamedTuple):
    """Cell and hidden state of one LSTM layer, `[B, H]` each."""

    cell: jax.Array
    hidden: jax.Array


def _forget_gate_bias_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """Bias `[4H]` in gate order (input, forget, cell, output): 1 for the forget gate, else 0."""
    del key
    hidden = shape[0] // 4
    return jnp.zeros(shape, dtype).at[hidden:2 * hidden].set(1.0)


def _matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`x @ kernel` for `x [..., D]`, `kernel [D, N]` as one `lax.dot_general` -> `[..., N]`."""
    return jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))


class LSTMLayer(nn.Module):
    """One unidirectional LSTM layer, scanned over time; parameters are three separate leaves.

    With gates `z_t = x_t @ input_kernel + h_{t-1} @ recurrent_kernel + bias` split into
    (i, f, g, o): `c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g)`, `h_t = sigmoid(o) tanh(c_t)`.
    Leaves: `input_kernel [D, 4H]`, `recurrent_kernel [H, 4H]`, `bias [4H]`. Both products call
    `lax.dot_general` on the kernels themselves (the same contraction `@` lowers to), so
    interception-based quantizers such as Qwix see them as weight matmuls of this module.
    """

    hidden_size: int

    def initial_state(self, batch_size: int) -> LSTMState:
        zeros = jnp.zeros((batch_size, self.hidden_size), jnp.float32)
        return LSTMState(zeros, zeros)

    @nn.compact
    def __call__(self, inputs: jax.Array, state: LSTMState | None = None) -> tuple[jax.Array, LSTMState]:
        """inputs `[B, T, D]` -> (outputs `[B, T, H]`, final state). `state` defaults to zeros."""
        gates = 4 * self.hidden_size
        input_kernel = self.param(
            "input_kernel", nn.initializers.lecun_normal(), (inputs.shape[-1], gates))
        recurrent_kernel = self.param(
            "recurrent_kernel", nn.initializers.orthogonal(), (self.hidden_size, gates))
        bias = self.param("bias", _forget_gate_bias_init, (gates,))
        state = self.initial_state(inputs.shape[0]) if state is None else state
        input_gates = _matmul(inputs, input_kernel) + bias  # all frames at once: [B, T, 4H]

        def step(carry: LSTMState, frame_gates: jax.Array) -> tuple[LSTMState, jax.Array]:
            z = frame_gates + _matmul(carry.hidden, recurrent_kernel)
            i, f, g, o = jnp.split(z, 4, axis=-1)
            cell = jax.nn.sigmoid(f) * carry.cell + jax.nn.sigmoid(i) * jnp.tanh(g)
            hidden = jax.nn.sigmoid(o) * jnp.tanh(cell)
            return LSTMState(cell, hidden), hidden

        state, outputs = jax.lax.scan(step, state, input_gates.swapaxes(0, 1))
        return outputs.swapaxes(0, 1), state


PredictorState = tuple[LSTMState, ...]


class PredictionNetwork(nn.Module):
    """Label embedding followed by `num_layers` LSTM layers: tokens `[B, U]` -> `[B, U, H]`."""

    vocab_size: int
    embed_dim: int = 32
    hidden_size: int = 32
    num_layers: int = 1

    def setup(self):
        self.embedding = nn.Embed(self.vocab_size, self.embed_dim)
        self.lstm = [LSTMLayer(self.hidden_size, name=f"lstm_{i}") for i in range(self.num_layers)]

    def initial_state(self, batch_size: int) -> PredictorState:
        zeros = jnp.zeros((batch_size, self.hidden_size), jnp.float32)
        return tuple(LSTMState(zeros, zeros) for _ in range(self.num_layers))

    def __call__(self, tokens: jax.Array, state: PredictorState | None = None
                 ) -> tuple[jax.Array, PredictorState]:
        """tokens `[B, U]` int -> (outputs `[B, U, hidden_size]`, state after the last token)."""
        state = self.initial_state(tokens.shape[0]) if state is None else state
        x = self.embedding(tokens)
        new_state = []
        for layer, layer_state in zip(self.lstm, state):
            x, layer_state = layer(x, layer_state)
            new_state.append(layer_state)
        return x, tuple(new_state)


class _Affine(nn.Module):
    """`x @ kernel + bias` with its arrays readable as attributes (for pure closures)."""

    in_features: int
    out_features: int

    def setup(self):
        self.kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (self.in_features, self.out_features))
        self.bias = self.param("bias", nn.initializers.zeros, (self.out_features,))


class JointNetwork(nn.Module):
    """`logits = output(tanh(encoder_proj(enc) + predictor_proj(pred)))`.

    Leaves: `encoder_proj/{kernel,bias}`, `predictor_proj/kernel`, `output/{kernel,bias}`.
    """

    vocab_size: int
    joint_dim: int = 32

    def setup(self):
        self.encoder_proj = nn.Dense(self.joint_dim)
        self.predictor_proj = nn.Dense(self.joint_dim, use_bias=False)
        self.output = _Affine(self.joint_dim, self.vocab_size)

    def project_encoder(self, encoder_out: jax.Array) -> jax.Array:
        """`[..., De] -> [..., joint_dim]`."""
        return self.encoder_proj(encoder_out)

    def project_predictor(self, predictor_out: jax.Array) -> jax.Array:
        """`[..., Dp] -> [..., joint_dim]`."""
        return self.predictor_proj(predictor_out)

    def logits_fn(self) -> Callable[[jax.Array, jax.Array], jax.Array]:
        """Pure `(enc_proj, pred_proj) -> logits` over broadcastable `[..., joint_dim]` inputs.

        It closes over arrays only (no module), so it may run inside `jax.checkpoint`/`lax.map`.
        """
        kernel, bias = self.output.kernel, self.output.bias
        return lambda enc_proj, pred_proj: jnp.tanh(enc_proj + pred_proj) @ kernel + bias

    def __call__(self, enc_proj: jax.Array, pred_proj: jax.Array) -> jax.Array:
        return self.logits_fn()(enc_proj, pred_proj)


class Transducer(nn.Module):
    """An acoustic encoder plus the shared prediction and joint networks.

    `encoder` is any module with `__call__(features [B, T, F], lengths [B], train) ->
    (encoder_out [B, T', De], encoder_lengths [B])`.
    """

    encoder: nn.Module
    predictor: PredictionNetwork
    joint: JointNetwork
    blank_id: int = 0
    loss_chunk_size: int = 32
    ctc_weight: float = 0.0

    def setup(self):
        if self.ctc_weight < 0:
            raise ValueError(f"ctc_weight={self.ctc_weight}; expected >= 0")
        self.ctc = nn.Dense(self.joint.vocab_size) if self.ctc_weight > 0 else None

    @property
    def vocab_size(self) -> int:
        return self.joint.vocab_size

    def encode(self, features: jax.Array, feature_lengths: jax.Array, train: bool = False
               ) -> tuple[jax.Array, jax.Array]:
        """features `[B, T, F]` -> (encoder frames in joint space `[B, T', J]`, lengths `[B]`)."""
        encoder_out, encoder_lengths = self.encoder(features, feature_lengths, train=train)
        return self.joint.project_encoder(encoder_out), encoder_lengths

    def ctc_logits(self, features: jax.Array, feature_lengths: jax.Array, train: bool = False
                   ) -> tuple[jax.Array, jax.Array]:
        """features `[B, T, F]` -> (CTC logits `[B, T', V]`, lengths `[B]`); needs `ctc_weight` > 0."""
        if self.ctc is None:
            raise ValueError("this model has no CTC head: train it with model.ctc_weight > 0")
        encoder_out, encoder_lengths = self.encoder(features, feature_lengths, train=train)
        return self.ctc(encoder_out), encoder_lengths

    def initial_predictor_state(self, batch_size: int) -> PredictorState:
        return self.predictor.initial_state(batch_size)

    def predict(self, tokens: jax.Array, state: PredictorState | None = None
                ) -> tuple[jax.Array, PredictorState]:
        """tokens `[B, U]` -> (predictions in joint space `[B, U, J]`, state after the last token).

        Output `u` conditions on tokens `0..u` (and on whatever `state` summarises before them).
        """
        predictor_out, state = self.predictor(tokens, state)
        return self.joint.project_predictor(predictor_out), state

    def joint_logits(self, enc_proj: jax.Array, pred_proj: jax.Array) -> jax.Array:
        """Broadcastable `[..., J]` joint-space inputs -> logits `[..., V]`."""
        return self.joint(enc_proj, pred_proj)

    def __call__(self, features: jax.Array, feature_lengths: jax.Array, labels: jax.Array,
                 label_lengths: jax.Array, train: bool = False) -> jax.Array:
        """Per-example transducer negative log-likelihood `[B]` of `labels [B, U]`.

        Uses `models.transducer.rnnt_loss_chunked`, so the `[B, T', U+1, V]` logits are only built
        `loss_chunk_size` frames at a time.
        """
        encoder_out, enc_lengths = self.encoder(features, feature_lengths, train=train)
        return self.loss_from_encoder(encoder_out, enc_lengths, labels, label_lengths)

    def loss_from_encoder(self, encoder_out: jax.Array, enc_lengths: jax.Array, labels: jax.Array,
                          label_lengths: jax.Array) -> jax.Array:
        """`__call__` after the encoder: encoder output `[B, T', De]` -> per-example NLL `[B]`
        (prediction network, joint, transducer loss and the auxiliary CTC term)."""
        enc_proj = self.joint.project_encoder(encoder_out)
        # Padding labels may hold any id (-1, ...); feed blank there so no NaN enters the graph.
        is_label = jnp.arange(labels.shape[1])[None, :] < label_lengths[:, None]
        tokens = jnp.where(is_label, labels, self.blank_id)
        start = jnp.full((labels.shape[0], 1), self.blank_id, tokens.dtype)
        pred_proj, _ = self.predict(jnp.concatenate([start, tokens], axis=1))
        logits_fn = self.joint.logits_fn()
        nll = transducer.rnnt_loss_chunked(
            enc_proj, pred_proj,
            lambda enc, pred: logits_fn(enc[:, :, None, :], pred[:, None, :, :]),
            labels, enc_lengths, label_lengths, blank_id=self.blank_id,
            chunk_size=self.loss_chunk_size)
        if self.ctc is None:
            return nll
        frame_padding = (jnp.arange(encoder_out.shape[1])[None, :] >= enc_lengths[:, None]).astype(jnp.float32)
        ctc = optax.ctc_loss(self.ctc(encoder_out), frame_padding, tokens, 1.0 - is_label.astype(jnp.float32),
                             blank_id=self.blank_id)
        return nll + self.ctc_weight * ctc


def make_transducer(encoder: nn.Module, vocab_size: int, *, predictor_embed_dim: int = 32,
                    predictor_hidden_size: int = 64, predictor_layers: int = 1, joint_dim: int = 64,
                    blank_id: int = 0, loss_chunk_size: int = 32, ctc_weight: float = 0.0) -> Transducer:
    """`encoder` with the prediction and joint networks every model family shares, from their flat
    sizes (the head fields of a `config.model` ConfigDict; `make_rnnt` and `make_conformer` pass
    theirs through)."""
    return Transducer(
        encoder=encoder,
        predictor=PredictionNetwork(vocab_size, predictor_embed_dim, predictor_hidden_size,
                                    predictor_layers),
        joint=JointNetwork(vocab_size, joint_dim),
        blank_id=blank_id,
        loss_chunk_size=loss_chunk_size,
        ctc_weight=ctc_weight,
    )
