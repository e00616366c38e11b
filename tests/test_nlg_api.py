"""medmm.metrics.nlg: score_corpus / score_samples contract (validation, edge cases, consistency)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medmm.errors import BadInputError
from medmm.metrics.nlg import METRICS, evaluate, score_corpus, score_samples

FAST = ["bleu", "rouge_l", "cider_d"]  # no METEOR: these need no resources
HYPS = {"s1": "No acute cardiopulmonary disease.", "s2": "Heart size is normal. Lungs are clear.", "s3": ""}
REFS = {
    "s1": ["No acute cardiopulmonary abnormality."],
    "s2": ["The heart is normal in size. The lungs are clear.", "Normal heart. Clear lungs."],
    "s3": ["Stable cardiomegaly."],
}


def test_corpus_keys_and_ranges():
    out = score_corpus(HYPS, REFS, metrics=FAST)
    assert set(out) == {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider_d"}
    for k, v in out.items():
        assert math.isfinite(v) and v >= 0, k
    assert 0 < out["bleu_1"] <= 1 and 0 < out["rouge_l"] <= 1


def test_per_sample_scores_and_their_relation_to_corpus():
    res = evaluate(HYPS, REFS, metrics=FAST)
    assert set(res.samples) == set(HYPS)
    # ROUGE-L and CIDEr-D corpus scores are means of per-sample scores.
    for key in ("rouge_l", "cider_d"):
        assert res.corpus[key] == pytest.approx(sum(s[key] for s in res.samples.values()) / 3)
    # Empty hypothesis: every score is 0 (defined, not NaN).
    assert all(v == 0.0 for v in res.samples["s3"].values())
    # A hypothesis identical to its reference gets BLEU-1 = ROUGE-L = 1.
    same = score_samples({"a": "Lungs are clear.", "b": "No effusion."}, {"a": ["Lungs are clear."], "b": ["Pneumothorax."]},
                         metrics=["bleu_1", "rouge_l"])
    assert same["a"]["bleu_1"] == pytest.approx(1.0) and same["a"]["rouge_l"] == pytest.approx(1.0)


def test_metric_selection_and_unknown_metric():
    assert set(score_corpus(HYPS, REFS, metrics="rouge_l")) == {"rouge_l"}
    assert set(score_corpus(HYPS, REFS, metrics=["BLEU-4"])) == set(METRICS["bleu"])
    with pytest.raises(ValueError, match="unknown metric"):
        score_corpus(HYPS, REFS, metrics=["spice"])


def test_pretokenised_input_is_taken_as_is():
    a = score_corpus({"x": "heart -lrb- normal -rrb-"}, {"x": ["heart -lrb- normal -rrb-"]}, metrics="rouge_l", tokenize=False)
    assert a["rouge_l"] == pytest.approx(1.0)
    # Tokenised mode lowercases and splits punctuation, pre-tokenised mode does not.
    b = score_corpus({"x": "Heart."}, {"x": ["heart"]}, metrics="rouge_l", tokenize=False)
    assert b["rouge_l"] == 0.0
    assert score_corpus({"x": "Heart."}, {"x": ["heart"]}, metrics="rouge_l")["rouge_l"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "hyps, refs, needle",
    [
        ({"a": "x"}, {"b": ["x"]}, "'a'"),  # mismatched ids name the id
        ({"a": "x", "b": "y"}, {"a": ["x"]}, "'b'"),
        ({"a": 3}, {"a": ["x"]}, "id 'a'"),  # non-string hypothesis
        ({"a": "x"}, {"a": []}, "id 'a': empty reference list"),
        ({"a": "x"}, {"a": "x"}, "id 'a'"),  # a bare string is not a list of references
        ({"a": "x"}, {"a": ["x", None]}, "id 'a'"),
        ({}, {}, "no hypotheses"),
    ],
)
def test_bad_input_names_the_problem(hyps, refs, needle):
    with pytest.raises(BadInputError, match=needle.replace("(", r"\(")):
        score_corpus(hyps, refs, metrics=FAST, source="preds.json")


def test_error_names_the_source_file():
    with pytest.raises(BadInputError, match="^preds.json: "):
        score_corpus({"a": "x"}, {"a": []}, metrics=FAST, source="preds.json")


def test_unicode_text():
    out = score_samples({"u": "Épanchement pleural ≥ 5 mm — “stable”."}, {"u": ["Épanchement pleural ≥ 5 mm."]}, metrics=FAST)
    assert out["u"]["bleu_1"] > 0.5


words = st.sampled_from(["the", "lungs", "are", "clear", "no", "effusion", ".", ",", "(", ")", "5", "mm", "é", "XXXX"])
texts = st.lists(words, max_size=12).map(" ".join)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(texts, st.lists(texts, min_size=1, max_size=3)), min_size=1, max_size=5))
def test_scores_are_finite_and_bounded(pairs):
    hyps = {i: h for i, (h, _) in enumerate(pairs)}
    refs = {i: r for i, (_, r) in enumerate(pairs)}
    res = evaluate(hyps, refs, metrics=FAST)
    for scores in [res.corpus, *res.samples.values()]:
        for k, v in scores.items():
            assert math.isfinite(v) and v >= 0, (k, v)
            if k != "cider_d":
                assert v <= 1 + 1e-9, (k, v)


def test_stats_give_exact_corpus_bleu_for_subsets():
    from medmm.metrics.nlg.bleu import bleu_from_stats

    res = evaluate(HYPS, REFS, metrics="bleu")
    corpus, _ = bleu_from_stats([res.stats["bleu"][k] for k in HYPS])
    assert corpus[3] == pytest.approx(res.corpus["bleu_4"])
