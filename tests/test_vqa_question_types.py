"""VQA question-type mask: types and compatible answers from training, the soft mask, the task's
type head (trained, saved, shown in the rationale) and the clear error without annotations."""

from __future__ import annotations

import json

import pytest
import torch

from medmm.data import load_dataset
from medmm.data.bundled import vqa_rad_sample_root
from medmm.data.schema import Sample
from medmm.errors import MedmmError
from medmm.tasks.vqa.question_types import QuestionTypes, annotated_types, mask_by_question_type
from medmm.tasks.vqa.task import VQATask
from tests.conftest import merged

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _qa(i: int, qtype: str | None, answer: str) -> Sample:
    return Sample(id=str(i), dataset="vqa_rad", split="train", text={"question": "q?", "answer": answer},
                  meta={"question_type": qtype} if qtype else {})


def test_types_and_compatible_answers_come_from_training():
    samples = [_qa(i, "MODALITY", "CT") for i in range(5)] + [_qa(10 + i, "POS, PRES", "left lung") for i in range(5)]
    samples += [_qa(20, "COLOR", "white"), _qa(21, None, "ct")]
    index = {"ct": 0, "left lung": 1, "white": 2}
    qt = QuestionTypes.fit(samples, index)
    assert qt.types == ["MODALITY", "POS", "PRES"]  # COLOR seen once: dropped (min_count 5)
    assert qt.compatible == [[0], [1], [1]]
    assert annotated_types(samples[5]) == ["POS", "PRES"] and annotated_types(samples[-1]) == []
    assert qt.labels(samples[4:6] + samples[-2:]).tolist() == [0, 1, -100, -100]
    assert qt.compatibility(3).tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 0]]
    again = QuestionTypes.from_state(json.loads(json.dumps(qt.state())))
    assert again.types == qt.types and again.compatible == qt.compatible
    assert QuestionTypes.fit([_qa(i, "PRES", "yes") for i in range(9)], {"yes": 0}) is None  # one type: nothing to mask


def test_mask_moves_mass_to_answers_of_the_predicted_type():
    probs = torch.tensor([[0.6, 0.3, 0.1]])
    compat = torch.tensor([[1.0, 0, 0], [0, 1.0, 1.0]])
    sure_second = torch.tensor([[-20.0, 20.0]])
    out = mask_by_question_type(probs, sure_second, compat)
    assert out[0, 0] < 1e-6 and torch.allclose(out[0, 1:], torch.tensor([0.75, 0.25]), atol=1e-5)
    unsure = mask_by_question_type(probs, torch.zeros(1, 2), compat)  # 50/50 type: every answer kept at half weight
    assert torch.allclose(unsure, probs, atol=1e-6)
    nothing = mask_by_question_type(torch.tensor([[1.0, 0, 0]]), sure_second, compat)
    assert torch.allclose(nothing, torch.tensor([[1.0, 0, 0]]))  # all mass removed: left unchanged


def _task(**kw) -> VQATask:
    torch.manual_seed(0)
    return VQATask.from_config(merged({
        "image": {"encoder": "small_cnn", "encoder_kwargs": {"in_channels": 1, "image_size": 32, "widths": [8, 16]}},
        "text": {"encoder": "scratch", "max_length": 64,
                 "encoder_kwargs": {"vocab_size": 600, "dim": 32, "num_layers": 1, "num_heads": 2, "max_length": 64}},
        "fusion": "gated", "dim": 32, "decoder": {"layers": 1, "heads": 2},
        "bootstrap_resamples": 0, "classifier": {"question_type_mask": True}, "rationale": True}, **kw))


def test_task_learns_the_type_head_and_restores_it():
    samples = load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples[:80]
    task = _task()
    task.setup(samples)
    batch = task.collate(samples[:32])
    opt = torch.optim.Adam(task.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        out = task.training_step(batch)
        first = first if first is not None else float(out["loss_question_type"])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert float(out["loss_question_type"]) < 0.5 * first
    task.eval()
    records = task.evaluation_step(batch)
    assert all(r["rationale"]["question_type"] in task.question_types.types for r in records)

    loaded = _task()
    loaded.load_state(json.loads(json.dumps(task.state())))
    loaded.load_state_dict(task.state_dict())
    loaded.eval()
    assert [r["prediction"] for r in loaded.evaluation_step(loaded.collate(samples[:32]))] == [r["prediction"] for r in records]


def test_mask_without_type_annotations_is_a_clear_error():
    samples = load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples[:20]
    for s in samples:
        s.meta.pop("question_type", None)
        s.targets.pop("content_type", None)
    with pytest.raises(MedmmError, match="question-type annotations"):
        _task().setup(samples)
