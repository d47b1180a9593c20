"""Decoding: beam width 1 is greedy, the symbol cap holds, and an overfit model is decoded exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from models import ngram
from models.decoding import LMFusion, beam_search, fused_log_probs, greedy_decode, greedy_search
from models.rnnt import make_rnnt

VOCAB = 6


class _Letters:
    """Token id k -> the k-th letter of the alphabet (0 is blank)."""

    def decode(self, ids):
        return "".join(chr(ord("a") + i - 1) for i in ids)


def _tiny_rnnt():
    return make_rnnt(VOCAB, encoder_layers=1, encoder_hidden_size=32, predictor_embed_dim=8,
                     predictor_hidden_size=32, joint_dim=32)


@pytest.fixture(scope="module")
def random_rnnt():
    """An untrained RNN-T with large weights, so its outputs are diverse, and a padded batch."""
    model = _tiny_rnnt()
    features = jax.random.normal(jax.random.key(0), (3, 12, 5))
    lengths = jnp.array([12, 9, 5])
    variables = jax.jit(lambda key: model.init(key, features, lengths, jnp.ones((3, 1), jnp.int32),
                                               jnp.ones((3,), jnp.int32)))(jax.random.key(1))
    variables = jax.tree_util.tree_map(lambda p: 3.0 * p, variables)
    return model, variables, features, lengths


def _with_blank_bias(variables, bias):
    output = variables["params"]["joint"]["output"]
    params = {**variables["params"],
              "joint": {**variables["params"]["joint"],
                        "output": {**output, "bias": output["bias"].at[0].add(bias)}}}
    return {"params": params}


@pytest.mark.parametrize("max_symbols_per_frame", [1, 2])
def test_beam_search_of_width_one_equals_greedy_search(random_rnnt, max_symbols_per_frame):
    model, variables, features, lengths = random_rnnt
    greedy = greedy_decode(model, variables, features, lengths,
                           max_symbols_per_frame=max_symbols_per_frame)
    beam = beam_search(model, variables, features, lengths, beam_width=1,
                       max_symbols_per_frame=max_symbols_per_frame)
    assert beam.token_ids == greedy.token_ids
    assert len(set(map(tuple, greedy.token_ids))) == 3 and all(greedy.token_ids)  # non-trivial


@pytest.mark.parametrize("beam_width", [2, 4])
def test_beam_search_of_a_batch_equals_the_search_of_each_utterance_alone(random_rnnt, beam_width):
    """The batch advances in lockstep (shared joint and prediction calls): the bookkeeping must keep
    every utterance's hypotheses apart, including one that ends early and one with no frames."""
    model, variables, features, lengths = random_rnnt
    lengths = lengths.at[2].set(0)
    batch = beam_search(model, variables, features, lengths, beam_width=beam_width, max_symbols_per_frame=2)
    alone = [beam_search(model, variables, features[b:b + 1], lengths[b:b + 1], beam_width=beam_width,
                         max_symbols_per_frame=2).token_ids[0] for b in range(3)]
    assert batch.token_ids == alone
    assert alone[2] == [] and alone[0] != alone[1] and all(alone[:2])


@pytest.mark.parametrize("max_symbols_per_frame", [1, 3])
def test_without_blank_both_decoders_emit_exactly_the_cap_on_every_valid_frame(
        random_rnnt, max_symbols_per_frame):
    model, variables, features, lengths = random_rnnt
    never_blank = _with_blank_bias(variables, -1e4)
    tokens, num_tokens = greedy_search(model, never_blank, features, lengths, max_symbols_per_frame)
    np.testing.assert_array_equal(num_tokens, max_symbols_per_frame * lengths)
    assert np.all(np.asarray(tokens)[np.arange(tokens.shape[1]) >= num_tokens[:, None]] == -1)
    beam = beam_search(model, never_blank, features, lengths, beam_width=3,
                       max_symbols_per_frame=max_symbols_per_frame)
    assert [len(ids) for ids in beam.token_ids] == (max_symbols_per_frame * lengths).tolist()


def test_always_blank_decodes_to_empty_text(random_rnnt):
    model, variables, features, lengths = random_rnnt
    always_blank = _with_blank_bias(variables, 1e4)
    for decode in (greedy_decode, beam_search):
        result = decode(model, always_blank, features, lengths, tokenizer=_Letters())
        assert result.token_ids == [[], [], []] and result.texts == ["", "", ""]


def test_decoders_reject_invalid_search_sizes(random_rnnt):
    model, variables, features, lengths = random_rnnt
    with pytest.raises(ValueError, match="beam_width must be >= 1"):
        beam_search(model, variables, features, lengths, beam_width=0)
    with pytest.raises(ValueError, match="max_symbols_per_frame must be >= 1"):
        greedy_decode(model, variables, features, lengths, max_symbols_per_frame=0)


def test_fusion_adds_the_weighted_language_model_and_bonus_to_non_blank_tokens_only():
    lm = ngram.count([[1, 2, 3], [2, 3, 1, 4]], VOCAB, 2, "abcde")
    log_probs = np.log(np.random.default_rng(0).dirichlet(np.ones(VOCAB), size=2))
    fused = fused_log_probs(log_probs, [(), (2,)], LMFusion(lm, 0.5, 0.25), blank=0)
    expected = log_probs + 0.5 * np.stack([lm.log_probs(()), lm.log_probs((2,))]) + 0.25
    np.testing.assert_allclose(fused[:, 1:], expected[:, 1:])
    np.testing.assert_array_equal(fused[:, 0], log_probs[:, 0])
    assert fused_log_probs(log_probs, [(), (2,)], None, blank=0) is log_probs


def test_beam_search_with_a_zero_weight_language_model_is_plain_beam_search(random_rnnt):
    model, variables, features, lengths = random_rnnt
    lm = ngram.count([[1, 2, 3, 4, 5]], VOCAB, 3, "abcde")
    plain = beam_search(model, variables, features, lengths, beam_width=3)
    fused = beam_search(model, variables, features, lengths, beam_width=3, fusion=LMFusion(lm, 0.0))
    assert fused.token_ids == plain.token_ids


def test_a_heavily_weighted_language_model_decides_which_tokens_beam_search_emits(random_rnnt):
    """An LM counted on runs of token 3 alone, weighted 100 with a bonus that beats blank: every
    hypothesis emits only 3, though the random model itself spreads its tokens (the first test)."""
    model, variables, features, lengths = random_rnnt
    lm = ngram.count([[3] * 6] * 4, VOCAB, 2, "abcde")
    fused = beam_search(model, variables, features, lengths, beam_width=2, max_symbols_per_frame=1,
                        fusion=LMFusion(lm, 100.0, 50.0))
    assert fused.token_ids == [[3] * int(n) for n in lengths]


@pytest.mark.slow
def test_both_decoders_return_the_references_of_an_overfit_model():
    references = [[1, 2, 3], [4, 4, 5, 1], [2, 5]]
    features = jax.random.normal(jax.random.key(0), (3, 20, 8))
    lengths = jnp.array([20, 17, 14])
    labels = jnp.array([ids + [0] * (4 - len(ids)) for ids in references])
    label_lengths = jnp.array([len(ids) for ids in references])
    model = _tiny_rnnt()
    params = jax.jit(model.init)(jax.random.key(1), features, lengths, labels, label_lengths)["params"]
    optimizer = optax.adam(1e-2)

    @jax.jit
    def train_step(params, opt_state):
        loss, grads = jax.value_and_grad(lambda p: model.apply(
            {"params": p}, features, lengths, labels, label_lengths).mean())(params)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = optimizer.init(params)
    for _ in range(150):
        params, opt_state, loss = train_step(params, opt_state)
    assert loss < 0.05
    variables = {"params": params}
    texts = ["abc", "ddea", "be"]
    greedy = greedy_decode(model, variables, features, lengths, tokenizer=_Letters())
    beam = beam_search(model, variables, features, lengths, beam_width=4, tokenizer=_Letters())
    assert greedy.token_ids == beam.token_ids == references
    assert greedy.texts == beam.texts == texts
