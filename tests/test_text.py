"""Sentence pool of synth-en: normalisation, filtering, closed vocabulary, disjoint splits."""

import collections

import pytest

from corpora import text


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("Don't stop -- the 'quick' fox!", "DON'T STOP THE QUICK FOX"),
        ("He said: \u201cwell, well\u201d.", "HE SAID WELL WELL"),
        ("a/b  test_case", "A B TEST CASE"),
        ("It\u2019s  6 o'clock", "IT'S 6 O'CLOCK"),
    ],
)
def test_normalise_keeps_only_capitals_apostrophes_and_single_spaces(raw, expected):
    assert text.normalise(raw) == expected


def test_is_readable_rejects_digits_crude_words_and_bad_lengths():
    assert text.is_readable("THE CAT SAT DOWN")
    assert not text.is_readable("THE 6 CATS SAT")
    assert not text.is_readable("WHAT THE FUCK IS THIS")
    assert not text.is_readable("TOO SHORT")
    assert not text.is_readable(" ".join(["WORD"] * (text.MAX_WORDS + 1)))


def test_split_sentences_breaks_after_terminal_punctuation():
    assert text.split_sentences("One two.  Three;\nfour! Five? six") == ["One two.", "Three;", "four!", "Five?", "six"]


def test_closed_vocabulary_is_the_most_frequent_words_by_brute_force():
    sentences = ["A B C", "A B", "A D", "E"]
    counts = collections.Counter(w for s in sentences for w in s.split())
    assert text.closed_vocabulary(sentences, 2) == {"A", "B"}
    vocab = text.closed_vocabulary(sentences, 3)
    assert min(counts[w] for w in vocab) >= max(counts[w] for w in counts if w not in vocab)
    assert len(vocab) == 3


def test_pool_sentences_are_readable_unique_and_in_a_closed_vocabulary():
    pool = text.sentence_pool()
    assert len(pool) > 10_000  # enough for `full` (5,900 sentences) with room to spare
    assert len(set(pool)) == len(pool)
    assert all(text.is_readable(s) for s in pool)
    assert len({w for s in pool for w in s.split()}) <= text.VOCAB_SIZE


def test_a_larger_vocabulary_keeps_every_smaller_pool_sentence_and_adds_more():
    small, large = text.sentence_pool(), text.sentence_pool(30_000)
    assert set(small) < set(large) <= set(text.readable_sentences())
    assert len(text.pool_vocabulary(30_000)) == 30_000 and text.pool_vocabulary() < text.pool_vocabulary(30_000)
    assert text.pool_vocabulary(30_000).issuperset(w for s in large for w in s.split())
    assert len(large) > 60_000


def test_oov_rate_is_the_share_of_word_tokens_outside_the_vocabulary():
    assert text.oov_rate(["A B C", "A D"], {"A", "B"}) == pytest.approx(2 / 5)  # C, D of A B C A D
    assert text.oov_rate(["A A A"], {"A"}) == 0.0 and text.oov_rate(["X Y"], set()) == 1.0
    assert text.oov_rate([], {"A"}) == 0.0


def test_every_source_contributes_to_the_pool():
    pool = set(text.sentence_pool())
    for source in (text.wordnet_sentences, text.fortune_sentences, text.bible_sentences):
        assert sum(text.normalise(s) in pool for s in source()) > 2000, source.__name__


def test_disjoint_splits_have_the_asked_counts_share_nothing_and_repeat_for_a_seed():
    pool = [f"SENTENCE {i}" for i in range(100)]
    counts = {"train": 50, "dev": 20, "test": 30}
    splits = text.disjoint_splits(pool, counts, seed=7)
    assert {k: len(v) for k, v in splits.items()} == counts
    assert len(set().union(*splits.values())) == 100
    assert splits == text.disjoint_splits(pool, counts, seed=7)
    assert splits != text.disjoint_splits(pool, counts, seed=8)


def test_disjoint_splits_refuse_more_sentences_than_the_pool_holds():
    with pytest.raises(ValueError, match="need 11 sentences; the pool holds only 10"):
        text.disjoint_splits([str(i) for i in range(10)], {"train": 11}, seed=0)


def test_wordnet_examples_come_from_glosses_not_the_licence(tmp_path):
    for part in ("noun", "verb", "adj", "adv"):
        (tmp_path / f"data.{part}").write_text(
            '  1 This software "AS IS" and\n'
            f'00001 03 {part[0]} 01 word 0 000 | a gloss; "the first {part} example"; "a second one"\n'
        )
    sentences = text.wordnet_sentences(tmp_path)
    assert sentences.count("a second one") == 4 and "AS IS" not in sentences
    assert "the first noun example" in sentences


def test_fortunes_drop_attribution_lines(tmp_path):
    (tmp_path / "quotes").write_text("Be kind to all. It helps.\n\t\t-- Some Author\n%\nA second fortune here.\n")
    (tmp_path / "quotes.dat").write_bytes(b"\x00binary")
    assert text.fortune_sentences(tmp_path) == ["Be kind to all.", "It helps.", "A second fortune here."]
