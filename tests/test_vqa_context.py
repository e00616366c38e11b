"""Learned same-image context: pointer/gate arithmetic, paraphrase exclusion in training, task use."""

from __future__ import annotations

import json

import pytest
import torch

from medmm.data import load_dataset
from medmm.data.bundled import vqa_rad_sample_root
from medmm.tasks.vqa import VQATask
from medmm.tasks.vqa_context import SameImageContext, mix_with_pointer
from medmm.tasks.vqa_memory import AnswerMemory
from tests.test_vqa import TINY

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_no_entries_means_no_context_and_zero_gate():
    torch.manual_seed(0)
    ctx = SameImageContext(text_dim=4, n_answers=3, fused_dim=5, dim=8)
    entries = torch.randn(2, 2, 4)
    answers = torch.tensor([[0, 2], [-1, -1]])
    mask = torch.tensor([[True, True], [False, False]])
    extra, pointer, gate, weights = ctx(torch.randn(2, 4), entries, answers, mask, torch.randn(2, 5))
    assert torch.all(extra[1] == 0) and gate[1, 0] == 0 and torch.all(pointer[1] == 0) and torch.all(weights[1] == 0)
    assert torch.isclose(pointer[0].sum(), torch.tensor(1.0)) and pointer[0, 1] == 0  # only answers 0 and 2 voted
    assert 0 < gate[0, 0] < 1
    # an empty batch-wide entry list is allowed (image-disjoint splits)
    e, p, g, w = ctx(torch.randn(2, 4), torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0, dtype=torch.bool), torch.randn(2, 5))
    assert torch.all(e == 0) and torch.all(g == 0) and w.shape == (2, 0)


def test_pointer_mass_on_disallowed_answers_goes_back_to_the_classifier():
    probs = torch.tensor([[0.5, 0.5, 0.0]])
    pointer = torch.tensor([[0.0, 0.25, 0.75]])  # 0.75 on an answer this question cannot take
    allowed = torch.tensor([[True, True, False]])
    mixed = mix_with_pointer(probs, pointer, torch.tensor([[1.0]]), allowed)
    assert torch.allclose(mixed, torch.tensor([[0.375, 0.625, 0.0]]))
    assert torch.allclose(mix_with_pointer(probs, pointer, torch.zeros(1, 1), allowed), probs)


def test_entries_exclude_the_question_group():
    mem = AnswerMemory(["a", "a", "a", "b"], [0, 1, -1, 2], ["q0", "q0 again", "q1", "q2"], dim=2, groups=["g0", "g0", "g1", "g2"])
    mem.set_embeddings(torch.eye(2)[[0, 0, 1, 1]])
    emb, ans, mask, rows = mem.entries(["a", "a", "zzz"], ["g0", "other", "g9"])
    assert rows == [[2], [0, 1, 2], []]
    assert ans[0].tolist() == [-1, -1, -1] and mask[0].tolist() == [True, False, False]
    assert ans[1].tolist() == [0, 1, -1] and not mask[2].any()
    assert AnswerMemory.from_state(json.loads(json.dumps(mem.state()))).groups == mem.groups


def test_training_never_sees_a_question_s_own_paraphrases():
    samples = load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples[:200]
    kw = {**TINY, "text_encoder": "minilm", "text_encoder_kwargs": {}, "freeze_text": True, "freeze_image": True,
          "context": True, "rationale": True}
    torch.manual_seed(0)
    task = VQATask.from_config(kw)
    task.setup(samples)
    batch = task.collate(samples[:32])
    seen: dict[bool, list] = {}
    original = task.memory.entries

    def spy(keys, exclude_groups=None, max_entries=32):
        out = original(keys, exclude_groups, max_entries)
        seen[exclude_groups is not None] = out[3]
        return out

    task.memory.entries = spy
    task.train()
    task.training_step(batch)["loss"].backward()
    assert task.image_context.query.weight.grad is not None
    task.eval()
    recs = task.evaluation_step(batch)
    groups = task.memory.groups
    for b, s in enumerate(samples[:32]):
        own = s.group("question")
        assert all(groups[i] != own for i in seen[True][b])  # training: own group excluded
        assert any(groups[i] == own for i in seen[False][b])  # inference: everything on the image
    assert all(r["rationale"]["memory_match"]["n_same_image"] >= 1 for r in recs)
    # state round trip: a reloaded run answers the same
    other = VQATask.from_config(kw)
    other.load_state(json.loads(json.dumps(task.state())))
    other.load_state_dict(task.state_dict(), strict=True)
    again = other.eval().evaluation_step(other.collate(samples[:32]))
    assert [r["prediction"] for r in again] == [r["prediction"] for r in recs]
