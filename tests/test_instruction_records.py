"""What each task's instruction records say (the shape itself is checked for every task in
test_every_task.py): the question and answer, the report, the class with its words masked."""

from __future__ import annotations

import numpy as np
import pytest

from medmm.data import load_dataset
from medmm.data.bundled import vqa_rad_sample_root
from medmm.data.schema import ImageRef, Sample
from medmm.errors import BadInputError, MedmmError
from medmm.tasks.chat import chat_record


@pytest.fixture(scope="module")
def vqa_samples() -> list[Sample]:
    samples = load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples
    return [next(s for s in samples if s.targets["organ"] == organ) for organ in ("HEAD", "ABD")] + samples[:4]


def test_vqa_records_are_question_and_answer(vqa_samples) -> None:
    from medmm.tasks.vqa.task import VQATask

    recs = VQATask.from_config({"text": {"encoder": "scratch"}, "image": {"encoder": "small_cnn"}}).instruction_records(vqa_samples)
    for rec, s in zip(recs, vqa_samples, strict=True):
        user, answer = rec["messages"][1]["content"], rec["messages"][2]["content"]
        assert (user, answer) == (s.text["question"].strip(), s.text["answer"].strip())
        assert rec["image"] == s.images[0].path


def test_diagnosis_records_name_the_classes_and_mask_the_label_words(vqa_samples) -> None:
    from medmm.tasks.diagnosis.task import DiagnosisTask

    task = DiagnosisTask.from_config({"target": "organ", "text": {"field": "question", "mask_label_words": True}})
    s = Sample("x", "synthetic", "train", images=[ImageRef(path="x.png")], text={"question": "Is the chest normal?"},
               targets={"organ": "CHEST"})
    recs = task.instruction_records([*vqa_samples, s])
    classes = sorted({v.targets["organ"] for v in [*vqa_samples, s]})
    last = recs[-1]["messages"]
    text, question = last[1]["content"].split("\n")
    assert last[2]["content"] == "CHEST" and text == "Is the [MASK] normal?"  # the leakage guard of training
    assert len(classes) > 1 and question == f"Which organ is it: {', '.join(classes[:-1])} or {classes[-1]}?"
    unlabelled = Sample("u", "synthetic", "train", images=[ImageRef(path="u.png")], text={"question": "q"})
    assert task.instruction_records([unlabelled]) == []  # left out, as training leaves it out of the loss
    with pytest.raises(MedmmError, match="multi-label"):
        DiagnosisTask.from_config({"findings": []}).instruction_records([s])


def test_report_and_retrieval_records_reply_with_the_text(tmp_path) -> None:
    from pathlib import Path

    from medmm.tasks.report.task import ReportGenerationTask
    from medmm.tasks.retrieval.task import RetrievalTask

    studies = load_dataset("iu_xray", Path(__file__).parent / "fixtures" / "iu_xray_tiny", "train").samples[:3]
    recs = ReportGenerationTask.from_config({"text_field": "report"}).instruction_records(studies)
    assert [r["messages"][2]["content"] for r in recs] == [s.text["report"] for s in studies]
    assert recs[0]["messages"][1]["content"] == "Write the radiology report for this image."
    cap = Sample("c", "synthetic", "train", images=[ImageRef(path="c.png")], text={"question": "What organ?", "answer": "lung"})
    task = RetrievalTask.from_config({"text_encoder": "scratch", "text_field": ["question", "answer"]})
    assert task.instruction_records([cap])[0]["messages"][2]["content"] == "What organ? lung"


def test_an_in_memory_image_or_a_missing_reply_is_an_error() -> None:
    s = Sample("m", "synthetic", "train", images=[ImageRef(array=np.zeros((4, 4)))], text={"question": "q", "answer": "a"})
    with pytest.raises(BadInputError, match="in-memory"):
        chat_record(s, "sys", "q", "a")
    s = Sample("n", "synthetic", "train", text={"question": "q"})
    assert chat_record(s, "sys", "q", "a")["image"] is None  # a text-only sample references no image
    with pytest.raises(BadInputError, match="assistant"):
        chat_record(s, "sys", "q", " ")
