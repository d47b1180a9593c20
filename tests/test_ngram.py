"""The token n-gram language model: Kneser-Ney against a direct reference, storage, tokenizer check, CLI."""

import itertools
import json
import pathlib

import numpy as np
import pytest

from corpora import tokenizer as tokenizer_lib
from models import ngram

VOCAB = 5  # blank + ids 1..4
SENTENCES = [[1, 2, 3], [1, 2, 2, 4], [3, 1, 2], [4, 4, 1, 2, 3], [2, 3]]
PIECES = ("a", "b", "c", "d")


def _reference_probs(sentences, order, context):
    """Interpolated Kneser-Ney written out from its definition with dictionaries, one order at a time."""
    bos = VOCAB
    padded = [[bos] * (order - 1) + s for s in sentences]
    grams = {n: {} for n in range(1, order + 1)}
    for s in padded:
        for i in range(order - 1, len(s)):
            for n in range(1, order + 1):
                g = tuple(s[i - n + 1:i + 1])
                grams[n][g] = grams[n].get(g, 0) + 1
    counts = {order: grams[order]}
    for n in range(order - 1, 0, -1):  # continuation: distinct left neighbours among the (n+1)-grams
        counts[n] = {}
        for g in grams[n + 1]:
            counts[n][g[1:]] = counts[n].get(g[1:], 0) + 1

    def discount(n):
        values = list(counts[n].values())
        n1, n2 = values.count(1), values.count(2)
        return min(max(n1 / (n1 + 2 * n2), 0.1), 0.9) if n1 and n2 else 0.5

    history = tuple([bos] * (order - 1) + list(context))[len(context):]  # the last order-1 symbols
    probs = np.array([0.0] + [1.0 / (VOCAB - 1)] * (VOCAB - 1))
    for n in range(1, order + 1):
        h = history[len(history) - (n - 1):] if n > 1 else ()
        following = {g[-1]: c for g, c in counts[n].items() if g[:-1] == h}
        total = sum(following.values())
        if not total:
            continue
        d = discount(n)
        new = probs * d * len(following) / total
        for w, c in following.items():
            new[w] += max(c - d, 0) / total
        probs = new
    return probs


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_kneser_ney_matches_the_definition_for_every_context(order):
    lm = ngram.count(SENTENCES, VOCAB, order, PIECES)
    contexts = [()] + [c for n in range(1, order) for c in itertools.product(range(1, VOCAB), repeat=n)]
    for context in contexts:
        got = np.exp(lm.log_probs(context))
        np.testing.assert_allclose(got, _reference_probs(SENTENCES, order, context), atol=1e-12, err_msg=str(context))
        assert got[0] == 0.0 and abs(got.sum() - 1.0) < 1e-12


def test_a_longer_history_uses_its_last_order_minus_one_tokens_and_context_helps():
    lm = ngram.count(SENTENCES, VOCAB, 3, PIECES)
    np.testing.assert_array_equal(lm.log_probs([4, 3, 1, 2]), lm.log_probs([1, 2]))
    # "1 2" is followed by 3 twice and 2 once: 3 is likelier after it than from the start.
    assert lm.log_probs([1, 2])[3] > lm.log_probs([])[3]
    assert lm.sentence_log_prob([1, 2, 3]) > lm.sentence_log_prob([3, 2, 1])


def test_storage_round_trip_and_a_bad_file_is_named(tmp_path):
    lm = ngram.count(SENTENCES, VOCAB, 3, PIECES)
    ngram.save(lm, tmp_path / "lm" / "m.npz")
    back = ngram.load(tmp_path / "lm" / "m.npz")
    assert (back.order, back.vocab_size, back.pieces, back.discounts) == (3, VOCAB, PIECES, lm.discounts)
    for context in ([], [1], [2, 3], [4, 4, 4]):
        np.testing.assert_array_equal(back.log_probs(context), lm.log_probs(context))
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="other.npz is not a language model"):
        ngram.load(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError):
        ngram.load(tmp_path / "missing.npz")


def test_bad_counts_are_clear_errors():
    with pytest.raises(ValueError, match="order must be >= 1"):
        ngram.count(SENTENCES, VOCAB, 0, PIECES)
    with pytest.raises(ValueError, match=r"sequence 1 holds ids outside 1..4: \[0\]"):
        ngram.count([[1, 2], [3, 0]], VOCAB, 2, PIECES)
    with pytest.raises(ValueError, match="no tokens"):
        ngram.count([[], []], VOCAB, 2, PIECES)
    with pytest.raises(ValueError, match="overflows the int64"):
        ngram.count(SENTENCES, 256, 9, PIECES)


def test_the_tokenizer_check_names_a_mismatch():
    chars = tokenizer_lib.CharTokenizer()
    lm = ngram.count([chars.encode("AB C")], chars.vocab_size, 2, ngram.tokenizer_pieces(chars))
    ngram.check_tokenizer(lm, chars, "x.npz")
    with pytest.raises(ValueError, match=r"x.npz was counted with another tokenizer: 29 ids against the model's 5"):
        ngram.check_tokenizer(lm, tokenizer_lib.CharTokenizer("ABCD"), "x.npz")
    with pytest.raises(ValueError, match=r"ids \[1, 2\] differ"):
        ngram.check_tokenizer(lm, tokenizer_lib.CharTokenizer("BACDEFGHIJKLMNOPQRSTUVWXYZ '"), "x.npz")


def test_cli_counts_a_manifest_and_names_a_bad_transcript(tmp_path, capsys):
    tok = tmp_path / "tokenizer.json"
    tokenizer_lib.CharTokenizer().save(tok)
    manifest = tmp_path / "train.jsonl"
    entry = lambda i, text: json.dumps({"id": i, "path": f"{i}.flac", "text": text, "duration_s": 1.0}) + "\n"
    manifest.write_text(entry("u0", "A CAT") + entry("u1", "THE CAT"))
    out = tmp_path / "lm.npz"
    assert ngram.main(["--tokenizer", str(tok), "--manifest", str(manifest), "--order", "3", "--out", str(out)]) == 0
    assert "order 3, 2 sentences" in capsys.readouterr().out
    lm = ngram.load(out)
    chars = tokenizer_lib.CharTokenizer()
    # After "CA" the corpus only ever has "T".
    assert np.argmax(lm.log_probs(chars.encode("A CA"))) == chars.encode("T")[0]
    manifest.write_text(entry("bad-1", "a cat"))
    with pytest.raises(SystemExit, match="utterance 'bad-1' holds characters outside"):
        ngram.main(["--tokenizer", str(tok), "--manifest", str(manifest), "--out", str(out)])


def test_the_committed_language_model_fits_the_published_models_and_knows_english():
    root = pathlib.Path(__file__).resolve().parents[1]
    lm = ngram.load(root / "results" / "lm" / "char6_synth_large.npz")
    assert lm.order == 6
    for model in ("rnnt_synth_large", "conformer_synth_large_stage3", "conformer_gq_4_large"):
        ngram.check_tokenizer(lm, tokenizer_lib.load(root / "results" / "models" / model / "tokenizer.json"), model)
    chars = tokenizer_lib.CharTokenizer()
    sentence = chars.encode("THE OLD MAN WALKED SLOWLY TO THE HOUSE")
    assert lm.sentence_log_prob(sentence) > lm.sentence_log_prob(sentence[::-1]) + 50
    assert lm.sentence_log_prob(chars.encode("THE HOUSE")) > lm.sentence_log_prob(chars.encode("THE HOUZE"))
