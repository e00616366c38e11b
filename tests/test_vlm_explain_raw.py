"""Occlusion of the raw image before the processor (`medmm.interpret.raw_occlusion`,
`medmm.tasks.vlm.explain_raw`): a stand-in whose score reads one quadrant of the raw image, the
tiny random Idefics3 (SmolVLM's architecture: image tiles) with its score reading one quadrant of
the processed tile, and `medmm explain` of Idefics3 / Qwen2-VL generated and option-scored answers
with heatmaps in the original image's coordinates."""

from __future__ import annotations

import html
import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from medmm.interpret.explainable import GeneratedText
from medmm.interpret.faithfulness import heat_mass_inside
from medmm.interpret.generation import explain_generation, generation_heatmaps
from medmm.interpret.raw_occlusion import fill_image, raw_occlusion, window_starts

pytestmark = pytest.mark.usefixtures("one_torch_thread")
H, W = 37, 53  # not square, not a multiple of the occlusion grid: the last windows must still reach the edges


def _quadrant(top: bool, left: bool) -> tuple[slice, slice]:
    return slice(0, H // 2) if top else slice(H // 2, H), slice(0, W // 2) if left else slice(W // 2, W)


def _raw_view(rows: slice, cols: slice, reads: str) -> GeneratedText:
    """A raw-pixel view whose score reads one region of the raw image: its mean brightness
    ("mean": the region is the brightest part of the image) or its detail ("std")."""
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, H, W, generator=g) * 0.4
    img[:, rows, cols] += 0.5

    def score(i: int, v: int, x: torch.Tensor) -> torch.Tensor:
        part = x[:, :, rows, cols]
        return part.mean((1, 2, 3)) if reads == "mean" else part.flatten(1).std(1)

    rec = {"prompt": "where?", "output": "there", "answer": "there", "rationale": None, "reference": None, "scored": "the generated text"}
    return GeneratedText(score, [[img]], [rec], "stand_in", pixels="raw", pixel_note="a stand-in without pixel input")


def test_windows_cover_every_pixel_up_to_the_far_edge():
    for size, win in ((37, 5), (53, 7), (8, 8), (5, 9), (256, 32)):
        starts = window_starts(size, win)
        assert starts[0] == 0 and starts[-1] == max(0, size - win)
        assert all(b - a <= max(1, win // 2) + 1 for a, b in itertools.pairwise(starts))
    img = torch.rand(3, H, W)
    assert torch.allclose(fill_image(img, "mean", (5, 7))[:, 3, 4], img.mean((1, 2)))
    blur = fill_image(img, "blur", (5, 7))
    assert blur.shape == img.shape and blur.std() < img.std() and abs(float(blur.mean() - img.mean())) < 0.02


@pytest.mark.parametrize(("top", "left", "fill", "reads"), [(True, True, "mean", "mean"), (False, False, "mean", "mean"),
                                                             (True, False, "blur", "std")])
def test_raw_occlusion_peaks_in_the_only_quadrant_the_score_reads(top, left, fill, reads, tmp_path):
    rows, cols = _quadrant(top, left)
    view = _raw_view(rows, cols, reads)
    region = torch.zeros(H, W, dtype=torch.bool)
    region[rows, cols] = True
    calls = []
    raw = raw_occlusion(lambda x: calls.append(len(x)) or view.score(0, 0, x), view.images[0][0], fill=fill, batch_size=16)
    assert raw.shape == (H, W) and bool(torch.isfinite(raw).all()) and max(calls) <= 16
    assert float(raw[~region].max()) < float(raw[region].max())
    heat = generation_heatmaps(view, 0, ("occlusion", "integrated_gradients"), occlusion_fill=fill)
    assert set(heat) == {"occlusion"}  # no gradient through a processor: integrated gradients give nothing
    h = heat["occlusion"]
    assert bool(region.flatten()[h.flatten().argmax()]) and heat_mass_inside(h, region) > 0.8, heat_mass_inside(h, region)
    summary = explain_generation(view, [SimpleNamespace(id="s0")], tmp_path, ("occlusion", "integrated_gradients"),
                                 faithfulness_steps=8, n_random=3, scale=1, occlusion_fill=fill)
    assert summary["pixels"] == "raw" and set(summary["unavailable"]) == {"integrated_gradients"}
    assert "a stand-in without pixel input" in summary["unavailable"]["integrated_gradients"]
    assert summary["settings"]["occlusion_fill"] == fill and not summary["flagged_unfaithful"]
    page = (tmp_path / "index.html").read_text()
    assert "integrated gradients unavailable" in page and "occlusion of the raw image" in page


def test_raw_views_of_different_sizes_each_get_a_map_in_their_own_coordinates(tmp_path):
    """Two views (e.g. frontal and lateral) of different sizes; the score reads the second only."""
    g = torch.Generator().manual_seed(1)
    views = [torch.rand(3, 20, 30, generator=g), torch.rand(3, H, W, generator=g) * 0.4]
    views[1][:, H // 2:, : W // 2] += 0.5

    def score(i: int, v: int, x: torch.Tensor) -> torch.Tensor:
        other = views[1][None].expand(x.shape[0], -1, -1, -1) if v == 0 else x
        return other[:, :, H // 2:, : W // 2].mean((1, 2, 3))

    rec = {"prompt": None, "output": "r", "answer": "r", "rationale": None, "reference": None, "scored": "the generated text"}
    view = GeneratedText(score, [views], [rec], "stand_in", pixels="raw")
    first, second = (generation_heatmaps(view, 0, ("occlusion",), v=v)["occlusion"] for v in (0, 1))
    assert first.shape == (20, 30) and float(first.abs().max()) == 0  # the score ignores view 1: nothing to show
    assert second.shape == (H, W) and bool(torch.isfinite(second).all())
    region = torch.zeros(H, W, dtype=torch.bool)
    region[H // 2:, : W // 2] = True
    assert bool(region.flatten()[second.flatten().argmax()]) and heat_mass_inside(second, region) > 0.8
    summary = explain_generation(view, [SimpleNamespace(id="study")], tmp_path, ("occlusion",), faithfulness_steps=4,
                                 n_random=1, scale=1)
    rec = summary["samples"][0]
    assert set(rec["heatmaps"]) == {"view1_occlusion", "view2_occlusion"} and summary["unavailable"] == {}
    from PIL import Image

    assert [Image.open(tmp_path / rec["heatmaps"][f"view{k}_occlusion"]["png"]).size for k in (1, 2)] == [(30, 20), (W, H)]


# ----------------------------------------------------------------------------- tiny generative VLMs
@pytest.fixture(scope="module")
def tiny_idefics3(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    from medmm.models.vlm.tiny import write_tiny_vlm

    return write_tiny_vlm("idefics3", tmp_path_factory.mktemp("tiny") / "idefics3", seed=0)


def _task(folder: Path):
    import medmm.tasks.vlm.task as vlm_tasks

    torch.manual_seed(0)
    return vlm_tasks.VQAVLMTask.from_config({"pretrained": str(folder), "lora": None, "max_new_tokens": 4}).eval()


def _questions(task, closed: bool, n: int = 1):
    from medmm.data import load_dataset
    from medmm.data.bundled import vqa_rad_sample_root

    samples = load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples
    return [s for s in samples if bool(task.instruction(s).options) == closed][:n]


def test_idefics3_occlusion_is_in_raw_coordinates_through_the_processor(tiny_idefics3, monkeypatch):
    """The score reads the bottom-right quadrant of the processed tile only; the raw-image map must
    peak in the raw image's bottom-right quadrant (each occluded image went through the processor)."""
    from PIL import Image

    from medmm.tasks.vlm.answering import to_model
    from medmm.tasks.vlm.explain_raw import raw_generated_text

    vlm = _task(tiny_idefics3).vlm
    arr = (np.random.default_rng(0).random((H, W, 3)) * 100).astype(np.uint8)
    arr[H // 2:, W // 2:] += 150
    image = Image.fromarray(arr)
    prompt = vlm.chat_prompt("where is it?", 1, None)
    completion = vlm.completion("where is it?", "bottom right", 1, None)
    view = raw_generated_text(vlm, [(prompt, [image], completion)], [{}], "vqa_vlm", "tiles")
    assert view.pixels == "raw" and view.images[0][0].shape == (3, H, W)
    with torch.no_grad():  # the unoccluded raw image scores as the model scores the image itself (8-bit round trip)
        own = vlm.completion_logprobs(to_model(vlm, vlm.encode([prompt], [[image]], [completion])))
        assert torch.allclose(view.score(0, 0, view.images[0][0][None]), own, atol=1e-5)
    tile = vlm.encode([prompt], [[image]], [completion])["pixel_values"]
    assert tile.dim() == 5  # image tiles, not a (3, H, W) image: why the raw image is occluded
    monkeypatch.setattr(vlm, "completion_logprobs",
                        lambda batch: batch["pixel_values"][:, 0, :, 16:, 16:].float().mean((1, 2, 3)))
    heat = generation_heatmaps(view, 0, ("occlusion",))["occlusion"]
    region = torch.zeros(H, W, dtype=torch.bool)
    region[H // 2:, W // 2:] = True
    assert heat.shape == (H, W) and bool(torch.isfinite(heat).all())
    assert bool(region.flatten()[heat.flatten().argmax()]) and heat_mass_inside(heat, region) > 0.7, heat_mass_inside(heat, region)


def _check_explained(task, samples, out: Path) -> dict:
    """explain_samples on `samples` of a raw-pixel family: a finite heatmap of the raw image's size."""
    from medmm.interpret.explain import explain_samples

    view = task.explainable(samples)
    raw = task.instruction(samples[0]).images[0]
    assert isinstance(view, GeneratedText) and view.pixels == "raw"
    assert view.images[0][0].shape == (3, raw.size[1], raw.size[0])  # the original image, not the processor's tiles
    heat = generation_heatmaps(view, 0, ("occlusion",))["occlusion"]
    assert heat.shape == (raw.size[1], raw.size[0]) and bool(torch.isfinite(heat).all()) and float(heat.max()) == 1.0
    summary = explain_samples(task, samples, out, ("occlusion", "integrated_gradients", "tokens"), faithfulness_steps=4,
                              n_random=1, scale=1)
    rec = summary["samples"][0]
    assert set(rec["heatmaps"]) == {"occlusion"} and set(summary["unavailable"]) == {"integrated_gradients"}
    assert summary["not_offered"] == ["tokens"] and np.isfinite(rec["heatmaps"]["occlusion"]["deletion_auc"])
    from PIL import Image

    assert Image.open(out / rec["heatmaps"]["occlusion"]["png"]).size == raw.size  # scale 1: the raw image's size
    saved = json.loads((out / "explanations.json").read_text())
    assert saved["pixels"] == "raw" and "gives pixel input of shape" in saved["pixel_note"]
    assert html.escape("integrated gradients unavailable for this model") in (out / "index.html").read_text()
    return {"view": view, "summary": summary}


def test_idefics3_explains_a_generated_answer_on_the_raw_image(tiny_idefics3, tmp_path):
    task = _task(tiny_idefics3)
    got = _check_explained(task, _questions(task, closed=False), tmp_path)
    assert got["view"].records[0]["scored"] != "the chosen option"


def test_idefics3_explains_an_option_scored_answer_by_its_option_score(tiny_idefics3, tmp_path):
    from medmm.tasks.vlm.answering import answer_batch

    task = _task(tiny_idefics3)
    samples = _questions(task, closed=True)
    got = _check_explained(task, samples, tmp_path)  # the classifier view hands raw-pixel families to this path
    view = got["view"]
    assert view.records[0]["scored"] == "the chosen option"
    it = task.instruction(samples[0])
    with torch.no_grad():
        a = answer_batch(task.vlm, [it], task.prompts, short=True, max_new_tokens=4, num_beams=1)[0]
        explained = float(view.score(0, 0, view.images[0][0][None])[0])
    assert a.answered_by == "options" and view.records[0]["answer"] == a.prediction
    assert explained == pytest.approx(a.option_logprobs[a.prediction], abs=1e-3)  # the score options are ranked by


def test_qwen2_vl_explains_on_the_raw_image(tmp_path):
    pytest.importorskip("transformers")
    from medmm.models.torchvision_check import torchvision_problem

    problem = torchvision_problem()
    if problem:
        pytest.skip(f"Qwen2-VL's processor needs torchvision: {problem}")
    from medmm.models.vlm.tiny import write_tiny_vlm

    task = _task(write_tiny_vlm("qwen2_vl", tmp_path / "qwen2_vl", seed=0))
    _check_explained(task, _questions(task, closed=False), tmp_path / "open")
    _check_explained(task, _questions(task, closed=True), tmp_path / "closed")


def test_llava_keeps_its_pixel_input_and_gradient_methods(tmp_path):
    """Families with one (3, H, W) pixel tensor per image keep the gradient path (not the raw one)."""
    pytest.importorskip("transformers")
    from medmm.interpret.explainable import Explainable
    from medmm.models.vlm.tiny import write_tiny_vlm

    task = _task(write_tiny_vlm("llava", tmp_path / "llava", seed=0))
    view = task.explainable(_questions(task, closed=False))
    assert isinstance(view, GeneratedText) and view.pixels == "model" and view.images[0].shape == (1, 3, 32, 32)
    assert set(generation_heatmaps(view, 0, ("occlusion", "integrated_gradients"), ig_steps=2)) == {
        "occlusion", "integrated_gradients"}
    ex = task.explainable(_questions(task, closed=True))
    assert isinstance(ex, Explainable) and ex.images.shape == (1, 3, 32, 32)  # the classifier view, as before


def test_raw_views_are_enlarged_for_display_only_while_small():
    from medmm.interpret.generation import RAW_DISPLAY, display_scale

    assert display_scale((201, 256), 3) == 3  # 768 px: enlarged as asked
    assert display_scale((3000, 2500), 3) == 1  # a full-size X-ray is not tripled to 9000 px
    assert display_scale((RAW_DISPLAY // 2 + 1, 10), 3) == 1 and display_scale((RAW_DISPLAY // 2, 10), 3) == 2


def test_idefics3_closed_questions_with_different_options_are_explained_on_the_raw_image(tiny_idefics3):
    """The classifier view's limits (one option set, one image) are LLaVA-path limits: a raw-pixel
    family goes to the raw-image path before them, which scores each sample's own chosen option."""
    import dataclasses

    task = _task(tiny_idefics3)
    task.answers = ["left", "right", "yes", "no"]  # the training answers an "A or B" question's options come from
    yes_no = _questions(task, closed=True)[0]
    either = dataclasses.replace(yes_no, id="either", text={**yes_no.text, "question": "Is the lesion on the left or the right?"})
    assert task.instruction(yes_no).options != task.instruction(either).options == ["left", "right"]
    view = task.explainable([yes_no, either])
    assert isinstance(view, GeneratedText) and view.pixels == "raw" and len(view.records) == 2
