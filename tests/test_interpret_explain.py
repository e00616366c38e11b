"""explain_samples / explain_run on diagnosis and VQA tasks, and word-region maps for
retrieval and report generation (tiny untrained models: these check plumbing, shapes,
files and invariants; the quality checks are in test_interpret_core.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medmm.data import load_dataset
from medmm.data.bundled import vqa_rad_sample_root
from medmm.data.schema import ImageRef, Sample
from medmm.interpret import explain, word_region
from medmm.tasks.diagnosis.task import DiagnosisTask
from medmm.tasks.vqa.task import VQATask


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: on the shared, loaded 2-core CPU more threads make tiny models slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _dx_samples(n: int = 8) -> list[Sample]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        lab = ["effusion", "normal"][i % 2]
        img = rng.random((32, 32)).astype(np.float32)
        out.append(Sample(id=f"dx{i}", dataset="synthetic", split="train", images=[ImageRef(array=img)],
                          text={"clinical_notes": f"patient {i} with cough and {'fever' if i % 2 else 'no fever'}"},
                          targets={"label": lab}, patient_id=f"p{i}"))
    return out


def _dx_task(fusion: str) -> DiagnosisTask:
    torch.manual_seed(0)
    task = DiagnosisTask.from_config({"image": {"encoder": "small_cnn", "size": 32, "encoder_kwargs": {"widths": [8, 16, 32]}},
                                      "text": {"encoder": "scratch",
                                               "encoder_kwargs": {"dim": 32, "num_layers": 1, "num_heads": 2, "vocab_size": 200}},
                                      "fusion": fusion, "dim": 32})
    task.setup(_dx_samples())
    return task.eval()


@pytest.mark.parametrize("fusion", ["late", "cross_attention"])
def test_explain_diagnosis_samples(tmp_path: Path, fusion: str) -> None:
    task = _dx_task(fusion)
    s = explain.explain_samples(task, _dx_samples()[:2], tmp_path, ig_steps=4, faithfulness_steps=4, n_random=2)
    assert s["task"] == "diagnosis" and len(s["samples"]) == 2
    expected = {"gradcam", "gradcam++", "integrated_gradients", "occlusion"} | ({"cross_attention"} if fusion == "cross_attention" else set())
    for r in s["samples"]:
        assert set(r["heatmaps"]) == expected
        for h in r["heatmaps"].values():
            assert (tmp_path / h["png"]).stat().st_size > 100
            assert np.isfinite(h["deletion_auc"]) and np.isfinite(h["random_deletion_auc"])
            assert h["unfaithful"] == (h["deletion_auc"] >= h["random_deletion_auc"])
            assert len(h["deletion_curve"]) == 5
        m = r["modality"]
        assert m["image"] + m["text"] == pytest.approx(m["both"] - m["neither"], abs=1e-5)
        assert m["both"] == pytest.approx(r["probability"], abs=1e-5)
        toks = r["tokens"]
        assert toks["tokens"][0] == "[CLS]" and len(toks["tokens"]) == len(toks["attributions"])
        assert all(np.isfinite(toks["attributions"])) and toks["attributions"][0] == 0.0  # [CLS] kept in the baseline
    page = (tmp_path / "index.html").read_text()
    assert "dx0" in page and "deletion AUC" in page and "Shapley" in page
    saved = json.loads((tmp_path / "explanations.json").read_text())
    assert saved["modality_per_class"] and saved["settings"]["absent_text"]


@pytest.mark.parametrize("fusion,type_mask", [("cross_attention", False), ("late", False), ("gated", True)])
def test_explain_vqa_samples_on_bundled_data(tmp_path: Path, fusion: str, type_mask: bool) -> None:
    samples = load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples
    torch.manual_seed(0)
    task = VQATask.from_config({"image": {"encoder": "small_cnn", "encoder_kwargs": {"in_channels": 1, "image_size": 32, "widths": [8, 16]}},
                                "text": {"encoder": "scratch", "max_length": 48,
                                         "encoder_kwargs": {"vocab_size": 300, "dim": 32, "num_layers": 1, "num_heads": 2, "max_length": 48}},
                                "fusion": fusion, "fusion_kwargs": {"heads": 2} if fusion == "cross_attention" else {}, "dim": 32,
                                "decoder": {"layers": 1, "heads": 2}, "bootstrap_resamples": 0,
                                "classifier": {"question_type_mask": type_mask}})
    task.setup(samples)
    task.eval()
    shown = [a["classifier_prediction"] for a in task.answer(task.collate(samples[:2]))]
    s = explain.explain_samples(task, samples[:2], tmp_path, methods=("gradcam", "attention", "tokens", "modality"),
                                ig_steps=4, faithfulness_steps=4, n_random=2)
    expected_maps = {"gradcam"} if fusion == "late" else {"gradcam", "cross_attention"}  # gated: its spatial attention
    for r, smp, answer in zip(s["samples"], samples[:2], shown, strict=True):
        assert r["explained_class"] == answer and r["reference"] == smp.text["answer"]  # the answer the record shows
        assert set(r["heatmaps"]) == expected_maps
        assert r["modality"]["image"] + r["modality"]["text"] == pytest.approx(r["modality"]["both"] - r["modality"]["neither"], abs=1e-5)
        assert r["text"] == smp.text["question"] and r["tokens"]["tokens"][0] == "[CLS]"


def test_unknown_method_and_task_are_errors(tmp_path: Path) -> None:
    from medmm.errors import MedmmError

    task = _dx_task("late")
    with pytest.raises(MedmmError, match="unknown explanation method"):
        explain.explain_samples(task, _dx_samples()[:1], tmp_path, methods=("saliency",))

    class Other(torch.nn.Module):
        name = "segmentation"

    with pytest.raises(MedmmError, match="no explainer"):
        explain.explain_samples(Other(), [], tmp_path)


def test_sentence_spans() -> None:
    assert word_region.sentence_spans(["no", "effusion", ".", "heart", "normal"]) == [(0, 3), (3, 5)]
    assert word_region.sentence_spans([]) == []


def test_word_region_similarity_matches_cosine() -> None:
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    r = torch.tensor([[3.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    sim = word_region.word_region_similarity(w, r)
    assert sim.shape == (2, 3)
    assert torch.allclose(sim, torch.tensor([[1.0, 2**-0.5, 0.0], [0.0, 2**-0.5, -1.0]]), atol=1e-6)


def test_report_sentence_regions_on_fixture(tmp_path: Path) -> None:
    from medmm.tasks.report.task import ReportGenerationTask

    fixture = Path(__file__).parent / "fixtures" / "iu_xray_tiny"
    train = load_dataset("iu_xray", fixture, "train").samples
    torch.manual_seed(0)
    task = ReportGenerationTask.from_config({"image": {"encoder": "small_cnn", "max_images": 2,
                                                       "encoder_kwargs": {"in_channels": 1, "image_size": 32, "widths": [8, 16, 32]}},
                                             "text_field": "report", "group_by": "study", "dim": 32, "dropout": 0.0,
                                             "decoder": {"min_word_freq": 1, "layers": 1, "heads": 2},
                                             "decoding": {"max_length": 12}, "bootstrap_resamples": 0})
    task.setup(train)
    task.eval()
    from medmm.tasks.report.sentence_regions import report_sentence_regions

    out = report_sentence_regions(task, task.collate(train[:2]))
    page = explain.explain_samples(task, train[:2], tmp_path)
    assert (tmp_path / "index.html").exists() and len(page["samples"]) == 2
    assert [len(p["maps"]) for p in page["samples"]] == [len(r["sentences"]) for r in out]
    assert len(out) == 2
    for rec in out:
        words = rec["report"].split()
        assert len(rec["sentences"]) == len(word_region.sentence_spans(words))
        for sen in rec["sentences"]:
            assert sen["map"].ndim == 2 and torch.isfinite(sen["map"]).all()
            assert float(sen["map"].sum()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("local", [0.0, 0.5])
def test_retrieval_word_regions(tmp_path: Path, local: float) -> None:
    from medmm.models.encoders import create_image_encoder, create_text_encoder
    from medmm.tasks.retrieval.task import RetrievalTask

    torch.manual_seed(0)
    img = create_image_encoder("small_cnn", in_channels=1, widths=(8, 16, 32), image_size=32)
    txt = create_text_encoder("scratch", vocab_size=200, dim=32, num_layers=1, num_heads=2, max_length=32, dropout=0.0)
    task = RetrievalTask(RetrievalTask.Config(embed_dim=32, local_loss_weight=local), image_encoder=img, text_encoder=txt)
    samples = [Sample(id=f"r{i}", dataset="synthetic", split="train", images=[ImageRef(array=np.random.rand(32, 32).astype(np.float32))],
                      text={"caption": f"a bright square number {i}"}, case_id=f"c{i}") for i in range(3)]
    task.setup(samples)
    task.eval()
    batch = task.collate(samples)
    from medmm.tasks.retrieval.word_regions import retrieval_word_regions

    out = retrieval_word_regions(task, batch)
    for rec, mask in zip(out, batch["attention_mask"], strict=True):
        assert rec["maps"].shape == (int(mask.sum()), 4, 4)
        assert float(rec["maps"].abs().max()) <= 1.0 + 1e-5
        assert rec["method"].startswith("local" if local else "global")
    page = explain.explain_samples(task, samples, tmp_path)
    assert page["samples"][0]["maps"][0]["word"] == "a" and (tmp_path / page["samples"][0]["maps"][0]["png"]).exists()


@pytest.mark.slow
def test_medmm_explain_cli_on_a_trained_vqa_run(tmp_path: Path) -> None:
    """Train the bundled-sample VQA config for a few steps, then `medmm explain` its run dir."""
    from typer.testing import CliRunner

    from medmm.cli import app

    root = vqa_rad_sample_root()
    cfg = Path(__file__).resolve().parents[1] / "configs" / "vqa" / "vqa_rad_sample.yaml"
    run = tmp_path / "run"
    runner = CliRunner()
    res = runner.invoke(app, ["train", str(cfg), "trainer.max_steps=2", "data.max_samples=64", f"data.root={root}", "--out", str(run)])
    assert res.exit_code == 0, res.output
    ids = [s.id for s in load_dataset("vqa_rad", root, "train").samples[:2]]
    res = runner.invoke(app, ["explain", str(run), "--data", str(root), "--ids", ",".join(ids), "--out", str(tmp_path / "ex"),
                              "--ig-steps", "4", "--n-random", "2"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ex" / "index.html").exists() and "wrote" in res.output
    summary = json.loads((tmp_path / "ex" / "explanations.json").read_text())
    assert [r["id"] for r in summary["samples"]] == ids
    from medmm.errors import BadInputError
    from medmm.explain_run import explain_run

    with pytest.raises(BadInputError, match="not found"):
        explain_run(run, root, ["no-such-id"], tmp_path / "ex2")


def test_explain_vit_diagnosis_gives_attention_rollout(tmp_path: Path) -> None:
    torch.manual_seed(0)
    task = DiagnosisTask.from_config({"image": {"encoder": "vit_small", "size": 32, "encoder_kwargs": {
                                          "patch_size": 8, "hidden_size": 32, "mlp_dim": 64, "num_layers": 2, "num_heads": 2}},
                                      "text": {"encoder": None}, "fusion": "image_only", "dim": 32})
    task.setup(_dx_samples())
    task.eval()
    s = explain.explain_samples(task, _dx_samples()[:1], tmp_path, methods=("gradcam", "attention", "modality"),
                                faithfulness_steps=4, n_random=2)
    r = s["samples"][0]
    assert set(r["heatmaps"]) == {"gradcam", "attention_rollout"}  # ViT maps are 4x4 grids; no text -> no modality
    assert "modality" not in r and "tokens" not in r
    assert (tmp_path / r["heatmaps"]["attention_rollout"]["png"]).exists()
