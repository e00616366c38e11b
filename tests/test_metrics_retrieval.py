import numpy as np
import pytest

from medmm.metrics.retrieval import cosine_similarity, ranks, retrieval_metrics


def test_perfect_and_known_ranks():
    s = np.array([[0.9, 0.1, 0.0], [0.8, 0.5, 0.1], [0.0, 0.2, 0.3]])
    assert ranks(s).tolist() == [1, 2, 1]
    m = retrieval_metrics(s)
    assert m["image_to_text"]["R@1"] == pytest.approx(200 / 3)
    assert m["image_to_text"]["mrr"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert ranks(s.T).tolist() == [1, 1, 1]


def test_ties_are_pessimistic():
    s = np.ones((5, 5))
    assert ranks(s).tolist() == [5] * 5
    assert retrieval_metrics(s)["text_to_image"]["R@1"] == 0.0


def test_multiple_relevant_and_non_square():
    s = np.array([[0.1, 0.9, 0.5], [0.7, 0.2, 0.3]])
    rel = np.array([[True, False, True], [False, True, False]])
    assert ranks(s, rel).tolist() == [2, 3]
    with pytest.raises(ValueError):
        retrieval_metrics(s)  # non-square needs a relevance matrix


def test_cosine_and_bad_input():
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert np.allclose(cosine_similarity(a, a), np.eye(2))
    with pytest.raises(ValueError):
        cosine_similarity(a, np.zeros((1, 2)))
    with pytest.raises(ValueError):
        retrieval_metrics(np.array([[np.nan]]))
