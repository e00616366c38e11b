import pytest

from medmm.metrics.vqa import VQAMetric, normalise_answer, sentence_bleu, token_f1, vqa_metrics


def test_normalisation():
    assert normalise_answer("  The Left  Lung. ") == "left lung"
    assert normalise_answer("ＹＥＳ!") == "yes"  # noqa: RUF001 - full-width unicode folded by NFKC
    assert normalise_answer("Ödem") == "ödem"


def test_token_f1_and_bleu():
    assert token_f1("left lung", "left lung") == 1.0
    assert token_f1("left", "left lung") == pytest.approx(2 / 3)
    assert token_f1("", "") == 1.0 and token_f1("a", "") == 0.0
    assert sentence_bleu("right lower lobe", "right lower lobe") == pytest.approx(1.0)
    assert sentence_bleu("", "x") == 0.0
    assert 0 < sentence_bleu("right lobe", "right lower lobe") < 1


def test_vqa_metrics_types():
    preds = ["Yes", "no", "left lung", "brain", ""]
    refs = ["yes", "yes", "The left lung", "liver", "kidney"]
    m = vqa_metrics(preds, refs, answer_types=["CLOSED", "CLOSED", "OPEN", "OPEN", "OPEN"],
                    question_types=["PRES", "PRES", "POS", "ORGAN", "ORGAN"])
    assert m["closed_accuracy"] == 0.5 and m["open_exact_match"] == pytest.approx(1 / 3)
    assert m["overall_accuracy"] == pytest.approx(2 / 5)
    assert m["by_question_type"]["ORGAN"]["open_exact_match"] == 0.0
    assert m["by_answer_type"]["CLOSED"]["n"] == 2
    assert "NFKC" in m["provenance"]["tokenisation"]


def test_closed_inferred_and_empty_subset_is_none():
    m = vqa_metrics(["yes"], ["no"])
    assert m["n_closed"] == 1 and m["open_exact_match"] is None


def test_accumulator_and_errors():
    acc = VQAMetric()
    acc.update(["a"], ["a"])
    acc.update(["b"], ["c"], answer_types=["OPEN"])
    assert acc.compute()["overall_accuracy"] == 0.5
    with pytest.raises(ValueError):
        vqa_metrics([], [])
    with pytest.raises(ValueError):
        vqa_metrics(["a"], ["a", "b"])
