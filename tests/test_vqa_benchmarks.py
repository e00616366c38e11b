"""The VQA benchmark scripts' building blocks: baselines of vqa_rad_heldout.py and the image
encoder pretraining of vqa_pretrain_image.py (tiny inputs; the real runs are in benchmarks/)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medmm.data import load_dataset
from medmm.data.bundled import vqa_rad_sample_root

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


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
    assert all(r["group"] == s.group("image") for r, s in zip(recs, test))


def test_nearest_neighbour_baseline_copies_a_same_image_answer(samples):
    torch.set_num_threads(1)
    h = load("vqa_rad_heldout")
    train = samples[:300]
    # a held-out question identical to a training question on the same image gets its answer
    recs = h.nearest_neighbour_records(train, train[:12])
    from medmm.tasks.vqa import normalise_vqa_answer

    hits = sum(r["prediction"] == normalise_vqa_answer(s.text["answer"]) for r, s in zip(recs, train[:12]))
    assert hits >= 11  # 12 unless an identical question on the same image has another answer


def test_pretraining_pieces():
    p = load("vqa_pretrain_image")
    rows = [{"modality": m, "plane": None, "location": "Thorax"} for m in ["CT"] * 12 + ["MR"] * 3]
    assert p.label_space(rows, "modality", 10) == ["CT"] and p.label_space(rows, "plane", 1) == []
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (5, 40, 40), dtype=np.uint8)
    parts = list(p.batches(pixels, np.arange(5), 32, True, rng, 2))
    assert [len(i) for i, _ in parts] == [2, 2, 1] and parts[0][1].shape == (2, 1, 32, 32)
    _, centre = next(p.batches(pixels, np.arange(1), 32, False, rng, 1))
    want = (pixels[0, 4:36, 4:36].astype(np.float32) / 255.0 - 0.5) / 0.25
    assert np.allclose(centre[0, 0].numpy(), want, atol=1e-6)
    from medmm.models import create_image_encoder

    enc = create_image_encoder("small_cnn", in_channels=1, image_size=32, widths=[8, 16])
    model = p.Pretrainer(enc, {"modality": 2, "location": 3}, 6)
    logits, emb = model(parts[0][1])
    assert logits["modality"].shape == (2, 2) and emb.shape == (2, 6)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
