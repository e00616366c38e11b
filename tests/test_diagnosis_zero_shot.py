"""Zero-shot diagnosis with a CLIP-style model: `medmm evaluate --model DIR --task diagnosis`.

Tiny random CLIP and SigLIP folders (`medmm models tiny`) score real PneumoniaMNIST validation images
and the bundled VQA-RAD sample's organ target through the CLI; the metrics file carries the diagnosis
metrics with CIs, the floors and the protocol (model checksum, every prompt). A stand-in dual encoder
that sees the class in the image reaches AUROC 1 (and 0 with its prompts swapped), so the class order
and the prompt ensembling are checked, not only the plumbing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
import torch
import torch.nn.functional as F
from torch import nn

from cli_run import run_cli as _cli
from medmm.data import label_maps as lm
from medmm.data.bundled import vqa_rad_sample_root
from medmm.data.schema import ImageRef, Sample
from medmm.data.transforms import ImageInputSpec
from medmm.engine.task import Task, get_task_class
from medmm.errors import BadInputError, MedmmError
from medmm.tasks.diagnosis import zero_shot as zs
from medmm.tasks.diagnosis.prompt_sets import load_prompt_set, resolve_classes, shipped_prompt_sets
from medmm.tasks.diagnosis.task import DiagnosisTask

REPO = Path(__file__).resolve().parents[1]
MEDMNIST = REPO.parent / "shared" / "data" / "medmnist"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("tiny")
    for family in ("clip", "siglip"):
        _cli("models", "tiny", family, "--out", str(out / family))
    return {f: out / f for f in ("clip", "siglip")}


# ----------------------------------------------------------------------------- prompt sets
def test_every_shipped_prompt_set_covers_its_datasets_label_space():
    shipped = shipped_prompt_sets()
    assert {"pneumoniamnist", "breastmnist", "covid_cxr", "vqa_rad"} <= set(shipped)
    for dataset, ps in shipped.items():
        classes = resolve_classes(ps, dataset, ps.target, None)
        space = lm.LABEL_SPACES.get((dataset, ps.target))
        assert space is None or classes == list(space), dataset
        prompts = ps.prompts()
        assert all(len(prompts[c]) == len(ps.templates or [0]) * len(ps.descriptions[c]) for c in classes)


def test_prompt_set_errors_name_the_problem(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("templates: ['a photo of']\nclasses: {a: [x], b: [y]}\n")
    with pytest.raises(BadInputError, match=r"no \{\}"):
        load_prompt_set(bad)
    bad.write_text("classes: {a: [x], b: [y]}\nprompt: z\n")
    with pytest.raises(BadInputError, match="unknown key"):
        load_prompt_set(bad)
    bad.write_text("target: label\nclasses: {normal: [x], pneumonia: [y], other: [z]}\n")
    with pytest.raises(MedmmError, match=r"classes not in it: \['other'\]"):
        resolve_classes(load_prompt_set(bad), "pneumoniamnist", "label", None)
    with pytest.raises(MedmmError, match="describes target 'label'"):
        resolve_classes(load_prompt_set(bad), "pneumoniamnist", "organ", None)
    with pytest.raises(MedmmError, match="no default zero-shot prompt set for dataset 'medpix2'"):
        zs.zero_shot_section({}, "x", "medpix2", None)


def test_the_default_hook_sets_pretrained_and_refuses_a_prompt_file():
    assert Task.zero_shot_section({"a": 1}, "m", "d") == {"a": 1, "pretrained": "m", "lora": None}
    with pytest.raises(MedmmError, match="reads no --prompts"):
        Task.zero_shot_section({}, "m", "d", "p.yaml")
    section = get_task_class("diagnosis").zero_shot_section({}, "m", "breastmnist")
    assert section == {"zero_shot": {"pretrained": "m", "dataset": "breastmnist"}, "target": "label"}


# ----------------------------------------------------------------------------- tiny CLIP / SigLIP, real data
@pytest.mark.skipif(not (MEDMNIST / "pneumoniamnist_28_trainsubset_fullvaltest.npz").is_file(), reason="no shared MedMNIST copy")
def test_tiny_clip_scores_pneumoniamnist_val_zero_shot(tiny, tmp_path):
    out = tmp_path / "m.json"
    _cli("evaluate", "--model", str(tiny["clip"]), "--task", "diagnosis", "--data", str(MEDMNIST),
         "--dataset", "pneumoniamnist_trainsubset", "--split", "val", "--out", str(out),
         "--set", "bootstrap_resamples=20", "--set", "trainer.num_threads=1")
    m = json.loads(out.read_text())
    metrics, protocol = m["metrics"], m["protocol"]
    assert metrics["n_scored"] == 524 and 0 <= metrics["auroc_macro_ovr"] <= 1
    assert set(metrics["ci"]) >= {"auroc_macro_ovr", "accuracy"} and metrics["labels"] == ["normal", "pneumonia"]
    assert protocol["training"] == "zero-shot" and "auroc_macro_ovr" in protocol["metric_definitions"]
    z = protocol["zero_shot"]
    sha = m["provenance"]["pretrained"][0]["weights_sha256"]["model.safetensors"]
    assert z["model"]["class"] == "CLIPModel" and z["model"]["weights_sha256"]["model.safetensors"] == sha
    assert z["prompt_set"]["origin"] == "medmm default for the dataset" and len(z["prompt_set"]["sha256"]) == 64
    assert "a chest x-ray showing pneumonia." in z["prompt_set"]["prompts"]["pneumonia"]
    assert z["classes"] == ["normal", "pneumonia"] and "ensembl" in z["ensembling"]
    assert {"prior", "logistic_pixels"} <= set(m["floors"]) and "'train'" in protocol["floors_fit_on"]


def test_tiny_siglip_with_a_prompt_file_gives_probabilities_that_sum_to_one(tiny, tmp_path):
    prompts = tmp_path / "organ.yaml"
    prompts.write_text("target: organ\nclasses:\n  HEAD: [an MRI of the brain, a CT of the head]\n"
                       "  CHEST: [a chest x-ray]\n  ABD: [a CT of the abdomen]\n")
    out = tmp_path / "s.json"
    _cli("evaluate", "--model", str(tiny["siglip"]), "--task", "diagnosis", "--data", str(vqa_rad_sample_root()),
         "--dataset", "vqa_rad", "--split", "train", "--prompts", str(prompts), "--out", str(out),
         "--set", "bootstrap_resamples=10", "--set", "trainer.num_threads=1")
    m = json.loads(out.read_text())
    z = m["protocol"]["zero_shot"]
    assert z["model"]["class"] == "SiglipModel" and z["prompt_set"]["source"] == str(prompts.resolve())
    assert z["classes"] == ["ABD", "CHEST", "HEAD"]  # the dataset's label-space order, not the file's
    assert z["prompt_set"]["prompts"]["HEAD"] == ["an MRI of the brain", "a CT of the head"]
    assert m["metrics"]["n_scored"] == m["provenance"]["n_samples"] > 0
    assert "skipped" in m["floors"]  # the scored split is the one the floors would be fit on: said

    task = DiagnosisTask.from_config({"target": "organ", "zero_shot": {"pretrained": str(tiny["siglip"]),
                                      "prompts": str(prompts), "dataset": "vqa_rad"}}).eval()
    from medmm.data import load_dataset

    samples = load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples[:6]
    with torch.no_grad():
        records = task.evaluation_step(task.collate(samples))
    for r in records:
        probs = r["prediction"]["probs"]
        assert list(probs) == ["ABD", "CHEST", "HEAD"] and abs(sum(probs.values()) - 1) < 1e-5
        assert r["prediction"]["label"] == max(probs, key=probs.get)
    with pytest.raises(MedmmError, match="nothing to train"):
        task.setup(samples)


# ----------------------------------------------------------------------------- an ideal encoder
class _SeesBrightness(nn.Module):
    """A stand-in dual encoder that reads the class off the image: its embedding leans towards
    "bright" as the mean intensity grows; prompts naming bright/dark embed onto the two axes."""

    def __init__(self):
        super().__init__()
        self.input_spec = ImageInputSpec(size=8, in_channels=1, mean=(0.0,), std=(1.0,))
        self.scale = nn.Parameter(torch.tensor(10.0))

    def encode_image(self, images):
        m = images.mean(dim=(1, 2, 3))
        return F.normalize(torch.stack([m, 1 - m], dim=1), dim=-1), None

    def encode_texts(self, texts):
        return torch.tensor([[1.0, 0.0] if "bright" in t else [0.0, 1.0] for t in texts])

    def temperature_scale(self):
        return self.scale


def _synthetic(n: int = 40) -> list[Sample]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        bright = i % 2 == 0
        level = rng.uniform(140, 250) if bright else rng.uniform(5, 120)
        img = np.clip(rng.normal(level, 5, (8, 8)), 0, 255).astype(np.uint8)
        out.append(Sample(id=str(i), dataset="synthetic", split="test", images=[ImageRef(array=img)],
                          targets={"label": "light" if bright else "shade"}))
    return out


@pytest.mark.parametrize("swapped", [False, True])
def test_an_encoder_that_sees_the_class_reaches_auroc_one(tmp_path, monkeypatch, swapped):
    monkeypatch.setattr(zs, "load_dual_encoder", lambda name: _SeesBrightness())
    prompts = tmp_path / "p.yaml"
    light, shade = ("a dark image", "a bright image") if swapped else ("a bright image", "a dark image")
    prompts.write_text(f"target: label\nclasses:\n  shade: ['{shade}']\n  light: ['{light}', '{light} indeed']\n")
    task = DiagnosisTask.from_config({"zero_shot": {"pretrained": "stand-in", "prompts": str(prompts)},
                                      "bootstrap_resamples": 0}).eval()
    samples = _synthetic()
    with torch.no_grad():
        records = task.evaluation_step(task.collate(samples))
    m = task.compute_metrics(records)
    assert m["auroc_macro_ovr"] == (0.0 if swapped else 1.0)
    assert m["accuracy"] == (0.0 if swapped else 1.0) and m["labels"] == ["shade", "light"]


def test_a_labelled_sample_outside_the_prompt_set_is_skipped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(zs, "load_dual_encoder", lambda name: _SeesBrightness())
    prompts = tmp_path / "p.yaml"
    prompts.write_text("classes: {light: [a bright image], shade: [a dark image]}\n")
    task = DiagnosisTask.from_config({"zero_shot": {"pretrained": "stand-in", "prompts": str(prompts)}})
    odd = _synthetic(1)[0]
    odd.targets["label"] = "grey"
    with pytest.raises(BadInputError, match="'grey' is not in the zero-shot prompt set"):
        task.collate([odd])
