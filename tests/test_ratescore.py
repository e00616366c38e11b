"""RaTEScore's exact part (torch-free): type-weighted matching, negation penalty, F1, BIO decoding, sentences."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medmm.metrics.model_based.ratescore import TYPES, corpus_score, directional, load_affinity, report_score
from medmm.metrics.model_based.ratescore_text import decode_bio, split_sentences


@pytest.fixture()
def simple(tmp_path):
    """Weights 1 everywhere except 2 for an ANATOMY entity; negation penalty 0.5."""
    w = {f"{a.lower()}_{b.lower()}": (2.0 if a == "ANATOMY" else 1.0) for a in TYPES for b in TYPES}
    path = tmp_path / "aff.json"
    path.write_text(json.dumps({**w, "neg_weight": 0.5}))
    return load_affinity(str(path))


def test_hand_computed_case(simple):
    hyp = np.array([[1, 0], [0, 1], [0.8, 0.6]])
    hyp_t = ["DISEASE", "ANATOMY", "ABNORMALITY"]
    ref = np.array([[1, 0], [3, 4]])  # the second is (0.6, 0.8) once normalised
    ref_t = ["NON-DISEASE", "ANATOMY"]
    # generated -> reference: h1 ~ r1 cos 1, negated pair, w 1 -> 0.5; h2 ~ r2 cos 0.8, w 2 -> 1.6;
    # h3 ~ r2 cos 0.96 (vs 0.8 with r1), w 1 -> 0.96: P = 3.06 / 4
    p = directional(hyp, hyp_t, ref, ref_t, simple)
    assert p == pytest.approx(3.06 / 4)
    # reference -> generated: r1 ~ h1 cos 1 (h3: 0.8), negated, w 1 -> 0.5; r2 ~ h3 cos 0.96, w 2 -> 1.92: R = 2.42 / 3
    r = directional(ref, ref_t, hyp, hyp_t, simple)
    assert r == pytest.approx(2.42 / 3)
    assert report_score(hyp, hyp_t, ref, ref_t, simple) == pytest.approx(2 * p * r / (p + r))


def test_published_long_matrix_weights_and_negation():
    long = load_affinity()
    assert long.name == "long" and long.neg_weight == pytest.approx(0.8716553966489615)
    # one entity each side: the weight cancels, the negation penalty does not
    s = report_score(np.array([[1.0, 0.0]]), ["DISEASE"], np.array([[0.6, 0.8]]), ["NON-DISEASE"], long)
    assert s == pytest.approx(0.6 * 0.8716553966489615)
    # R = W[DIS,DIS]·1 / (W[DIS,DIS] + W[ANAT,DIS]) with the unmatched anatomy (cos 0); P = 1
    w_dd, w_ad = 0.8460555030578727, 0.4592143222158069
    s = report_score(np.array([[1.0, 0.0]]), ["DISEASE"], np.array([[1.0, 0.0], [0.0, 1.0]]), ["DISEASE", "ANATOMY"],
                     long)
    rec = w_dd / (w_dd + w_ad)
    assert s == pytest.approx(2 * rec / (1 + rec))
    assert load_affinity("short").weight("ABNORMALITY", "NON-ABNORMALITY") == pytest.approx(0.9479148658006686)


def test_empty_and_zero_cases():
    long = load_affinity("long")
    one, none = np.array([[1.0, 0.0]]), np.zeros((0, 2))
    assert report_score(none, [], one, ["ANATOMY"], long) == 0.5
    assert report_score(one, ["ANATOMY"], none, [], long) == 0.5
    assert report_score(none, [], none, [], long) == 0.5
    assert report_score(one, ["ANATOMY"], np.array([[0.0, 2.0]]), ["ANATOMY"], long) == 0.0  # orthogonal: P + R = 0
    assert report_score(one, ["ANATOMY"], one, ["ANATOMY"], long) == pytest.approx(1.0)
    assert corpus_score([0.5, 1.0, 0.0]) == {"mean": pytest.approx(0.5), "n": 3}


def test_bad_affinity_and_types_are_errors(tmp_path):
    with pytest.raises(ValueError, match="no weight for type pair"):
        report_score(np.ones((1, 2)), ["FINDING"], np.ones((1, 2)), ["ANATOMY"], load_affinity())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"anatomy_anatomy": 1.0}))
    with pytest.raises(ValueError, match="neg_weight"):
        load_affinity(str(bad))
    with pytest.raises(ValueError, match="not 'long', 'short'"):
        load_affinity(str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="one type per entity"):
        report_score(np.ones((2, 2)), ["ANATOMY"], np.ones((1, 2)), ["ANATOMY"], load_affinity())


def test_decode_bio():
    labels = ["O", "B-ANATOMY", "I-ANATOMY", "B-DISEASE", "O", "I-ABNORMALITY", "I-ABNORMALITY", "B-NON-DISEASE",
              "B-ANATOMY", "I-ANATOMY"]
    assert decode_bio(labels) == [(1, 2, "ANATOMY"), (3, 3, "DISEASE"), (7, 7, "NON-DISEASE"), (8, 9, "ANATOMY")]
    assert decode_bio([]) == [] and decode_bio(["I-ANATOMY", "O"]) == []


def test_split_sentences():
    text = "No effusion.  Heart normal!\nOK\nLungs: clear. a.  \n\n"
    assert split_sentences(text) == ["No effusion.", "Heart normal!", "Lungs: clear."]
    assert split_sentences("") == []
