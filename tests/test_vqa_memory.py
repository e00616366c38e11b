"""VQA answer memory: same-image matching, similarity weighting, state round trip, task use."""

from __future__ import annotations

import json

import pytest
import torch

from medmm.data import load_dataset
from medmm.data.bundled import vqa_rad_sample_root
from medmm.errors import MedmmError
from medmm.tasks.vqa.answers import normalise_vqa_answer
from medmm.tasks.vqa.memory import AnswerMemory, image_key
from medmm.tasks.vqa.task import VQATask
from tests.test_vqa import TINY

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def samples():
    return load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples


def test_memory_votes_only_for_the_same_image_weighted_by_similarity():
    mem = AnswerMemory(["a", "a", "b"], [0, 1, 2], ["q0", "q1", "q2"], dim=2)
    mem.set_embeddings(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))
    dist, best = mem.distribution(torch.tensor([[1.0, 0.1], [1.0, 0.0]]), ["a", "zzz"], 3, temperature=0.1)
    assert dist[1].sum() == 0 and best[1] is None  # unseen image: no vote
    assert torch.isclose(dist[0].sum(), torch.tensor(1.0)) and dist[0, 2] == 0  # image b never votes for a
    assert dist[0, 0] > 0.9 and best[0]["question"] == "q0" and best[0]["n_same_image"] == 2
    # answers outside the vocabulary (-1) are not voted for
    mem2 = AnswerMemory(["a"], [-1], ["q"], dim=2)
    assert mem2.distribution(torch.ones(1, 2), ["a"], 3, 0.1)[0].sum() == 0
    again = AnswerMemory.from_state(json.loads(json.dumps(mem.state())))
    assert again.keys == mem.keys and again.embeddings.shape == mem.embeddings.shape


def test_image_key_is_a_file_checksum(tmp_path):
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    assert image_key(a) == image_key(b) != image_key(None, None)


def test_task_memory_answers_training_questions_and_survives_reload(samples):
    train = samples[:200]
    kw = {**TINY, "text": {"encoder": "minilm", "freeze": True, "max_length": TINY["text"]["max_length"]},
          "image": {**TINY["image"], "freeze": True}}
    torch.manual_seed(0)
    task = VQATask.from_config({**kw, "memory": {"weight": 5.0}, "rationale": True})
    task.setup(train)
    task.eval()
    # untrained classifier: the memory alone recovers the answers of training questions
    recs = task.evaluation_step(task.collate(train[:40]))
    in_vocab = [(r, s) for r, s in zip(recs, train[:40], strict=True) if normalise_vqa_answer(s.text["answer"]) in task.answers]
    hits = sum(r["classifier_prediction"] == normalise_vqa_answer(s.text["answer"]) for r, s in in_vocab)
    assert hits >= 0.9 * len(in_vocab)
    assert all(r["rationale"]["memory_match"]["similarity"] > 0.99 for r in recs)
    torch.manual_seed(0)
    plain = VQATask.from_config(kw)
    plain.setup(train)
    plain.load_state_dict({k: v for k, v in task.state_dict().items() if not k.startswith("memory.")}, strict=True)
    base = plain.eval().evaluation_step(plain.collate(train[:40]))
    base_hits = sum(r["classifier_prediction"] == normalise_vqa_answer(s.text["answer"]) for r, s in zip(base, train[:40], strict=True))
    assert base_hits < hits
    other = VQATask.from_config({**kw, "memory": {"weight": 5.0}, "rationale": True})
    other.load_state(json.loads(json.dumps(task.state())))
    other.load_state_dict(task.state_dict(), strict=True)
    again = other.eval().evaluation_step(other.collate(train[:40]))
    assert [r["prediction"] for r in again] == [r["prediction"] for r in recs]


def test_memory_needs_a_frozen_text_encoder(samples):
    with pytest.raises(MedmmError, match="frozen text encoder"):
        VQATask.from_config({**TINY, "memory": {"weight": 1.0}}).setup(samples[:20])
