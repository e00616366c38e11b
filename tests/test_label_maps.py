"""Harmonised label vocabulary, label-word masking and label maps between datasets."""

from __future__ import annotations

import pytest

from medmm.data import label_maps as lm
from medmm.errors import MedmmError


def test_canonical_uses_overrides_then_vocabulary():
    assert lm.canonical("other pneumonia", "covid_cxr", "finding_group") == "Pneumonia"
    assert lm.canonical("unknown", "covid_cxr", "finding_group") is None
    assert lm.canonical("SARS-CoV-2") == "COVID-19"
    assert lm.canonical("pneumonia") == "Pneumonia"
    assert lm.canonical("normal, benign", "breastmnist", "label") == "Benign or Normal"
    assert lm.canonical("not a class") is None


def test_label_words_include_synonyms_but_not_stopwords():
    words = lm.label_words(["COVID-19", "no finding", "other", "other pneumonia"])
    assert "covid-19" in words and "coronavirus" in words and "sars-cov-2" in words
    assert "pneumonia" in words and "other pneumonia" in words and "no finding" in words
    # alone these words name no class; masking them would hide negations and common words
    assert "no" not in words and "other" not in words and "normal" not in words
    assert words == sorted(words, key=lambda s: (-len(s), s))  # phrases before their parts


def test_mask_words_whole_words_case_insensitive_flexible_hyphens():
    words = lm.label_words(["COVID-19", "other pneumonia"])
    text = "Covid 19 pneumonia; COVID-19 confirmed. Pneumonitis? discovid stays. other  pneumonia."
    out = lm.mask_words(text, words)
    assert "covid" not in out.lower().replace("discovid", "")
    assert "discovid" in out  # not a whole word
    assert "pneumonia" not in out.lower() and "pneumonitis" not in out.lower()
    assert out.count("[MASK]") >= 4
    assert lm.mask_words("", words) == ""
    assert lm.mask_words("keep me", []) == "keep me"


def test_covid_to_pneumoniamnist_projection_sums_and_renormalises():
    m = lm.get_label_map("covid_cxr_to_pneumoniamnist")
    classes = ["COVID-19", "no finding", "other", "other pneumonia"]
    probs = [[0.5, 0.2, 0.2, 0.1], [0.0, 0.0, 1.0, 0.0]]
    out = m.project_probs(classes, probs)
    assert m.target_classes == ("normal", "pneumonia")
    assert out[0] == pytest.approx([0.2 / 0.8, 0.6 / 0.8])
    assert out[1] == pytest.approx([0.5, 0.5])  # all mass on an unmapped class: uninformative
    d = m.describe()
    assert d["mapping"]["other"] is None and d["target"] == ["pneumoniamnist", "label"]


def test_project_probs_rejects_uncovered_classes():
    m = lm.get_label_map("covid_cxr_to_pneumoniamnist")
    with pytest.raises(MedmmError, match="no entry"):
        m.project_probs(["COVID-19", "tuberculosis"], [[0.5, 0.5]])


def test_find_label_map_and_errors():
    assert lm.find_label_map(("covid_cxr", "finding_group"), "pneumoniamnist_trainsubset").name == (
        "covid_cxr_to_pneumoniamnist_trainsubset"
    )
    with pytest.raises(MedmmError, match="no label map"):
        lm.find_label_map(("covid_cxr", "finding_group"), "breastmnist")
    with pytest.raises(MedmmError, match="unknown label map"):
        lm.get_label_map("nope")
    with pytest.raises(MedmmError, match="not in target classes"):
        lm.LabelMap("bad", ("a", "t"), ("pneumoniamnist", "label"), {"x": "cat"})


def test_reference_projection_for_derived_space():
    m = lm.get_label_map("pneumoniamnist_to_covid_cxr")
    key, table = lm.reference_projection(m.target)
    assert key == "finding_group" and table["COVID-19"] == "pneumonia" and table["unknown"] is None


def test_derive_label_map_through_vocabulary():
    m = lm.derive_label_map("d", ("covid_cxr", "finding_group"), ["COVID-19", "no finding", "other pneumonia"],
                            ("x", "y"), ["Normal", "Pneumonia"])
    assert m.mapping == {"COVID-19": None, "no finding": "Normal", "other pneumonia": "Pneumonia"}
