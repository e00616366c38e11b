"""medmm.knowledge.kg: triplet store, entity matching, retrieval, verbalisation, SLAKE reader."""

from __future__ import annotations

import pytest

from medmm.errors import BadInputError
from medmm.knowledge.kg import KnowledgeGraph, Triplet, normalise_text
from tests.conftest import shared_dataset

TRIPLETS = [
    ("Lung", "function", "breathe"),
    ("Lung", "description", "a pair of spongy organs in the chest that exchange oxygen and carbon dioxide with blood"),
    ("Lung", "belong to", "Respiratory System"),
    ("Lung Cancer", "location", "Lung"),
    ("Lung Cancer", "symptom", "cough, chest pain"),
    ("Heart", "alias", "cardiac muscle"),
    ("Heart", "function", "promote blood flow"),
    ("Brain", "function", "thinking"),
]


def kg() -> KnowledgeGraph:
    return KnowledgeGraph(TRIPLETS, max_tail_words=5)


def test_normalise_text_lower_punct_plural():
    assert normalise_text("The LUNGS, kidneys!") == ["the", "lung", "kidney"]
    # -ss / -us / -is endings are not plurals
    assert normalise_text("mass uterus pelvis") == ["mass", "uterus", "pelvis"]


def test_longest_match_wins_and_spans_do_not_overlap():
    assert kg().match_entities("Is there lung cancer in the left lung?") == ["Lung Cancer", "Lung"]
    assert kg().match_entities("Are the lungs clear?") == ["Lung"]
    assert kg().match_entities("Is this a fracture?") == []


def test_alias_points_to_its_head():
    g = kg()
    assert g.match_entities("Is the cardiac muscle thickened?") == ["Heart"]
    assert Triplet("Heart", "function", "promote blood flow") in g.retrieve("cardiac muscle", k=5)


def test_retrieve_ranks_by_relation_and_round_robins_entities():
    g = kg()
    facts = g.retrieve("lung cancer and brain", k=2)
    # one fact from each matched entity first; 'location' ranks above 'symptom'
    assert facts == [Triplet("Lung Cancer", "location", "Lung"), Triplet("Brain", "function", "thinking")]
    lung = g.retrieve("lung", k=3)
    assert [t.relation for t in lung] == ["function", "belong to", "description"]
    assert g.retrieve("nothing known here", k=3) == []


def test_verbalise_and_knowledge_text():
    g = kg()
    assert g.verbalise(Triplet("Lung", "function", "breathe")) == "lung - function - breathe"
    long = g.verbalise(Triplet(*TRIPLETS[1]))
    assert long == "lung - description - a pair of spongy organs"  # cut to 5 tail words
    assert g.knowledge_text("brain?", k=1) == "brain - function - thinking"
    assert g.knowledge_text("no entity", k=3) == ""


def test_bad_triplet_rejected():
    with pytest.raises(ValueError, match="triplet 0"):
        KnowledgeGraph([("a", "b")])


def test_to_list_round_trip():
    g = kg()
    assert KnowledgeGraph(g.to_list(), max_tail_words=5).retrieve("lung", 3) == g.retrieve("lung", 3)


def test_missing_folder_and_bad_file(tmp_path):
    with pytest.raises(BadInputError, match="not found"):
        KnowledgeGraph.from_slake(tmp_path / "nope")
    kgdir = tmp_path / "KG"
    kgdir.mkdir()
    for name in ("en_disease.csv", "en_organ.csv", "en_organ_rel.csv"):
        (kgdir / name).write_text("organ#attribute#value\nLung#function#breathe\n", encoding="utf-8")
    assert len(KnowledgeGraph.from_slake(tmp_path)) == 3
    (kgdir / "en_organ.csv").write_text("organ#attribute#value\nLung#function\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="en_organ.csv"):
        KnowledgeGraph.from_slake(tmp_path)


def test_slake_kg_real():
    root = shared_dataset("slake")
    g = KnowledgeGraph.from_slake(root)
    assert len(g) == 2600
    assert g.match_entities("Is there evidence of pneumonia in the lungs?") == ["Pneumonia", "Lung"]
    facts = g.retrieve("Which organ is abnormal, the liver or the kidney?", k=4)
    assert {t.head for t in facts} == {"Liver", "Kidney"}
    assert g.knowledge_text("Is the lung healthy?", k=1) == "lung - function - breathe"
