"""Auxiliary CTC: the loss adds w x optax's CTC NLL of the CTC head, the head exists only when w > 0,
its gradient reaches the encoder, and best-path decoding merges repeats and drops blanks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from models import decoding
from models.conformer import make_conformer
from models.rnnt import make_rnnt

VOCAB = 6


def batch(key=0):
    feats = jax.random.normal(jax.random.key(key), (2, 24, 8))
    lengths = jnp.array([24, 17])
    labels = jnp.array([[1, 2, 3], [4, 5, 0]])
    label_lengths = jnp.array([3, 2])
    return feats, lengths, labels, label_lengths


@pytest.mark.parametrize("make", [make_rnnt, make_conformer])
def test_the_loss_adds_the_weighted_ctc_nll_of_the_ctc_head(make):
    kwargs = dict(encoder_layers=1, predictor_embed_dim=4, predictor_hidden_size=8, joint_dim=8)
    plain, with_ctc = make(VOCAB, **kwargs), make(VOCAB, ctc_weight=0.3, **kwargs)
    feats, lengths, labels, label_lengths = batch()
    params = with_ctc.init(jax.random.key(1), feats, lengths, labels, label_lengths)["params"]
    assert "ctc" in params
    without = {k: v for k, v in params.items() if k != "ctc"}
    assert set(plain.init(jax.random.key(1), feats, lengths, labels, label_lengths)["params"]) == set(without)
    total = with_ctc.apply({"params": params}, feats, lengths, labels, label_lengths)
    rnnt = plain.apply({"params": without}, feats, lengths, labels, label_lengths)
    logits, enc_lengths = with_ctc.apply({"params": params}, feats, lengths, method=with_ctc.ctc_logits)
    frame_pad = (jnp.arange(logits.shape[1])[None] >= enc_lengths[:, None]).astype(jnp.float32)
    label_pad = (jnp.arange(3)[None] >= label_lengths[:, None]).astype(jnp.float32)
    ctc = optax.ctc_loss(logits, frame_pad, labels, label_pad, blank_id=0)
    np.testing.assert_allclose(total, rnnt + 0.3 * ctc, rtol=1e-5)
    grads = jax.grad(lambda p: with_ctc.apply({"params": p}, feats, lengths, labels, label_lengths).sum())(params)
    assert float(jnp.abs(grads["ctc"]["kernel"]).sum()) > 0


def test_a_negative_ctc_weight_or_ctc_decoding_without_a_head_is_an_error():
    feats, lengths, labels, label_lengths = batch()
    with pytest.raises(ValueError, match="ctc_weight=-1"):
        make_rnnt(VOCAB, ctc_weight=-1.0).init(jax.random.key(0), feats, lengths, labels, label_lengths)
    model = make_rnnt(VOCAB)
    variables = model.init(jax.random.key(0), feats, lengths, labels, label_lengths)
    with pytest.raises(ValueError, match="no CTC head"):
        decoding.ctc_greedy_decode(model, variables, feats, lengths)


def test_best_path_decoding_merges_repeats_and_drops_blanks():
    model = make_rnnt(VOCAB, encoder_layers=1, encoder_hidden_size=8, ctc_weight=1.0)
    feats, lengths, labels, label_lengths = batch()
    params = model.init(jax.random.key(0), feats, lengths, labels, label_lengths)["params"]
    # Frame t's arg-max is set by the bias alone: token 3 everywhere -> one 3; blank everywhere -> nothing.
    for favoured, expected in ((3, [3]), (0, [])):
        head = {"kernel": jnp.zeros_like(params["ctc"]["kernel"]),
                "bias": 10.0 * jax.nn.one_hot(favoured, VOCAB)}
        result = decoding.ctc_greedy_decode(model, {"params": {**params, "ctc": head}}, feats, lengths)
        assert result.token_ids == [expected, expected]


@pytest.mark.slow
def test_transcribe_decodes_with_the_ctc_head_when_asked(tiny_corpus, tmp_path):
    import train
    from tests.tiny_run import tiny_config
    from training import evaluate, input_pipeline, runs

    workdir = tmp_path / "ctc"
    train.train_and_evaluate(tiny_config(tiny_corpus, **{"model.ctc_weight": 0.5, "num_train_steps": 2,
                                                         "data.num_workers": 0}), str(workdir))
    run = runs.load(workdir)
    assert "ctc" in run.params
    split = input_pipeline.source(run.config.data, "dev")
    refs, hyps = evaluate.transcribe(run.model, run.params, split, run.tokenizer, run.config.features, 4, ctc=True)
    assert len(refs) == len(hyps) == len(split) and all(isinstance(h, str) for h in hyps)
