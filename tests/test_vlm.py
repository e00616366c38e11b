"""Generative VLM families (`medmm models tiny`), `VisionLanguageModel` and the vqa_vlm/report_vlm
tasks' building blocks, on tiny random models written offline: real classes and files, loss on
answer tokens only, adapters-only state, option answering, chain of thought, merge equality."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")
import torch
from typer.testing import CliRunner

import medmm.tasks.vlm.task  # noqa: F401  (registers vqa_vlm, report_vlm)
from medmm.cli import app
from medmm.data import load_dataset
from medmm.data.bundled import vqa_rad_sample_root
from medmm.data.schema import ImageRef
from medmm.engine.task import get_task_class
from medmm.errors import MedmmError
from medmm.models.families import FAMILIES, VLM, write_tiny
from medmm.models.torchvision_check import torchvision_problem
from medmm.models.vlm import VisionLanguageModel, save_merged
from medmm.tasks.vlm.instructions import to_pil
from medmm.tasks.vlm.prompts import REPORT_PROMPTS, prompt_spec, split_rationale

# Qwen2-VL's processor needs torchvision, which does not load beside the CPU torch: its cases skip with that reason.
NO_TORCHVISION = torchvision_problem()
BUILDABLE = ["llava", "idefics3", "gemma3"] + ([] if NO_TORCHVISION else ["qwen2_vl"])
FAMILY_CASES = ["llava", "idefics3", "gemma3",
                pytest.param("qwen2_vl", marks=pytest.mark.skipif(bool(NO_TORCHVISION), reason=f"Qwen2-VL: {NO_TORCHVISION}"))]
PROCESSORS = {"llava": "LlavaProcessor", "idefics3": "Idefics3Processor", "gemma3": "Gemma3Processor",
              "qwen2_vl": "Qwen2VLProcessor"}
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """Each buildable VLM family written once through `medmm models tiny`."""
    root = tmp_path_factory.mktemp("tiny_vlms")
    for name in BUILDABLE:
        res = CliRunner().invoke(app, ["models", "tiny", name, "--out", str(root / name)])
        assert res.exit_code == 0, res.output
    return {name: root / name for name in BUILDABLE}


@pytest.fixture(scope="module")
def samples():
    return load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples


def _image():
    from PIL import Image

    return Image.fromarray((np.random.default_rng(0).random((40, 52)) * 255).astype("uint8")).convert("RGB")


def test_models_list_shows_every_vlm_family():
    res = CliRunner().invoke(app, ["models", "list"])
    assert res.exit_code == 0, res.output
    vlms = [f for f in FAMILIES.values() if f.role == VLM]
    assert {f.name for f in vlms} == {"llava", "idefics3", "gemma3", "qwen2_vl"}
    for f in vlms:
        assert f.name in res.output and f.model_class in res.output
    assert "google/medgemma-4b-it" in res.output


@pytest.mark.parametrize("name", FAMILY_CASES)
def test_tiny_folder_loads_with_the_classes_of_the_real_checkpoints(tiny, name):
    import transformers

    folder = tiny[name]
    for f in ("config.json", "model.safetensors", "processor_config.json", "tokenizer.json", "chat_template.jinja",
              "generation_config.json"):
        assert (folder / f).is_file(), f
    assert json.loads((folder / "config.json").read_text())["architectures"] == [FAMILIES[name].model_class]
    model = transformers.AutoModelForImageTextToText.from_pretrained(folder)
    proc = transformers.AutoProcessor.from_pretrained(folder)
    assert type(model).__name__ == FAMILIES[name].model_class and type(proc).__name__ == PROCESSORS[name]
    text = "Is there a pleural effusion? Yes, on the LEFT (3 cm)."
    ids = proc.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert proc.tokenizer.decode(ids) == text  # no unknown characters: the vocabulary covers English text


@pytest.mark.skipif(not NO_TORCHVISION, reason="torchvision loads here: Qwen2-VL is tested with the other families")
def test_qwen2_vl_without_torchvision_is_a_clear_error_and_leaves_no_folder(tmp_path):
    with pytest.raises(MedmmError, match="torchvision"):
        write_tiny("qwen2_vl", tmp_path / "q")
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize("name", FAMILY_CASES)
def test_only_the_answer_tokens_are_labelled_and_end_with_a_stop_token(tiny, name):
    vlm = VisionLanguageModel(str(tiny[name]), lora={"r": 2})
    q = "Is there a fracture?"
    prompts = [vlm.chat_prompt(q)] * 2
    completions = [vlm.completion(q, "yes"), vlm.completion(q, "no, the left lung is clear")]
    assert all(any(c.endswith(s) for s in vlm.stop_strings()) for c in completions), completions
    batch = vlm.encode(prompts, [[_image()], [_image()]], completions)
    for row, completion in zip(batch["labels"], completions, strict=True):
        labelled = row[row != -100].tolist()
        # exactly the answer turn, nothing of the prompt (Llama's decoder drops a leading space)
        assert vlm.tokenizer.decode(labelled).strip() == completion.strip()
    loss = vlm.loss(batch)
    assert torch.isfinite(loss) and loss.requires_grad
    lp = vlm.completion_logprobs(batch)
    assert lp.shape == (2,) and bool((lp < 0).all())


@pytest.mark.parametrize("name", FAMILY_CASES)
def test_state_dict_holds_only_the_adapters_and_loads_strictly(tiny, name):
    vlm = VisionLanguageModel(str(tiny[name]), lora={"r": 2})
    sd = vlm.state_dict()
    assert sd and all("lora_" in k for k in sd)
    assert {k for k, p in vlm.named_parameters() if p.requires_grad} == set(sd)
    vlm.load_state_dict(sd, strict=True)
    with pytest.raises(RuntimeError, match="Missing key"):
        vlm.load_state_dict(dict(list(sd.items())[1:]), strict=True)  # a missing adapter tensor is still an error
    assert VisionLanguageModel(str(tiny[name]), lora=None).state_dict() == {}


@pytest.mark.parametrize("name", FAMILY_CASES)
def test_merged_model_gives_the_outputs_of_base_plus_adapters(tiny, name, tmp_path):
    torch.manual_seed(0)
    vlm = VisionLanguageModel(str(tiny[name]), lora={"r": 4, "alpha": 8})
    with torch.no_grad():
        for k, p in vlm.named_parameters():
            if "lora_B" in k:
                p.normal_(0, 0.5)  # trained adapters are non-zero
    vlm.eval()
    q = "Is the heart enlarged?"
    batch = vlm.encode([vlm.chat_prompt(q)] * 2, [[_image()]] * 2, [vlm.completion(q, "yes"), vlm.completion(q, "no")])
    with torch.no_grad():
        adapted = vlm.completion_logprobs(batch)
        base = VisionLanguageModel(str(tiny[name]), lora=None).eval().completion_logprobs(batch)
    save_merged(vlm, tmp_path / "merged", {"note": "test"})
    merged = VisionLanguageModel(str(tmp_path / "merged"), lora=None).eval()
    with torch.no_grad():
        out = merged.completion_logprobs(batch)
    assert not torch.allclose(adapted, base, atol=1e-3)  # the adapters change the model ...
    assert torch.allclose(out, adapted, atol=1e-4, rtol=1e-4), (out, adapted)  # ... and the merge keeps that
    info = json.loads((tmp_path / "merged" / "medmm_merge.json").read_text())
    assert info["base_model"]["weights_sha256"] and info["merged_weights_sha256"] and info["note"] == "test"


def test_closed_questions_are_answered_among_their_options(tiny, samples):
    task = get_task_class("vqa_vlm").from_config({"pretrained": str(tiny["gemma3"]), "max_new_tokens": 3,
                                                  "bootstrap_resamples": 10})
    task.setup(samples[:200])
    batch = samples[:12]
    task.eval()
    with torch.no_grad():
        records = task.evaluation_step(task.collate(batch))
    closed = [r for r in records if r["routed_type"] == "CLOSED"]
    assert closed and len(closed) < len(records)
    for r in closed:
        assert r["answered_by"] == "options" and r["prediction"] in r["options"] and set(r["option_logprobs"]) == set(r["options"])
    for r in records:
        if r["routed_type"] == "OPEN":
            assert r["answered_by"] == "generation" and r["prediction"] == r["output"].splitlines()[0].strip() if r["output"] else True
    metrics = task.compute_metrics(records)
    assert metrics["answered_by_options_fraction"] == len(closed) / len(records)
    assert 0 <= metrics["overall_accuracy"] <= 1 and "ci" in metrics


def test_chain_of_thought_keeps_a_rationale_and_is_refused_for_training(tiny, samples):
    task = get_task_class("vqa_vlm").from_config({"pretrained": str(tiny["gemma3"]), "chain_of_thought": True,
                                                  "max_new_tokens": 5, "bootstrap_resamples": 10})
    task.eval()
    with torch.no_grad():
        records = task.evaluation_step(task.collate(samples[:6]))
    assert all("rationale" in r and "output" in r for r in records)
    assert all(r["prediction"] in r["options"] for r in records if r.get("options"))
    assert "Answer:" in task.protocol()["prompt"]["chain_of_thought"]
    with pytest.raises(MedmmError, match="inference only"):
        task.setup(samples[:20])


def test_rationale_and_answer_are_split_at_the_last_cue():
    assert split_rationale("The heart is large.\nAnswer: yes", "Answer:") == ("The heart is large.", "yes")
    assert split_rationale("answer: maybe. Final answer: no", "Answer:") == ("answer: maybe. Final", "no")
    assert split_rationale("no cue at all", "Answer:") == ("", "no cue at all")


def test_prompts_per_task_and_dataset():
    vqa = prompt_spec("question", None, None, False, None, None)
    text = vqa.render("vqa_rad", question=" Is it normal? ", options=["yes", "no"])
    assert text.startswith("Is it normal?\n") and text.endswith("Choose one of: yes, no.")
    report = prompt_spec("report", None, None, True, None, "You are a radiologist.")
    assert report.render("iu_xray").startswith(REPORT_PROMPTS["iu_xray"]) and "'Report:'" in report.render("iu_xray")
    assert report.render("some_other").startswith(REPORT_PROMPTS["default"]) and report.cue == "Report:"
    custom = prompt_spec("report", "Findings?", None, False, None, None)
    assert custom.render("iu_xray") == "Findings?" and custom.record()["instruction"] == "Findings?"


def test_images_of_any_depth_become_8_bit_rgb():
    for arr in (np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000, np.linspace(-1000, 3000, 12).reshape(3, 4),
                np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4), np.zeros((3, 4, 3), np.uint8)):
        im = to_pil(ImageRef(array=arr))
        a = np.asarray(im)
        assert im.mode == "RGB" and a.shape == (3, 4, 3)
        if arr.max() > 0:
            assert a.min() == 0 and a.max() == 255


def test_untrainable_settings_are_refused_with_the_reason(tiny, samples):
    with pytest.raises(MedmmError, match="nothing to train"):
        get_task_class("vqa_vlm").from_config({"pretrained": str(tiny["gemma3"]), "lora": None}).setup(samples[:10])
    if not torch.cuda.is_available():
        with pytest.raises(MedmmError, match="QLoRA.*(bitsandbytes|CUDA GPU)"):
            VisionLanguageModel(str(tiny["gemma3"]), quantization="4bit", lora={"r": 2})
    with pytest.raises(MedmmError, match="target_modules matched no layer"):
        VisionLanguageModel(str(tiny["gemma3"]), lora={"r": 2, "target_modules": ["no_such_proj"]})


def test_adapters_trained_on_other_base_weights_are_refused(tiny):
    task = get_task_class("vqa_vlm").from_config({"pretrained": str(tiny["gemma3"])})
    state = json.loads(json.dumps(task.state()))
    task.load_state(state)  # the same base: fine
    state["base_model"]["weights_sha256"] = {"model.safetensors": "0" * 64}
    with pytest.raises(MedmmError, match="trained on base weights"):
        task.load_state(state)
