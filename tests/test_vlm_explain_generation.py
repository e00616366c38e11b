"""Explanations of generated text (`medmm.interpret.generation`, `medmm.tasks.vlm.explain_generation`):
a deterministic stand-in whose text depends on one image quadrant only, and a tiny random Gemma 3
(MedGemma's architecture, fixed seed) answering open questions, with and without chain of thought."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from medmm.interpret.explainable import GeneratedText
from medmm.interpret.faithfulness import heat_mass_inside
from medmm.interpret.generation import explain_generation, generation_heatmaps

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _quadrant_view() -> GeneratedText:
    """The log-probability of the 'answer' rises with the top-left quadrant's brightness and
    ignores every other pixel."""
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(1, 3, 16, 16, generator=g) + 0.5 for _ in range(2)]  # positive: removing a pixel lowers the score

    def score(i: int, v: int, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.logsigmoid(x[:, :, :8, :8].sum((1, 2, 3)) / 50 - 2)

    recs = [{"prompt": f"question {i}?", "output": f"because bright. Answer: yes {i}", "answer": f"yes {i}",
             "rationale": "because bright", "reference": "yes", "scored": "the generated text"} for i in range(2)]
    return GeneratedText(score, images, recs, "stand_in")


def test_heatmaps_find_the_only_quadrant_the_text_depends_on(tmp_path):
    view = _quadrant_view()
    quadrant = torch.zeros(16, 16, dtype=torch.bool)
    quadrant[:8, :8] = True
    for m, h in generation_heatmaps(view, 0, ("occlusion", "integrated_gradients"), ig_steps=8, occlusion_window=4).items():
        assert h.shape == (16, 16) and float(h.max() - h.min()) > 0, m
        # occlusion windows straddling the quadrant's edge spread a little heat past it; nothing beyond
        assert heat_mass_inside(h, quadrant) > 0.85 and float(h[12:].max()) == float(h[:, 12:].max()) == 0, m
    samples = [SimpleNamespace(id=f"s{i}") for i in range(2)]
    summary = explain_generation(view, samples, tmp_path, ("occlusion", "integrated_gradients", "gradcam"),
                                 ig_steps=8, faithfulness_steps=8, n_random=3, occlusion_window=4, scale=1)
    assert summary["not_offered"] == ["gradcam"] and not summary["flagged_unfaithful"]
    page = (tmp_path / "index.html").read_text()
    for text in ("question 0?", "yes 1", "because bright", "occlusion.png", "integrated_gradients.png"):
        assert text in page
    rec = json.loads((tmp_path / "explanations.json").read_text())["samples"][1]
    assert rec["answer"] == "yes 1" and rec["rationale"] == "because bright" and rec["log_prob"] < 0
    assert all(h["deletion_auc"] < h["random_deletion_auc"] for h in rec["heatmaps"].values())


@pytest.fixture(scope="module")
def tiny_gemma3(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    from medmm.models.vlm.tiny import write_tiny_vlm

    return write_tiny_vlm("gemma3", tmp_path_factory.mktemp("tiny") / "gemma3", seed=0)


def _open_questions(task, n: int):
    from medmm.data import load_dataset
    from medmm.data.bundled import vqa_rad_sample_root

    samples = load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples
    return [s for s in samples if not task.instruction(s).options][:n]


def test_tiny_vlm_heatmap_is_a_real_attribution_of_its_generated_answer(tiny_gemma3):
    import medmm.tasks.vlm.task as vlm_tasks

    torch.manual_seed(0)
    task = vlm_tasks.VQAVLMTask.from_config({"pretrained": str(tiny_gemma3), "lora": None, "max_new_tokens": 4}).eval()
    samples = _open_questions(task, 3)
    view = task.explainable(samples)
    assert isinstance(view, GeneratedText) and all(v.shape == (1, 3, 32, 32) for v in view.images)  # the model's pixel input
    for i in range(len(samples)):
        x = view.images[i]
        with torch.no_grad():
            assert abs(float(view.score(i, 0, x) - view.score(i, 0, torch.zeros_like(x)))) > 1e-3, "the image must matter"
        heat = generation_heatmaps(view, i, ("occlusion", "integrated_gradients"), ig_steps=4)
        for m, h in heat.items():
            assert h.shape == x.shape[-2:] and float(h.max() - h.min()) > 0, m
        # occlude the most / least attributed quarter of the pixels (the occlusion map ranks them)
        order = heat["occlusion"].flatten().argsort()
        q = order.numel() // 4
        drop = {}
        for name, idx in (("top", order[-q:]), ("bottom", order[:q])):
            keep = torch.ones(order.numel(), dtype=torch.bool)
            keep[idx] = False
            with torch.no_grad():
                drop[name] = float(view.score(i, 0, x) - view.score(i, 0, x * keep.view(1, 1, 32, 32)))
        assert drop["top"] > drop["bottom"], (i, drop)


def test_explain_page_shows_question_answer_and_rationale_beside_the_heatmaps(tiny_gemma3, tmp_path):
    import medmm.tasks.vlm.task as vlm_tasks
    from medmm.interpret.explain import explain_samples

    task = vlm_tasks.VQAVLMTask.from_config({"pretrained": str(tiny_gemma3), "lora": None, "max_new_tokens": 6,
                                             "chain_of_thought": True})
    samples = _open_questions(task, 1)
    summary = explain_samples(task, samples, tmp_path, ("occlusion", "tokens"), faithfulness_steps=4, n_random=1, scale=1)
    rec = summary["samples"][0]
    assert summary["not_offered"] == ["tokens"] and set(rec["heatmaps"]) == {"occlusion"}
    assert rec["prompt"] == samples[0].text["question"] and rec["rationale"] is not None and rec["output"]
    page = (tmp_path / "index.html").read_text()
    import html

    for text in (rec["prompt"], rec["output"], rec["heatmaps"]["occlusion"]["png"]):
        assert html.escape(text) in page
    from PIL import Image

    assert Image.open(tmp_path / rec["heatmaps"]["occlusion"]["png"]).size == (32, 32)  # scale 1: the pixel input's size
