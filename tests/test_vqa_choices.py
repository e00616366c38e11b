"""VQA choice questions: which answers a question offers, the restriction of the answer
distribution to them, and the task answering (and training) with the option mask."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medmm.data import load_dataset
from medmm.data.bundled import vqa_rad_sample_root
from medmm.tasks.vqa.choices import ChoiceOptions, choice_options, question_tokens, restrict_to_options
from medmm.tasks.vqa.task import VQATask
from tests.conftest import merged

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ANSWERS = ["appendix", "contrast", "flair", "left", "no", "no contrast", "normal", "right", "t1 weighted",
           "t2 weighted", "with contrast", "yes"]


def offered(question: str) -> list[str]:
    return [ANSWERS[i] for i in choice_options(question, ANSWERS)]


def test_options_are_vocabulary_answers_next_to_a_connector():
    assert offered("Is the trachea deviated to the right or left?") == ["left", "right"]
    assert offered("Is this a T1 weighted, T2 weighted, or FLAIR image?") == ["flair", "t1 weighted", "t2 weighted"]
    assert offered("Does this CT have contrast or no contrast?") == ["contrast", "no contrast"]
    assert offered("Right vs. left?") == ["left", "right"]
    # the subject of the question is not an option; "normal" is a whole word, not part of "abnormal"
    assert offered("Does the appendix appear normal or abnormal?") == ["normal"]
    assert offered("Is the appendix abnormal or inflamed?") == []


def test_questions_without_alternatives_have_no_options():
    assert offered("Is the appendix normal?") == []
    assert offered("Is there a fracture or dislocation?") == []  # no vocabulary answer named
    assert offered("Is the left lung normal, or is it collapsed?") == ["normal"]
    assert choice_options("Is it yes or no?", ANSWERS) == []  # yes/no are never options
    assert question_tokens("T1, T2, or FLAIR?") == ["t1", ",", "t2", ",", "or", "flair"]


def test_mask_is_cached_per_question():
    choices = ChoiceOptions(ANSWERS)
    mask = choices.mask(["Left or right?", "Is it normal?", "Left or right?"])
    assert mask.shape == (3, len(ANSWERS)) and mask.dtype == torch.bool
    assert mask[0].nonzero().flatten().tolist() == [ANSWERS.index("left"), ANSWERS.index("right")]
    assert not mask[1].any() and torch.equal(mask[0], mask[2])
    assert len(choices._cache) == 2


def test_restrict_renormalises_over_options_only():
    probs = torch.tensor([[0.5, 0.2, 0.3], [0.5, 0.2, 0.3], [0.0, 0.0, 1.0]])
    options = torch.tensor([[False, True, True], [False, False, False], [True, True, False]])
    out = restrict_to_options(probs, options)
    assert torch.allclose(out[0], torch.tensor([0.0, 0.4, 0.6]))
    assert torch.equal(out[1], probs[1])  # not a choice question: unchanged
    assert torch.allclose(out[2], torch.tensor([0.5, 0.5, 0.0]))  # no mass on the options: uniform over them


@pytest.fixture(scope="module")
def samples():
    return load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples


def _task(samples, **kw) -> VQATask:
    torch.manual_seed(0)
    task = VQATask.from_config(merged({
        "image": {"encoder": "small_cnn", "encoder_kwargs": {"in_channels": 1, "image_size": 32, "widths": [8, 16]}},
        "text": {"encoder": "scratch", "max_length": 64,
                 "encoder_kwargs": {"vocab_size": 600, "dim": 32, "num_layers": 1, "num_heads": 2, "max_length": 64}},
        "fusion": "gated", "dim": 32, "decoder": {"layers": 1, "heads": 2},
        "bootstrap_resamples": 0, "classifier": {"masked_loss": True}, "rationale": True}, **kw))
    task.setup(samples)
    return task


def test_task_answers_choice_questions_with_an_offered_option(samples):
    task = _task(samples, classifier={"choice_options": True}, open_confidence=1.0).eval()
    choice = [s for s in samples if choice_options(s.text["question"], task.answers)]
    plain = [s for s in samples if not choice_options(s.text["question"], task.answers)][:20]
    assert len(choice) >= 10  # the bundled sample has choice questions
    records = task.evaluation_step(task.collate(choice + plain))
    for s, r in zip(choice, records, strict=False):
        options = [task.answers[i] for i in choice_options(s.text["question"], task.answers)]
        assert r["prediction"] in options and r["source"] == "classifier"  # never the decoder, never yes/no
        assert r["rationale"]["options"] == options
    assert all("options" not in r["rationale"] for r in records[len(choice):])
    # the same trained weights without the mask: some choice question gets an answer it did not offer
    task.config.classifier.choice_options = False
    before = task.evaluation_step(task.collate(choice))
    assert any(r["prediction"] not in (r2["rationale"].get("options") or []) for r, r2 in zip(before, records, strict=False))
    assert task.collate(choice)["choice_options"] is None


def test_training_loss_of_a_choice_question_competes_among_its_options(samples, monkeypatch):
    task = _task(samples, classifier={"choice_options": True}, answer_head="classifier")
    from medmm.tasks.vqa.answers import normalise_vqa_answer

    choice = [s for s in samples if normalise_vqa_answer(s.text["answer"]) in
              [task.answers[i] for i in choice_options(s.text["question"], task.answers)]][:6]
    batch = task.collate(choice)
    logits = torch.randn(len(choice), len(task.answers))
    monkeypatch.setattr(task, "answer_logits", lambda fused: logits)
    out = task.training_step(batch)
    options = batch["choice_options"]
    expected = F.cross_entropy(logits.masked_fill(~options, -1e9), batch["labels"])
    assert torch.allclose(out["loss_classifier"], expected, atol=1e-5)
    task.config.classifier.choice_options = False  # without the mask the loss competes among all closed/open answers
    assert not torch.allclose(task.training_step(task.collate(choice))["loss_classifier"], expected, atol=1e-3)
