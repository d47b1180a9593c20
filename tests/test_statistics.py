"""experiments/statistics.py: per-utterance scores and the paired bootstrap of a WER difference, and
the report's use of them (intervals where per-utterance scores exist, the lossless rule)."""

import json

import jiwer
import numpy as np
import pytest

from experiments import registry, report, statistics
from training import evaluate


def _system(seed: int, n: int = 400, rate: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    words = rng.integers(3, 25, size=n)
    return rng.binomial(words, rate), words


def slow_bootstrap(ea, wa, eb, wb, resamples, level, seed):
    """The definition, one resample at a time (the oracle of the vectorised version)."""
    rng = np.random.default_rng(seed)
    n, deltas = len(ea), []
    for _ in range(resamples):
        idx = rng.integers(0, n, size=n)
        deltas.append(sum(eb[i] for i in idx) / sum(wb[i] for i in idx)
                      - sum(ea[i] for i in idx) / sum(wa[i] for i in idx))
    return np.percentile(deltas, [50 * (1 - level), 50 * (1 + level)])


def test_the_interval_matches_a_loop_over_resamples():
    ea, words = _system(0, n=60)
    eb, _ = _system(1, n=60)
    eb_words = words + 1  # another tokenizer's references: B's words may differ
    got = statistics.paired_bootstrap(ea, words, eb, eb_words, resamples=1000, level=0.9, seed=7)
    low, high = slow_bootstrap(ea.tolist(), words.tolist(), eb.tolist(), eb_words.tolist(), 1000, 0.9, 7)
    assert (got.low, got.high) == pytest.approx((low, high), abs=1e-12)
    assert got.difference == pytest.approx(eb.sum() / eb_words.sum() - ea.sum() / words.sum())
    assert got.resamples == 1000 and got.utterances == 60 and got.level == 0.9


def test_identical_systems_differ_by_exactly_zero():
    errors, words = _system(2)
    got = statistics.paired_bootstrap(errors, words, errors.copy())
    assert got.difference == got.low == got.high == 0.0 and got.relative == 0.0
    assert statistics.lossless(got)


def test_more_errors_on_every_utterance_gives_an_interval_above_zero():
    errors, words = _system(3, rate=0.05)
    got = statistics.paired_bootstrap(errors, words, errors + 1)
    assert 0 < got.low <= got.difference <= got.high
    assert not statistics.lossless(got)


def test_pairing_removes_the_shared_noise_of_the_utterances():
    """B = A plus one error on 10 % of the utterances: the paired interval is far narrower than
    the spread of either system's WER over resamples, and excludes 0."""
    errors, words = _system(4, n=1000, rate=0.2)
    extra = (np.arange(1000) % 10 == 0).astype(int)
    got = statistics.paired_bootstrap(errors, words, errors + extra)
    alone = statistics.paired_bootstrap(np.zeros_like(errors), words, errors)  # WER_A = 0: spread of WER_B
    assert got.low > 0 and (got.high - got.low) < 0.25 * (alone.high - alone.low)


def test_the_same_seed_gives_the_same_interval_and_another_seed_another():
    ea, words = _system(5)
    eb, _ = _system(6)
    first, again = (statistics.paired_bootstrap(ea, words, eb, seed=3) for _ in range(2))
    other = statistics.paired_bootstrap(ea, words, eb, seed=4)
    assert first == again and (first.low, first.high) != (other.low, other.high)
    assert first.difference == other.difference


def test_lossless_is_the_upper_end_within_two_percent_relative_of_the_float_wer():
    difference = statistics.WerDifference(0.05, 0.0505, 0.0005, 0.01, -0.0003, 0.00099, 0.95, 2000, 100)
    assert statistics.lossless(difference)  # 0.099 points <= 2 % of 5 % = 0.1 points
    assert not statistics.lossless(difference._replace(high=0.00101))
    assert not statistics.lossless(difference, float_wer=0.04)  # 2 % of 4 %: 0.08 points


@pytest.mark.parametrize("kwargs, message", [
    ({"resamples": 999}, "resamples must be an int >= 1000"),
    ({"level": 1.0}, "level must be in"),
    ({"errors_b": [1, 2]}, "errors_b must be a 1-D sequence of 3"),
    ({"errors_a": [-1, 0, 0]}, "errors_a must hold finite counts >= 0"),
    ({"words_a": [0, 0, 0]}, "no words"),
])
def test_bad_inputs_are_an_error_naming_them(kwargs, message):
    args = {"errors_a": [1, 0, 2], "words_a": [4, 5, 6], "errors_b": [0, 0, 1], **kwargs}
    with pytest.raises(ValueError, match=message):
        statistics.paired_bootstrap(**args)


def test_utterance_scores_sum_to_the_split_scores_of_evaluate():
    rng = np.random.default_rng(8)
    vocab = "a b c d e f g".split()
    refs = [" ".join(rng.choice(vocab, size=rng.integers(1, 9))) for _ in range(50)]
    hyps = [" ".join(rng.choice(vocab, size=rng.integers(0, 9))) for _ in range(50)]
    errors, words = statistics.utterance_scores(refs, hyps)
    split = evaluate.scores(refs, hyps)
    assert errors.sum() == split["substitutions"] + split["deletions"] + split["insertions"]
    assert words.sum() == split["num_words"]
    assert errors.sum() / words.sum() == pytest.approx(split["wer"])
    for i in (0, 17, 49):  # and each utterance alone is jiwer's score of that utterance
        alone = jiwer.process_words(refs[i], hyps[i])
        assert errors[i] == alone.substitutions + alone.deletions + alone.insertions
    record = statistics.utterance_record(refs, hyps)
    assert record == {"utterance_errors": errors.tolist(), "utterance_words": words.tolist()}


def _row(name, method, errors, words, average_bits=4.0):
    scores = {"wer": 0.2 if errors is None else float(np.sum(errors) / np.sum(words)), "num_words": int(np.sum(words)),
              **({} if errors is None else {"utterance_errors": list(errors), "utterance_words": list(words)})}
    return {"eval": {"greedy": {"test": scores}}, "name": name, "model": "rnnt", "method": method,
            "table": "main", "kind": "finetune", "average_bits": average_bits if method == "gq" else 32.0,
            "saving_vs_8bit": 0.48, "trained_steps": 300, "planned_steps": 300, "float_weights": []}


def test_the_report_judges_gq_by_the_paired_interval_and_the_lossless_rule():
    errors, words = _system(9, n=2000, rate=0.05)
    worse = errors + (np.arange(2000) % 4 == 0)  # +0.25 errors per utterance: far from lossless
    results = {"rnnt_float": _row("rnnt_float", "float", errors, words),
               "rnnt_float_finetune": _row("rnnt_float_finetune", "float", errors, words),
               "rnnt_gq_4": _row("rnnt_gq_4", "gq", errors, words),
               "rnnt_gq_2": _row("rnnt_gq_2", "gq", worse, words, 2.0),
               "rnnt_uniform_ste_2": _row("rnnt_uniform_ste_2", "uniform_ste", errors, words)}
    lines = report.headline("rnnt", results)
    gq4 = next(line for line in lines if line.startswith("- rnnt_gq_4"))
    assert "+0.00 points (+0.0 % relative), 95 % interval [+0.00, +0.00]; lossless: yes" in gq4
    gq2 = next(line for line in lines if line.startswith("- rnnt_gq_2"))
    assert "lossless: no" in gq2 and report.UNPAIRED not in gq2
    against = next(line for line in lines if line.startswith("- GQ vs uniform_ste"))
    assert "2 bits: GQ" in against and "GQ worse" in against
    assert "+0.00 points" in report.control_line("rnnt", results)


def test_rows_without_per_utterance_scores_are_compared_without_an_interval():
    errors, words = _system(10)
    results = {"rnnt_float": _row("rnnt_float", "float", errors, words),
               "rnnt_gq_4": _row("rnnt_gq_4", "gq", None, words)}
    assert report.paired(results["rnnt_float"], results["rnnt_gq_4"]) is None
    line = next(line for line in report.headline("rnnt", results) if line.startswith("- rnnt_gq_4"))
    assert report.UNPAIRED in line and "interval [" not in line


def test_an_ablation_with_per_utterance_scores_matters_when_an_interval_excludes_zero():
    errors, words = _system(11, n=1500, rate=0.1)
    rows = {("ste", 4): errors, ("soft", 4): errors, ("ste", 2): errors, ("soft", 2): errors + 1}
    results = {registry.ablation_name("mode", value, bits): _row("x", "gq", e, words)
               for (value, bits), e in rows.items()}
    line = next(line for line in report.ablation_headline(results) if line.startswith("- mode:"))
    assert "4 bits: against ste: soft +0.00 points" in line and "(within noise: paired bootstrap)" in line
    assert "(matters: paired bootstrap), none shown better than ste" in line  # soft is worse, not better
    better = {**results, registry.ablation_name("mode", "soft", 2): _row("x", "gq", np.maximum(errors - 1, 0), words)}
    line = next(line for line in report.ablation_headline(better) if line.startswith("- mode:"))
    assert "(matters: paired bootstrap), best soft (shown better than ste)" in line
    assert "4 bits: against ste: soft +0.00 points (+0.0 % relative), 95 % interval [+0.00, +0.00] " \
           "(within noise: paired bootstrap), none shown better than ste" in line


def test_an_ablation_is_reported_on_the_values_measured_and_names_the_missing_ones():
    errors, words = _system(12, n=1500, rate=0.1)
    results = {registry.ablation_name("mu", value, 2): _row("x", "gq", e, words)
               for value, e in (("8", errors), ("0", errors + 1))}
    line = next(line for line in report.ablation_headline(results) if line.startswith("- mu:"))
    assert "4 bits not yet measured" in line
    assert "2 bits: against 8: 0 +" in line and "none shown better than 8, 255 not yet measured" in line
    init = {registry.ablation_name("init", value, 4): _row("x", "gq", e, words)  # "auto" is "uniform" at 4 bits
            for value, e in (("auto", errors), ("kmeans", errors + 1))}
    line = next(line for line in report.ablation_headline(init) if line.startswith("- init:"))
    assert "4 bits: against auto: kmeans +" in line and "uniform" not in line
    alone = {registry.ablation_name("mu", "0", 2): results[registry.ablation_name("mu", "0", 2)]}
    assert "2 bits not yet measured" in next(line for line in report.ablation_headline(alone)
                                             if line.startswith("- mu:"))


def test_the_report_states_the_lossless_rule(tmp_path):
    text = report.write_report(tmp_path).read_text()
    assert "**Lossless** means the interval's upper end is at most +2 % relative of the float WER" in text


def test_compare_reads_two_json_files_and_names_a_missing_key(tmp_path, capsys):
    from experiments import compare

    (ea, words), (eb, _) = _system(3), _system(4)
    counts = lambda e: {statistics.UTTERANCE_ERRORS: e.tolist(), statistics.UTTERANCE_WORDS: words.tolist()}
    (tmp_path / "a.json").write_text(json.dumps({"test": {"quantized": counts(ea)}}))
    (tmp_path / "b.json").write_text(json.dumps({"GQ 4-bit": counts(eb)}))
    result = compare.compare(f"{tmp_path}/a.json:test/quantized", f"{tmp_path}/b.json:GQ 4-bit")
    assert result == statistics.paired_bootstrap(ea, words, eb, words)
    compare.main([f"{tmp_path}/a.json:test/quantized", f"{tmp_path}/b.json:GQ 4-bit"])
    assert statistics.describe(result) in capsys.readouterr().out
    with pytest.raises(ValueError, match="no key 'dev'.*there: \\['test'\\]"):
        compare.scores_at(f"{tmp_path}/a.json:dev/quantized")
    (tmp_path / "short.json").write_text(json.dumps({"x": counts(ea[:10])}))
    with pytest.raises(ValueError, match="same utterances"):
        compare.compare(f"{tmp_path}/a.json:test/quantized", f"{tmp_path}/short.json:x")
