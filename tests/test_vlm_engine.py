"""Generative VLMs through the one engine, per family: a tiny model from `medmm models tiny`, the
shipped configs/vqa/vlm_lora.yaml with LoRA for 2 steps on the bundled VQA-RAD sample, a crash and
an exact resume, `predict`, `evaluate`, zero-shot `evaluate --model`, `medmm explain` (closed questions,
on the raw image for Idefics3 / Qwen2-VL; generated reports by the image regions behind them) and
`medmm models merge` (the merged folder answers like base + adapters). Gemma 3 (MedGemma's architecture) runs by
default, the other families under -m slow; report generation on the IU X-ray fixture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("lightning")
import torch

import medmm.tasks.vlm.task  # noqa: F401  (registers vqa_vlm, report_vlm)
from cli_run import run_cli as _cli
from medmm.data import load_dataset
from medmm.data.bundled import vqa_rad_sample_root
from medmm.engine import load_config
from medmm.engine.api import load_run, train
from medmm.models.torchvision_check import torchvision_problem
from medmm.tasks.vlm.scoring import is_closed_question
from medmm.tasks.vlm.task import VLMTask

REPO = Path(__file__).resolve().parents[1]
IU_XRAY = REPO / "tests" / "fixtures" / "iu_xray_tiny"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _short(tiny: Path, root: Path) -> list[str]:
    """The shipped GPU config made a 2-step CPU run of a tiny model (gradient checkpointing kept on)."""
    return [f"model.pretrained={tiny}", f"data.root={root}", "trainer.accelerator=cpu", "trainer.precision=32",
            "model.dtype=float32", "trainer.max_steps=2", "trainer.batch_size=2", "trainer.accumulate_grad_batches=1",
            "trainer.eval_batch_size=8", "trainer.warmup_steps=0", "trainer.lr=0.01", "trainer.checkpoint_every_n_steps=1",
            "trainer.num_threads=1", "data.max_samples=8", "model.max_new_tokens=3", "model.bootstrap_resamples=20",
            "model.lora={r: 4, alpha: 8, dropout: 0.1}"]


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    """The first 8 QA pairs of the bundled sample in VQA-RAD's layout (images linked): predict and zero-shot."""
    src = vqa_rad_sample_root()
    root = tmp_path_factory.mktemp("vqa_rad_small")
    records = json.loads((src / "VQA_RAD Dataset Public.json").read_text())[:8]
    (root / "VQA_RAD Dataset Public.json").write_text(json.dumps(records))
    (root / "VQA_RAD Image Folder").symlink_to(src / "VQA_RAD Image Folder")
    return root


def _crash_at(monkeypatch, call: int) -> None:
    """Make the `call`-th training step raise, as a kill would stop the run there."""
    calls = [0]
    original = VLMTask.training_step

    def step(self, batch):
        if self.training:
            calls[0] += 1
            if calls[0] == call:
                raise RuntimeError("simulated crash")
        return original(self, batch)

    monkeypatch.setattr(VLMTask, "training_step", step)


def _family_end_to_end(family: str, tmp_path: Path, small_root: Path, monkeypatch) -> None:
    tiny = tmp_path / f"tiny_{family}"
    _cli("models", "tiny", family, "--out", str(tiny))
    short = _short(tiny, vqa_rad_sample_root())
    config = REPO / "configs" / "vqa" / "vlm_lora.yaml"

    straight = tmp_path / "straight"
    train(load_config(config, short + ["model.gradient_checkpointing=true"]), straight)
    with monkeypatch.context() as m:
        _crash_at(m, 2)
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(load_config(config, short + ["model.gradient_checkpointing=true"]), tmp_path / "crashed")
    assert torch.load(tmp_path / "crashed/checkpoints/last.ckpt", weights_only=True)["global_step"] == 1
    train(load_config(config, short + ["model.gradient_checkpointing=true"]), tmp_path / "crashed")  # resumes
    a, b = (torch.load(r / "model.pt", weights_only=True) for r in (straight, tmp_path / "crashed"))
    assert a and sorted(a) == sorted(b) and all("lora_" in k for k in a)  # the run stores only the adapters
    assert all(torch.equal(a[k], b[k]) for k in a), "a resumed run must end exactly like an uninterrupted one"
    assert any(float(v.abs().max()) > 0 for k, v in a.items() if "lora_B" in k)  # the adapters did train

    preds = tmp_path / "preds.jsonl"
    _cli("predict", str(straight), "--data", str(small_root), "--split", "train", "--out", str(preds))
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert len(rows) == 8 and all(isinstance(r["prediction"], str) and r["answered_by"] for r in rows)

    ev = tmp_path / "eval.json"
    _cli("evaluate", str(straight), "--split", "val", "--out", str(ev), "--set", "bootstrap_resamples=20")
    m = json.loads(ev.read_text())
    p = m["protocol"]
    assert p["training"] == "trained" and p["model"]["adapters"].startswith("LoRA")
    assert p["prompt"]["instruction"].startswith("{question}") and p["decoding"]["generation"] == "greedy"
    assert set(m["floors"]) == {"answer_prior", "question_nn"} and 0 <= m["metrics"]["overall_accuracy"] <= 1
    sha = m["provenance"]["pretrained"][0]["weights_sha256"]["model.safetensors"]
    assert p["model"]["weights_sha256"]["model.safetensors"] == sha

    zs = tmp_path / "zero_shot.json"
    _cli("evaluate", "--model", str(tiny), "--task", "vqa_vlm", "--data", str(small_root), "--split", "train",
         "--out", str(zs), "--set", "bootstrap_resamples=20", "--set", "max_new_tokens=3", "--set", "trainer.num_threads=1")
    z = json.loads(zs.read_text())
    assert z["protocol"]["training"] == "zero-shot" and z["protocol"]["model"]["adapters"] == "none"
    assert z["provenance"]["n_samples"] == 8 and z["provenance"]["pretrained"][0]["path"] == str(tiny.resolve())
    assert "skipped" in z["floors"]  # the scored split is the training split: said, not hidden

    closed = [str(r["qid"]) for r in json.loads((small_root / "VQA_RAD Dataset Public.json").read_text())
              if is_closed_question(r["question"], None)][:1]
    explain = ["explain", str(straight), "--data", str(small_root), "--ids", closed[0], "--out", str(tmp_path / "explain"),
               "--methods", "occlusion,integrated_gradients,tokens,modality", "--ig-steps", "2", "--n-random", "1"]
    if family in ("idefics3", "qwen2_vl"):  # image tiles / flattened patches: occlusion of the raw image; gradients said unavailable
        out = _cli(*explain)
        saved = json.loads((tmp_path / "explain" / "explanations.json").read_text())
        ex = saved["samples"][0]
        assert ex["answer"] in ("yes", "no") and set(ex["heatmaps"]) == {"occlusion"} and saved["pixels"] == "raw"
        assert set(saved["unavailable"]) == {"integrated_gradients"} and "integrated_gradients unavailable" in out
    else:
        _cli(*explain)
        ex = json.loads((tmp_path / "explain" / "explanations.json").read_text())["samples"][0]
        assert ex["explained_class"] in ("yes", "no") and set(ex["heatmaps"]) == {"occlusion", "integrated_gradients"}
        assert set(ex["modality"]) == {"image", "text", "both", "neither"} and ex["tokens"]["tokens"]

    merged = tmp_path / "merged"
    _cli("models", "merge", str(straight), "--out", str(merged))
    _, run_task = load_run(straight)
    from medmm.models.vlm import VisionLanguageModel

    vlm = run_task.vlm
    plain = VisionLanguageModel(str(merged), lora=None).eval()
    base = VisionLanguageModel(str(tiny), lora=None).eval()
    batch = run_task.collate(load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples[:4])["train"]
    with torch.no_grad():
        adapted, out, before = (v.completion_logprobs(batch) for v in (vlm, plain, base))
    assert torch.allclose(out, adapted, atol=1e-4, rtol=1e-4) and not torch.allclose(before, adapted, atol=1e-4)
    assert json.loads((merged / "medmm_merge.json").read_text())["adapters_sha256"]


@pytest.mark.parametrize("family", ["gemma3", pytest.param("llava", marks=pytest.mark.slow),
                                    pytest.param("idefics3", marks=pytest.mark.slow),
                                    pytest.param("qwen2_vl", marks=[pytest.mark.slow, pytest.mark.skipif(
                                        bool(torchvision_problem()), reason=f"Qwen2-VL: {torchvision_problem()}")])])
def test_family_trains_resumes_predicts_evaluates_zero_shot_and_merges(family, tmp_path, small_root, monkeypatch):
    _family_end_to_end(family, tmp_path, small_root, monkeypatch)


def test_report_generation_trains_and_scores_zero_shot_beside_its_floor(tmp_path):
    tiny = tmp_path / "tiny"
    _cli("models", "tiny", "gemma3", "--out", str(tiny))
    short = [o for o in _short(tiny, IU_XRAY) if not o.startswith("data.max_samples")] + ["model.max_new_tokens=6",
                                                                                         "trainer.limit_val_batches=null"]
    res = train(load_config(REPO / "configs" / "report" / "vlm_lora.yaml", short), tmp_path / "run")
    assert {"bleu_4", "rouge_l", "cider_d", "clinical_efficacy"} <= set(res["test"])
    preds = [json.loads(line) for line in (tmp_path / "run" / "predictions" / "test.jsonl").read_text().splitlines()]
    assert preds and all(r["answered_by"] == "generation" and r["reference"] for r in preds)
    out = _cli("explain", str(tmp_path / "run"), "--data", str(IU_XRAY), "--ids", "CXR1011_IM-0041", "--out",
               str(tmp_path / "explain"), "--methods", "occlusion", "--n-random", "1", "--set", "chain_of_thought=true")
    assert "log p of the generated text" in out  # the generated report, by the image regions behind it
    ex = json.loads((tmp_path / "explain" / "explanations.json").read_text())["samples"][0]
    assert set(ex["heatmaps"]) == {"view1_occlusion", "view2_occlusion"} and ex["reference"] and ex["output"]
    assert isinstance(ex["rationale"], str)  # chain of thought asked for at explain time: its rationale is kept
    assert all((tmp_path / "explain" / h["png"]).is_file() for h in ex["heatmaps"].values())

    zs = tmp_path / "zs.json"
    _cli("evaluate", "--model", str(tiny), "--task", "report_vlm", "--data", str(IU_XRAY), "--split", "test", "--out", str(zs),
         "--set", "max_new_tokens=6", "--set", "max_images=2", "--set", "bootstrap_resamples=20")
    z = json.loads(zs.read_text())
    assert z["protocol"]["training"] == "zero-shot" and z["provenance"]["split_source"].endswith("as published")
    assert set(z["floors"]) == {"nn_report_pixels"}, z["floors"]  # fit on the published train split
    assert "iu_xray" in z["protocol"]["floors_fit_on"] and "'train'" in z["protocol"]["floors_fit_on"]


def test_zero_shot_with_a_config_scores_the_same_held_out_part_as_fine_tuning(tmp_path):
    """--config: the grouped test part that `medmm train` holds out, and floors fit on its training part."""
    tiny = tmp_path / "tiny"
    _cli("models", "tiny", "gemma3", "--out", str(tiny))
    zs = tmp_path / "zs.json"
    _cli("evaluate", "--model", str(tiny), "--config", str(REPO / "configs" / "vqa" / "vlm_lora.yaml"),
         "--data", str(vqa_rad_sample_root()), "--split", "test", "--out", str(zs), "--set", "max_new_tokens=2",
         "--set", "bootstrap_resamples=10", "--set", "trainer.accelerator=cpu", "--set", "trainer.precision=32",
         "--set", "dtype=float32", "--set", "data.max_samples=6")
    z = json.loads(zs.read_text())
    assert "grouped 'test' part" in z["provenance"]["split_source"] and z["provenance"]["n_samples"] == 6
    assert set(z["floors"]) == {"answer_prior", "question_nn"} and "grouped 'train' part" in z["protocol"]["floors_fit_on"]
