import pytest

from medmm.data.schema import LabelState
from medmm.metrics.clinical import binarise, clinical_efficacy, clinical_efficacy_from_text

P, N, U = LabelState.POSITIVE, LabelState.NEGATIVE, LabelState.UNCERTAIN


def test_binarise_options():
    assert binarise(U, "positive", "negative") == 1
    assert binarise(U, "negative", "negative") == 0
    assert binarise(U, "ignore", "negative") is None
    assert binarise(None, "ignore", "negative") == 0
    assert binarise(None, "ignore", "ignore") is None
    with pytest.raises(ValueError):
        binarise(P, "maybe", "negative")


def test_efficacy_counts_micro_macro():
    hyp = [{"Edema": P, "Cardiomegaly": P}, {"Edema": U}, {}]
    ref = [{"Edema": P}, {"Edema": P, "Cardiomegaly": P}, {"Cardiomegaly": N}]
    r = clinical_efficacy(hyp, ref, observations=["Edema", "Cardiomegaly"], uncertain="ignore")
    e, c = r["per_observation"]["Edema"], r["per_observation"]["Cardiomegaly"]
    assert (e["tp"], e["fp"], e["fn"], e["n_pairs"]) == (1, 0, 0, 2)  # uncertain pair ignored
    assert (c["tp"], c["fp"], c["fn"]) == (0, 1, 1)
    assert r["micro"]["f1"] == pytest.approx(2 * 1 / (2 + 1 + 1))
    assert r["macro"]["f1"] == pytest.approx((1.0 + 0.0) / 2)
    assert r["provenance"]["label_handling"]["uncertain"] == "ignore"
    r2 = clinical_efficacy(hyp, ref, observations=["Edema"], uncertain="positive")
    assert r2["per_observation"]["Edema"]["tp"] == 2


def test_undefined_f1_is_excluded_not_zero():
    r = clinical_efficacy([{}], [{}], observations="5")
    assert r["macro"]["f1"] is None and len(r["macro_excluded"]) == 5
    assert r["micro"]["f1"] is None


def test_from_text_and_id_mismatch():
    r = clinical_efficacy_from_text({"a": "Cardiomegaly.", "b": ""}, {"a": ["Enlarged heart."], "b": "Cardiomegaly."},
                                    observations="5")
    assert r["per_observation"]["Cardiomegaly"]["tp"] == 1 and r["per_observation"]["Cardiomegaly"]["fn"] == 1
    with pytest.raises(ValueError):
        clinical_efficacy_from_text({"a": "x"}, {"b": "y"})
    with pytest.raises(ValueError):
        clinical_efficacy([], [])
