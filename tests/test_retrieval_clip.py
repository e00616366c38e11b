"""`clip_model: hf:<dir>`: a CLIP-family model from transformers as both towers (tiny, random, local)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from medmm.tasks.retrieval.task import RetrievalTask  # noqa: E402


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from medmm.models.families import write_tiny

    return write_tiny("clip", tmp_path_factory.mktemp("tiny") / "clip")  # CLIPModel + processor + tokenizer


def test_clip_model_trains_and_embeds(clip_dir):
    from test_retrieval import synthetic_samples

    task = RetrievalTask.from_config({"clip_model": f"hf:{clip_dir}", "freeze_image": True, "max_text_length": 32, "bootstrap_resamples": 10})
    assert task.image_size == 32 and task.channels == 3
    train = synthetic_samples(8)
    batch = task.collate(train)
    assert batch["images"].shape == (8, 3, 32, 32)
    task.train()
    assert not task.model.model.vision_model.training
    opt = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=1e-3)
    with torch.no_grad():
        before = float(task.training_step(batch)["loss"])
    for _ in range(10):
        loss = task.training_step(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(task.training_step(batch)["loss"])
    assert after < before
    task.eval()
    recs = task.evaluation_step(batch)
    assert len(recs[0]["prediction"]["image_embedding"]) == 16
    m = task.compute_metrics(recs)
    assert set(m["image_to_text"]) >= {"R@1", "R@5", "R@10", "mrr", "median_rank"}


def test_clip_missing_dir_is_bad_input(tmp_path):
    from medmm.errors import BadInputError

    with pytest.raises(BadInputError, match="CLIP"):
        RetrievalTask.from_config({"clip_model": f"hf:{tmp_path / 'nothing'}"})
