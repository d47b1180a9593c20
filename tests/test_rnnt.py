"""RNN-T model: LSTM against a numpy cell, stacking, padding invariance, loss, parameter layout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import transducer
from models.rnnt import LSTMEncoder, make_rnnt, stack_frames
from models.summary import format_parameter_counts, parameter_counts
from models.transducer_parts import LSTMLayer, LSTMState, with_autodiff_recurrence

VOCAB = 7


def _numpy_lstm(x, input_kernel, recurrent_kernel, bias):
    sigmoid = lambda z: 1 / (1 + np.exp(-z))
    batch, frames, _ = x.shape
    hidden = recurrent_kernel.shape[0]
    c, h, outputs = np.zeros((batch, hidden)), np.zeros((batch, hidden)), []
    for t in range(frames):
        i, f, g, o = np.split(x[:, t] @ input_kernel + h @ recurrent_kernel + bias, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, axis=1)


def test_lstm_layer_matches_numpy_cell_equations():
    x = jax.random.normal(jax.random.key(0), (2, 6, 3))
    layer = LSTMLayer(hidden_size=5)
    params = layer.init(jax.random.key(1), x)["params"]
    params = jax.tree_util.tree_map(lambda p: p + 0.3, params)  # non-trivial bias too
    outputs, state = layer.apply({"params": params}, x)
    expected = _numpy_lstm(np.asarray(x, np.float64), *(np.asarray(params[k], np.float64)
                                                         for k in ("input_kernel", "recurrent_kernel", "bias")))
    np.testing.assert_allclose(outputs, expected, atol=1e-5)
    np.testing.assert_allclose(state.hidden, expected[:, -1], atol=1e-5)


def test_lstm_layer_resumed_from_its_state_equals_one_pass():
    x = jax.random.normal(jax.random.key(0), (2, 7, 3))
    layer = LSTMLayer(hidden_size=4)
    variables = layer.init(jax.random.key(1), x)
    whole, _ = layer.apply(variables, x)
    head, state = layer.apply(variables, x[:, :3])
    tail, _ = layer.apply(variables, x[:, 3:], state)
    np.testing.assert_allclose(jnp.concatenate([head, tail], axis=1), whole, atol=1e-6)


def test_fused_lstm_backward_equals_autodiff_of_the_plain_scan():
    """The hand-written VJP of `lstm_recurrence` against JAX's transpose of the same scan: gradients
    on every parameter, the inputs and the initial state, through outputs and the final state."""
    keys = jax.random.split(jax.random.key(0), 5)
    x = jax.random.normal(keys[0], (3, 9, 4))
    state = LSTMState(jax.random.normal(keys[1], (3, 6)), jax.random.normal(keys[2], (3, 6)))
    output_weights = jax.random.normal(keys[3], (3, 9, 6))
    params = LSTMLayer(6).init(keys[4], x)["params"]
    params = jax.tree_util.tree_map(lambda p: 2.0 * p + 0.2, params)  # saturate some gates

    def loss(fused):
        def of(params, x, state):
            outputs, final = LSTMLayer(6, fused_backward=fused).apply({"params": params}, x, state)
            return (outputs * output_weights).sum() + (final.cell ** 2).sum() - final.hidden.sum()
        return of

    fused = jax.jit(jax.value_and_grad(loss(True), argnums=(0, 1, 2)))(params, x, state)
    autodiff = jax.jit(jax.value_and_grad(loss(False), argnums=(0, 1, 2)))(params, x, state)
    np.testing.assert_allclose(fused[0], autodiff[0], rtol=1e-6)
    for got, want in zip(jax.tree_util.tree_leaves(fused[1]), jax.tree_util.tree_leaves(autodiff[1])):
        assert np.abs(want).max() > 1e-3  # each gradient is non-trivial
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_with_autodiff_recurrence_unfuses_every_lstm_and_keeps_the_loss_and_its_gradient(rnnt):
    model, variables, batch = rnnt
    unfused = with_autodiff_recurrence(model)
    assert (model.encoder.fused_backward, model.predictor.fused_backward) == (True, True)
    assert (unfused.encoder.fused_backward, unfused.predictor.fused_backward) == (False, False)
    loss = lambda m: jax.jit(jax.value_and_grad(lambda v: m.apply(v, *batch).mean()))(variables)
    (fused_loss, fused_grads), (plain_loss, plain_grads) = loss(model), loss(unfused)
    np.testing.assert_allclose(fused_loss, plain_loss, rtol=1e-6)
    for got, want in zip(jax.tree_util.tree_leaves(fused_grads), jax.tree_util.tree_leaves(plain_grads)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_stack_frames_concatenates_consecutive_frames_and_ignores_padding():
    x = jnp.arange(2 * 5 * 2, dtype=jnp.float32).reshape(2, 5, 2) + 1
    stacked, lengths = stack_frames(x, jnp.array([5, 3]), 2)
    np.testing.assert_array_equal(lengths, [3, 2])
    np.testing.assert_array_equal(stacked[0, 1], jnp.concatenate([x[0, 2], x[0, 3]]))
    np.testing.assert_array_equal(stacked[0, 2], jnp.concatenate([x[0, 4], jnp.zeros(2)]))
    np.testing.assert_array_equal(stacked[1, 1], jnp.concatenate([x[1, 2], jnp.zeros(2)]))
    with pytest.raises(ValueError, match="factor must be >= 1"):
        stack_frames(x, jnp.array([5, 3]), 0)


def test_encoder_reduces_time_by_stacking_times_reduction():
    encoder = LSTMEncoder(num_layers=3, hidden_size=8, frame_stack=3, time_reduction_layer=1,
                          time_reduction_factor=2)
    x = jax.random.normal(jax.random.key(0), (2, 25, 4))
    lengths = jnp.array([25, 13])
    out, out_lengths = encoder.apply(encoder.init(jax.random.key(1), x, lengths), x, lengths)
    assert out.shape == (2, 5, 8)  # ceil(ceil(25/3)/2)
    np.testing.assert_array_equal(out_lengths, [5, 3])  # ceil(ceil(13/3)/2) = 3


def test_encoder_rejects_a_time_reduction_layer_it_does_not_have():
    encoder = LSTMEncoder(num_layers=2, time_reduction_layer=2)
    with pytest.raises(ValueError, match="time_reduction_layer"):
        encoder.init(jax.random.key(0), jnp.zeros((1, 4, 3)), jnp.array([4]))


@pytest.fixture(scope="module")
def rnnt():
    """A small RNN-T with stacking and time reduction, its variables and a padded batch."""
    model = make_rnnt(VOCAB, encoder_layers=2, encoder_hidden_size=16, frame_stack=2,
                      time_reduction_layer=0, predictor_embed_dim=8, predictor_hidden_size=16,
                      joint_dim=16, loss_chunk_size=2)
    features = jax.random.normal(jax.random.key(0), (2, 17, 5))
    feature_lengths = jnp.array([17, 11])
    labels = jnp.array([[1, 2, 3], [4, 5, -1]])
    label_lengths = jnp.array([3, 2])
    variables = jax.jit(model.init)(jax.random.key(1), features, feature_lengths, labels,
                                    label_lengths)
    return model, variables, (features, feature_lengths, labels, label_lengths)


def test_each_lstm_layer_has_its_own_named_kernel_leaves(rnnt):
    _, variables, _ = rnnt
    paths = {"/".join(str(k.key) for k in path)
             for path, _ in jax.tree_util.tree_leaves_with_path(variables["params"])}
    for module in ("encoder/lstm_0", "encoder/lstm_1", "predictor/lstm_0"):
        assert {f"{module}/input_kernel", f"{module}/recurrent_kernel", f"{module}/bias"} <= paths
    assert {"joint/output/kernel", "joint/encoder_proj/kernel", "joint/predictor_proj/kernel",
            "predictor/embedding/embedding"} <= paths


def test_loss_equals_rnnt_loss_on_the_full_joint_logits(rnnt):
    model, variables, (features, feature_lengths, labels, label_lengths) = rnnt
    loss = model.apply(variables, features, feature_lengths, labels, label_lengths)
    enc, enc_lengths = model.apply(variables, features, feature_lengths, method=model.encode)
    tokens = jnp.where(labels < 0, 0, labels)
    pred, _ = model.apply(variables, jnp.pad(tokens, ((0, 0), (1, 0))), method=model.predict)
    logits = model.apply(variables, enc[:, :, None], pred[:, None], method=model.joint_logits)
    expected = transducer.rnnt_loss(logits, labels, enc_lengths, label_lengths)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_loss_of_a_padded_example_equals_its_loss_alone(rnnt):
    model, variables, (features, feature_lengths, labels, label_lengths) = rnnt
    batched = model.apply(variables, features, feature_lengths, labels, label_lengths)
    alone = model.apply(variables, features[1:, :11], feature_lengths[1:], labels[1:, :2],
                        label_lengths[1:])
    np.testing.assert_allclose(batched[1], alone[0], rtol=1e-5)


def test_loss_gradient_is_finite_and_reaches_every_parameter(rnnt):
    model, variables, batch = rnnt
    grads = jax.jit(jax.grad(lambda p: model.apply({"params": p}, *batch).sum()))(variables["params"])
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(g)), path
        assert np.any(g != 0), path


def test_prediction_one_token_at_a_time_equals_the_whole_sequence(rnnt):
    model, variables, _ = rnnt
    tokens = jnp.array([[0, 3, 1, 6], [0, 2, 2, 5]])
    whole, _ = model.apply(variables, tokens, method=model.predict)
    state, steps = None, []
    for u in range(tokens.shape[1]):
        out, state = model.apply(variables, tokens[:, u:u + 1], state, method=model.predict)
        steps.append(out)
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), whole, atol=1e-6)


def test_parameter_counts_per_module_match_the_lstm_formula_and_sum_to_the_total(rnnt):
    _, variables, _ = rnnt
    by_layer = parameter_counts(variables, depth=2)
    hidden = 16
    assert by_layer["encoder/lstm_0"] == 4 * hidden * (2 * 5 + hidden + 1)  # stacked input 2*5
    assert by_layer["encoder/lstm_1"] == 4 * hidden * (2 * hidden + hidden + 1)  # after reduction
    top = parameter_counts(variables)
    assert list(top) == ["encoder", "joint", "predictor"]
    total = sum(x.size for x in jax.tree_util.tree_leaves(variables))
    assert sum(top.values()) == sum(by_layer.values()) == total
    assert format_parameter_counts(variables).splitlines()[-1].split()[:2] == ["total", f"{total:,}"]
