"""The VQA benchmark scripts' building blocks: baselines of vqa_rad_heldout.py (tiny inputs; the
real runs are in benchmarks/). Image-encoder pretraining is tested in test_image_pretrain.py."""

from __future__ import annotations

import pytest
import torch

from medmm.data import load_dataset
from medmm.data.bundled import vqa_rad_sample_root
from tests.conftest import load_benchmark as load


@pytest.fixture(scope="module")
def samples():
    return load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples


def test_majority_baseline_answers_the_most_frequent_answer_per_type(samples):
    h = load("vqa_rad_heldout")
    train, test = samples[:400], samples[400:]
    recs = h.majority_records(train, test)
    assert len(recs) == len(test) and {r["answer_type"] for r in recs} == {"CLOSED", "OPEN"}
    closed = {r["prediction"] for r in recs if r["answer_type"] == "CLOSED"}
    assert len(closed) == 1 and closed <= {"yes", "no"}
    assert all(r["group"] == s.group("image") for r, s in zip(recs, test, strict=True))


def test_nearest_neighbour_baseline_copies_a_same_image_answer(samples):
    torch.set_num_threads(1)
    h = load("vqa_rad_heldout")
    train = samples[:300]
    # a held-out question identical to a training question on the same image gets its answer
    recs = h.nearest_neighbour_records(train, train[:12])
    from medmm.tasks.vqa_answers import normalise_vqa_answer

    hits = sum(r["prediction"] == normalise_vqa_answer(s.text["answer"]) for r, s in zip(recs, train[:12], strict=True))
    assert hits >= 11  # 12 unless an identical question on the same image has another answer


def test_saved_predictions_read_back_as_a_run_folder(tmp_path):
    h, compare = load("vqa_rad_heldout"), load("vqa_resplit_compare")
    records = [{"id": "q1", "prediction": "yes", "reference": "yes", "answer_type": "CLOSED", "group": "img1"},
               {"id": "q2", "prediction": "liver", "reference": "spleen", "answer_type": "OPEN", "group": "img1"}]
    path = h.save_predictions(tmp_path / "run_memory_weight0", records)
    assert path == tmp_path / "run_memory_weight0" / "predictions" / "test.jsonl"
    back = compare.load_records(tmp_path / "run_memory_weight0")
    assert back == records
    assert compare.correct(back).tolist() == [1.0, 0.0]
