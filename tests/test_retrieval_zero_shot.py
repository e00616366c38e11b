"""Zero-shot classification from text prompts with a (tiny, synthetically trained) dual encoder."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medmm.errors import MedmmError  # noqa: E402
from medmm.tasks.retrieval.zero_shot import class_embeddings, zero_shot_classify  # noqa: E402
from test_retrieval import SHAPES, synthetic_samples, tiny_task  # noqa: E402


@pytest.fixture(scope="module")
def trained():
    # one thread and a fixed seed: multi-threaded float sums made the 40-step result vary
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    train = synthetic_samples(36)
    task = tiny_task()
    task.setup(train)
    batch = task.collate(train)
    opt = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=3e-3)
    task.train()
    for _ in range(120):
        loss = task.training_step(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    task.eval()
    torch.set_num_threads(threads)
    return task


def test_prompt_ensemble_is_normalised_mean(trained):
    prompts = {"square": ["a square", "an image showing a square"], "ring": "a ring"}
    classes, emb = class_embeddings(trained, prompts)
    assert classes == ["square", "ring"]
    single = trained.encode_texts(["a square", "an image showing a square", "a ring"])
    expected = torch.nn.functional.normalize(single[:2].mean(0), dim=0)
    assert torch.allclose(emb[0], expected, atol=1e-5)
    assert torch.allclose(emb[1], single[2], atol=1e-5)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)


def test_zero_shot_beats_chance_on_new_images(trained):
    test = synthetic_samples(60, seed=7)  # new noise draws, captions never used
    truth = [s.text["caption"].split()[4] for s in test]
    prompts = {shape: [f"an image showing a {shape}", f"a {shape}"] for shape in SHAPES}
    result = zero_shot_classify(trained, test, prompts)
    assert result.probabilities.shape == (60, len(SHAPES))
    np.testing.assert_allclose(result.probabilities.sum(1), 1.0, rtol=1e-5)
    acc = np.mean([p == t for p, t in zip(result.predictions, truth, strict=True)])
    print("zero-shot accuracy", acc)
    assert acc >= 0.6, acc  # chance is 1/6
    # tensors in give the same answer as samples in
    images = torch.stack([trained.image_tensor(s) for s in test])
    assert zero_shot_classify(trained, images, prompts).predictions == result.predictions


def test_empty_prompts_rejected(trained):
    with pytest.raises(MedmmError):
        class_embeddings(trained, {})
    with pytest.raises(MedmmError, match="square"):
        class_embeddings(trained, {"square": ["  "]})
