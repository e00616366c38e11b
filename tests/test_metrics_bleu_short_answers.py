"""docs/metrics.md explains why open BLEU-4 can exceed BLEU-1 on short VQA answers; these are its
worked examples (Lin & Och add-one smoothing gives an order an answer is too short for p_n = 1)."""

import pytest

from medmm.metrics.vqa import sentence_bleu


def test_the_documented_short_answer_examples():
    assert sentence_bleu("left lung", "right lung", 1) == pytest.approx(0.5)
    assert sentence_bleu("left lung", "right lung", 4) == pytest.approx(0.5 ** 0.5)  # (0.5 * 0.5 * 1 * 1) ** 0.25
    assert sentence_bleu("right lower lobe", "right upper lobe", 1) == pytest.approx(2 / 3)
    assert sentence_bleu("right lower lobe", "right upper lobe", 4) == pytest.approx((2 / 3 * 1 / 3 * 1 / 2 * 1) ** 0.25)
    assert sentence_bleu("yes", "yes", 4) == 1.0
