"""Tokenizers: blank is id 0 and never produced, round trips, alphabet errors, save/load."""

import numpy as np
import pytest

from corpora import tokenizer

TRAIN = [
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "IT'S THE DOG THAT JUMPS",
    "A LAZY AFTERNOON WITH THE BROWN DOG",
    "THE FOX AND THE DOG ARE QUICK",
    "WHERE IS THE QUICK BROWN FOX",
    "VERY EXCITING JAZZ MUSIC",
] * 10


@pytest.fixture(scope="module")
def sentencepiece():
    return tokenizer.SentencePieceTokenizer.train(TRAIN, vocab_size=48)


def random_texts(alphabet: str, count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list(alphabet), size=rng.integers(1, 40))) for _ in range(count)]


def test_char_ids_are_blank_then_letters_space_apostrophe():
    tok = tokenizer.CharTokenizer()
    assert (tok.blank_id, tok.vocab_size) == (0, 29)
    assert tok.encode("AZ '") == [1, 26, 27, 28]


def test_char_decode_inverts_encode_and_ids_avoid_blank():
    tok = tokenizer.CharTokenizer()
    for text in random_texts(tokenizer.CHAR_ALPHABET, 50):
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert all(1 <= i < tok.vocab_size for i in ids)


def test_decode_drops_blanks():
    tok = tokenizer.CharTokenizer()
    assert tok.decode([0, 8, 0, 0, 9, 0]) == "HI"


def test_sentencepiece_round_trips_seen_and_unseen_sentences(sentencepiece):
    for text in TRAIN[:6] + ["A FOX IS NOT A DOG", "JAZZ"]:
        ids = sentencepiece.encode(text)
        assert all(sentencepiece.blank_id < i < sentencepiece.vocab_size for i in ids)
        assert sentencepiece.decode(ids) == text


def test_sentencepiece_blank_is_zero_and_pieces_compress_training_text(sentencepiece):
    assert sentencepiece.blank_id == 0 and sentencepiece.vocab_size <= 48
    total_ids = sum(len(sentencepiece.encode(t)) for t in TRAIN)
    assert total_ids < 0.7 * sum(len(t) for t in TRAIN)


@pytest.mark.parametrize("kind", ["char", "sentencepiece"])
def test_out_of_alphabet_error_names_the_utterance_and_character(kind, sentencepiece):
    tok = tokenizer.CharTokenizer() if kind == "char" else sentencepiece
    with pytest.raises(ValueError, match=r"'1272-128104-0003'.*\['7', 's'\]"):
        tok.encode("THE 7 DOGs", utterance_id="1272-128104-0003")


@pytest.mark.parametrize("kind", ["char", "sentencepiece"])
def test_save_then_load_gives_the_same_tokenizer(kind, sentencepiece, tmp_path):
    tok = tokenizer.CharTokenizer() if kind == "char" else sentencepiece
    tok.save(tmp_path / "tok.json")
    loaded = tokenizer.load(tmp_path / "tok.json")
    assert type(loaded) is type(tok)
    assert (loaded.vocab_size, loaded.blank_id) == (tok.vocab_size, tok.blank_id)
    for text in TRAIN[:6]:
        assert loaded.encode(text) == tok.encode(text)
        assert loaded.decode(tok.encode(text)) == text


def test_load_rejects_an_unknown_kind(tmp_path):
    (tmp_path / "tok.json").write_text('{"kind": "bpe"}')
    with pytest.raises(ValueError, match="'bpe'"):
        tokenizer.load(tmp_path / "tok.json")
