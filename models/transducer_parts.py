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

With `prune_range` S > 0 the transducer term is the pruned loss (`models.transducer.rnnt_loss_pruned`,
Kuang et al., 2022): a trivial joiner `simple_am/kernel`, `simple_lm/kernel` (joint space -> V,
training only: decoding never reads them) scores the whole lattice cheaply and picks S label
positions per frame, the joint runs on those only, and

    NLL_transducer = NLL_pruned + `simple_loss_scale` * NLL_simple.
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


def _lstm_cell(gates: jax.Array, cell: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Pre-activations `z [B, 4H]` (i, f, g, o) and `c_{t-1} [B, H]` -> (c_t, h_t, the activations
    `[σ(i), σ(f), tanh(g), σ(o)]` concatenated `[B, 4H]`)."""
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    cell = f * cell + i * g
    return cell, o * jnp.tanh(cell), jnp.concatenate([i, f, g, o], axis=-1)


def _lstm_scan(input_gates: jax.Array, recurrent_kernel: jax.Array, state: LSTMState,
               keep_residuals: bool = False) -> tuple[jax.Array, LSTMState, tuple[jax.Array, ...]]:
    """The recurrence over `input_gates [T, B, 4H]` -> (outputs `[T, B, H]`, final state, and with
    `keep_residuals` (cells `[T, B, H]`, activations `[T, B, 4H]`), else ())."""

    def step(carry: LSTMState, frame_gates: jax.Array) -> tuple[LSTMState, tuple[jax.Array, ...]]:
        cell, hidden, activations = _lstm_cell(frame_gates + _matmul(carry.hidden, recurrent_kernel),
                                               carry.cell)
        return LSTMState(cell, hidden), (hidden, cell, activations) if keep_residuals else (hidden,)

    state, (outputs, *residuals) = jax.lax.scan(step, state, input_gates)
    return outputs, state, tuple(residuals)


@jax.custom_vjp
def lstm_recurrence(input_gates: jax.Array, recurrent_kernel: jax.Array, state: LSTMState
                    ) -> tuple[jax.Array, LSTMState]:
    """`z_t = input_gates[t] + h_{t-1} @ recurrent_kernel`, then the LSTM cell, for t = 0 .. T-1:
    `input_gates [T, B, 4H]` (time-major), `recurrent_kernel [H, 4H]`, `state` (c_{-1}, h_{-1})
    `[B, H]` each -> (h_0 .. h_{T-1} `[T, B, H]`, (c_{T-1}, h_{T-1})).

    Its VJP is a hand-written reverse scan. With upstream gradients `ḡ_t` on h_t and (c̄, h̄) on the
    final state, walking t = T-1 .. 0 with the carry (δh, δc) = (h̄, c̄):

        δh += ḡ_t;  δc += δh · σ(o) (1 − tanh²c_t)
        δz = [δc·tanh g·σ(i)(1−σ(i)),  δc·c_{t-1}·σ(f)(1−σ(f)),  δc·σ(i)(1−tanh²g),
              δh·tanh c_t·σ(o)(1−σ(o))]                          (the gradient on z_t, [B, 4H])
        δh ← δz @ recurrent_kernelᵀ;  δc ← δc · σ(f)

    and after the loop `∂/∂recurrent_kernel = Σ_t h_{t-1}ᵀ δz_t`, one `[H, T·B] @ [T·B, 4H]`
    matmul, where JAX's own transpose of the scan adds an outer product into a carried `[H, 4H]`
    accumulator at every step; `∂/∂input_gates = δz`, `∂/∂state = (δc, δh)` at t = -1.
    """
    outputs, state, _ = _lstm_scan(input_gates, recurrent_kernel, state)
    return outputs, state


def _lstm_recurrence_forward(input_gates, recurrent_kernel, state):
    outputs, final, (cells, activations) = _lstm_scan(input_gates, recurrent_kernel, state,
                                                      keep_residuals=True)
    return (outputs, final), (recurrent_kernel, state, outputs, cells, activations)


def _lstm_recurrence_backward(residuals, cotangents):
    recurrent_kernel, state, outputs, cells, activations = residuals
    output_grads, final_grads = cotangents
    previous_cells = jnp.concatenate([state.cell[None], cells[:-1]], axis=0)
    previous_hidden = jnp.concatenate([state.hidden[None], outputs[:-1]], axis=0)
    kernel_t = recurrent_kernel.T

    def step(carry: LSTMState, frame: tuple[jax.Array, ...]) -> tuple[LSTMState, jax.Array]:
        output_grad, cell, previous_cell, gates = frame
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        d_hidden = carry.hidden + output_grad
        tanh_cell = jnp.tanh(cell)
        d_cell = carry.cell + d_hidden * o * (1.0 - tanh_cell * tanh_cell)
        d_gates = jnp.concatenate([d_cell * g * i * (1.0 - i), d_cell * previous_cell * f * (1.0 - f),
                                   d_cell * i * (1.0 - g * g), d_hidden * tanh_cell * o * (1.0 - o)],
                                  axis=-1)
        return LSTMState(d_cell * f, d_gates @ kernel_t), d_gates

    d_state, d_gates = jax.lax.scan(step, LSTMState(final_grads.cell, final_grads.hidden),
                                    (output_grads, cells, previous_cells, activations), reverse=True)
    d_kernel = jnp.einsum("tbh,tbg->hg", previous_hidden, d_gates)
    return d_gates, d_kernel, d_state


lstm_recurrence.defvjp(_lstm_recurrence_forward, _lstm_recurrence_backward)


class LSTMLayer(nn.Module):
    """One unidirectional LSTM layer, scanned over time; parameters are three separate leaves.

    With gates `z_t = x_t @ input_kernel + h_{t-1} @ recurrent_kernel + bias` split into
    (i, f, g, o): `c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g)`, `h_t = sigmoid(o) tanh(c_t)`.
    Leaves: `input_kernel [D, 4H]`, `recurrent_kernel [H, 4H]`, `bias [4H]`. Both products call
    `lax.dot_general` on the kernels themselves (the same contraction `@` lowers to), so
    interception-based quantizers such as Qwix see them as weight matmuls of this module.

    `fused_backward`: the recurrence runs as `lstm_recurrence`, whose hand-written VJP forms the
    recurrent kernel's gradient with one matmul after the reverse scan. Inside that custom VJP the
    kernel is no longer the module's parameter array, and Qwix then tells a layer's kernels apart
    by shape alone, which fails where the input and recurrent kernels share one (`[H, 4H]` both);
    `with_autodiff_recurrence` sets False (JAX differentiates the plain scan) for such quantizers.
    Both give the same outputs and gradients (to float32 rounding).
    """

    hidden_size: int
    fused_backward: bool = True

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
        input_gates = (_matmul(inputs, input_kernel) + bias).swapaxes(0, 1)  # all frames at once: [T, B, 4H]
        if self.fused_backward:
            outputs, state = lstm_recurrence(input_gates, recurrent_kernel, state)
        else:
            outputs, state, _ = _lstm_scan(input_gates, recurrent_kernel, state)
        return outputs.swapaxes(0, 1), state


PredictorState = tuple[LSTMState, ...]


class PredictionNetwork(nn.Module):
    """Label embedding followed by `num_layers` LSTM layers: tokens `[B, U]` -> `[B, U, H]`."""

    vocab_size: int
    embed_dim: int = 32
    hidden_size: int = 32
    num_layers: int = 1
    fused_backward: bool = True  # LSTMLayer.fused_backward

    def setup(self):
        self.embedding = nn.Embed(self.vocab_size, self.embed_dim)
        self.lstm = [LSTMLayer(self.hidden_size, self.fused_backward, name=f"lstm_{i}")
                     for i in range(self.num_layers)]

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
    prune_range: int = 0
    simple_loss_scale: float = 0.5

    def setup(self):
        if self.ctc_weight < 0:
            raise ValueError(f"ctc_weight={self.ctc_weight}; expected >= 0")
        if self.prune_range == 1 or self.prune_range < 0:
            raise ValueError(f"prune_range={self.prune_range}; expected 0 (the full loss) or >= 2")
        self.ctc = nn.Dense(self.joint.vocab_size) if self.ctc_weight > 0 else None
        if self.prune_range:
            self.simple_am = nn.Dense(self.joint.vocab_size)
            self.simple_lm = nn.Dense(self.joint.vocab_size, use_bias=False)

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
        if self.prune_range:
            pruned, simple = transducer.rnnt_loss_pruned(
                enc_proj, pred_proj, logits_fn, self.simple_am(enc_proj), self.simple_lm(pred_proj), labels,
                enc_lengths, label_lengths, self.prune_range, blank_id=self.blank_id)
            nll = pruned + self.simple_loss_scale * simple
        else:
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
                    blank_id: int = 0, loss_chunk_size: int = 32, ctc_weight: float = 0.0,
                    prune_range: int = 0, simple_loss_scale: float = 0.5) -> Transducer:
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
        prune_range=prune_range,
        simple_loss_scale=simple_loss_scale,
    )


def with_autodiff_recurrence(model: Transducer) -> Transducer:
    """`model` with `fused_backward=False` in its encoder (where it has the field: the LSTM
    encoder) and prediction network: every LSTM product is then a `lax.dot_general` on the layer's
    own kernel, differentiated by JAX, as interception-based quantizers (Qwix) need. Same
    parameters, outputs and gradients."""
    def autodiff(module: nn.Module) -> nn.Module:
        return module.clone(fused_backward=False) if hasattr(module, "fused_backward") else module

    return model.clone(encoder=autodiff(model.encoder), predictor=autodiff(model.predictor))
