"""VQA answers: normalisation, closed-question routing, answer/question types and record scoring."""

from __future__ import annotations

from medmm.data.schema import Sample
from medmm.tasks.vqa.answers import answer_type, is_closed_question, normalise_vqa_answer, question_type, vqa_scores


def test_answer_normalisation_and_question_type():
    assert normalise_vqa_answer(" Yes. ") == "yes"
    assert normalise_vqa_answer("The Left Lung!") == "left lung"
    assert normalise_vqa_answer("true") == "yes" and normalise_vqa_answer("N") == "no"
    assert is_closed_question("what is shown?", "CLOSED ")
    assert not is_closed_question("is this normal?", "OPEN")
    assert is_closed_question("Is there a mass?", None)
    assert not is_closed_question("Is the mass left or right?", None)
    assert not is_closed_question("Where is the mass?", None)


def test_answer_and_question_type_of_a_sample():
    s = Sample(id="1", dataset="vqa_rad", split="train", targets={"answer_type": " closed"}, meta={"question_type": "PRES"})
    assert answer_type(s) == "CLOSED" and question_type(s) == "PRES"
    slake = Sample(id="2", dataset="slake", split="train", targets={"content_type": "Organ"})
    assert answer_type(slake) is None and question_type(slake) == "Organ"


def test_vqa_scores_counts_and_grouped_ci():
    recs = [
        {"prediction": "yes", "reference": "Yes", "answer_type": "CLOSED", "group": "a", "source": "classifier"},
        {"prediction": "no", "reference": "yes", "answer_type": "CLOSED", "group": "a", "source": "classifier"},
        {"prediction": "left lung", "reference": "the left lung", "answer_type": "OPEN", "group": "b", "source": "decoder"},
        {"prediction": "liver", "reference": "spleen", "answer_type": "OPEN", "group": "c", "source": "classifier"},
    ]
    m = vqa_scores(recs, n_resamples=200)
    assert m["overall_accuracy"] == 0.5 and m["closed_accuracy"] == 0.5 and m["open_exact_match"] == 0.5
    assert m["n_images"] == 3
    lo, hi = m["ci"]["overall_accuracy"]
    assert 0.0 <= lo <= 0.5 <= hi <= 1.0
    assert m["routing"] == {"decoder_fraction": 0.25, "decoder_accuracy": 1.0, "classifier_accuracy": 1 / 3}
    recs[2]["classifier_prediction"] = "right lung"
    for r in recs[:2] + recs[3:]:
        r["classifier_prediction"] = r["prediction"]
    assert vqa_scores(recs, n_resamples=0)["routing"]["open_classifier_only_exact_match"] == 0.0
