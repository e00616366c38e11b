"""Diagnosis task: fusions, targets with missing labels, leakage guard, imbalance hooks,
thresholds, external validation, and short engine runs of the shipped configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medmm.data.schema import ImageRef, LabelState, Sample
from medmm.tasks import losses as L
from medmm.tasks.diagnosis.metrics import decision_scores
from medmm.tasks.diagnosis.task import DiagnosisTask
from tests.conftest import merged

REPO = Path(__file__).resolve().parents[1]
TINY_TEXT = {"dim": 32, "num_layers": 1, "num_heads": 2, "vocab_size": 300}
FUSIONS = ["image_only", "text_only", "early", "late", "cross_attention", "gated", "moe"]


def _samples(n: int, labels=("edema", "fracture"), dataset="toy", seed=0, with_label_word=True) -> list[Sample]:
    rng = np.random.default_rng(seed)
    filler = "patient seen today with cough fever pain history of smoking follow up chest film taken".split()
    out = []
    for i in range(n):
        lab = labels[i % len(labels)]
        words = list(rng.choice(filler, size=6))
        if with_label_word:
            words.insert(int(rng.integers(0, 6)), lab)
        out.append(Sample(
            id=f"{dataset}-{seed}-{i}", dataset=dataset, split="train",
            images=[ImageRef(array=(rng.random((24, 24)) * 255).astype(np.uint8))],
            text={"clinical_notes": " ".join(words)}, targets={"label": lab}, patient_id=f"p{i}",
        ))
    return out


def _task(**kw) -> DiagnosisTask:
    """A tiny diagnosis task; keyword arguments are `model:` keys, sections merged key by key."""
    base = {"image": {"size": 24, "encoder_kwargs": {"widths": [8, 16]}}, "text": {"encoder_kwargs": TINY_TEXT}, "dim": 32}
    return DiagnosisTask.from_config(merged(base, **kw))


@pytest.mark.parametrize("fusion", FUSIONS)
def test_every_fusion_trains_and_predicts(fusion):
    torch.manual_seed(0)
    s = _samples(8)
    t = _task(fusion=fusion)
    t.setup(s)
    b = t.collate(s)
    out = t.training_step(b)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    grads = [p.grad for p in t.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    t.eval()
    with torch.no_grad():
        recs = t.evaluation_step(b)
    assert [r["id"] for r in recs] == [x.id for x in s]
    assert all(abs(sum(r["prediction"]["probs"].values()) - 1) < 1e-5 for r in recs)
    m = t.compute_metrics(recs)
    assert m["n_scored"] == 8 and 0 <= m["f1_macro"] <= 1 and m["labels"] == ["edema", "fracture"]
    # the encoder a fusion does not use is never built
    assert (t.model.image_encoder is None) == (fusion == "text_only")
    assert (t.model.text_encoder is None) == (fusion == "image_only")


def _train_text_only(guard: bool) -> float:
    torch.manual_seed(0)
    train, test = _samples(64, seed=1), _samples(40, seed=2)
    t = _task(fusion="text_only", text={"mask_label_words": guard}, dropout=0.0)
    t.setup(train)
    opt = torch.optim.Adam([p for p in t.parameters() if p.requires_grad], lr=3e-3)
    t.train()
    for step in range(40):
        idx = [(step * 16 + j) % len(train) for j in range(16)]
        loss = t.training_step(t.collate([train[i] for i in idx]))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    t.eval()
    with torch.no_grad():
        recs = t.evaluation_step(t.collate(test))
    return t.compute_metrics(recs)["accuracy"]


def test_label_word_guard_drops_text_only_accuracy_to_chance():
    # The notes name the label: without the guard a text model reads the answer off them.
    assert _train_text_only(guard=False) >= 0.9
    # With the guard the label word is [MASK]ed and the rest of the text is label-independent.
    assert _train_text_only(guard=True) <= 0.65


def test_guard_masks_synonyms_and_is_saved_in_state():
    s = [Sample(id="a", dataset="covid_cxr", split="x", images=[ImageRef(array=np.zeros((8, 8), np.uint8))],
                text={"clinical_notes": "SARS-CoV-2 positive, bilateral pneumonia. No other findings."},
                targets={"finding_group": g}) for g in ("COVID-19", "other pneumonia")]
    t = _task(target="finding_group", fusion="text_only")
    t.setup(s)
    text = t.text_of(s[0])
    assert "sars" not in text.lower() and "pneumonia" not in text.lower()
    assert "No other findings" in text  # stop words stay: negations are not label names
    t2 = _task(target="finding_group", fusion="text_only")
    t2.load_state(json.loads(json.dumps(t.state())))
    assert t2.text_of(s[0]) == text
    off = _task(target="finding_group", fusion="text_only", text={"mask_label_words": False})
    off.setup(s)
    assert off.text_of(s[0]) == s[0].text["clinical_notes"]


def test_missing_and_ignored_labels_are_masked_from_loss_and_metrics():
    s = _samples(6)
    s[1].targets["label"] = "unknown"
    del s[2].targets["label"]
    t = _task(fusion="image_only")
    t.setup(s)
    b = t.collate(s)
    assert b["targets"].tolist()[1:3] == [L.IGNORE, L.IGNORE]
    assert torch.isfinite(t.training_step(b)["loss"])
    t.eval()
    with torch.no_grad():
        recs = t.evaluation_step(b)
    assert recs[1]["reference"] is None and recs[2]["reference"] is None
    m = t.compute_metrics(recs)
    assert m["n_scored"] == 4 and m["n_unlabelled"] == 2


def test_required_modalities_raise_bad_input():
    from medmm.errors import BadInputError

    s = _samples(2)
    t = _task(fusion="image_only", text={"required": True})
    t.setup(s)
    s[0].text = {}
    with pytest.raises(BadInputError, match="clinical_notes"):
        t.collate(s)
    s[1].images = []
    with pytest.raises(BadInputError, match="no image"):
        t.collate(s[1:])


def test_multilabel_uncertain_and_missing_are_masked():
    rng = np.random.default_rng(0)
    s = []
    for i in range(8):
        f = {"Edema": LabelState(i % 2), "Effusion": LabelState.UNCERTAIN if i % 3 == 0 else LabelState((i // 2) % 2)}
        if i == 5:
            del f["Edema"]
        s.append(Sample(id=str(i), dataset="toy", split="train", images=[ImageRef(array=(rng.random((16, 16)) * 255).astype(np.uint8))],
                        text={"report": "x"}, findings=f))
    t = _task(findings=[], fusion="image_only", image={"size": 16}, imbalance={"loss": "focal"})
    t.setup(s)
    assert t.classes == ["Edema", "Effusion"]
    b = t.collate(s)
    y = b["targets"]
    assert torch.isnan(y[0, 1]) and torch.isnan(y[5, 0]) and y[1, 0] == 1
    loss = t.training_step(b)["loss"]
    assert torch.isfinite(loss)
    t.eval()
    with torch.no_grad():
        recs = t.evaluation_step(b)
    assert recs[0]["reference"]["Effusion"] is None
    m = t.compute_metrics(recs)
    assert "auroc_macro" in m and m["n_scored"] == 8
    pos = _task(findings=["Effusion"], uncertain="positive", fusion="image_only", image={"size": 16})
    pos.setup(s)
    assert pos.collate(s[:1])["targets"][0, 0] == 1.0


@pytest.mark.parametrize("loss", ["ce", "weighted_ce", "focal", "logit_adjusted"])
def test_imbalance_losses_run(loss):
    s = _samples(12, labels=("a_cls", "b_cls", "b_cls", "b_cls"))
    t = _task(fusion="image_only", imbalance={"loss": loss, "focal_weighted": True})
    t.setup(s)
    assert t.class_counts == [3, 9]
    out = t.training_step(t.collate(s))
    assert torch.isfinite(out["loss"])


def test_balanced_sampling_weights():
    s = _samples(12, labels=("a_cls", "b_cls", "b_cls", "b_cls"))
    s[0].targets["label"] = "unknown"
    t = _task(fusion="image_only", imbalance={"balanced_sampling": True})
    t.setup(s)
    w = t.sample_weights(s)
    mass = {}
    for x, wi in zip(s, w, strict=True):
        mass[x.targets["label"]] = mass.get(x.targets["label"], 0) + wi
    assert w[0] == 0.0 and mass["a_cls"] == pytest.approx(mass["b_cls"])
    assert _task(fusion="image_only").sample_weights(s) is None


def test_thresholds_tuned_on_validation_saved_and_used():
    s = _samples(10)
    t = _task(fusion="image_only", imbalance={"threshold_tuning": "f1"})
    t.setup(s)
    recs = [{"id": str(i), "reference": "edema" if i < 5 else "fracture",
             "prediction": {"label": "edema", "probs": {"edema": 0.9 - 0.02 * i, "fracture": 0.1 + 0.02 * i}}}
            for i in range(10)]
    # arg-max calls all "edema"; the tuned threshold for fracture separates the two groups
    assert t.calibrate(recs) is True
    assert 0.18 < t.thresholds[1] <= 0.2
    t2 = _task(fusion="image_only", imbalance={"threshold_tuning": "f1"})
    t2.load_state(json.loads(json.dumps(t.state())))
    assert t2.thresholds == t.thresholds
    probs = np.array([[0.85, 0.15], [0.75, 0.25]])
    assert t2._decide(probs) == ["edema", "fracture"]
    assert _task(fusion="image_only").calibrate(recs) is False


def test_decision_scores_match_sklearn():
    from sklearn.metrics import balanced_accuracy_score, f1_score

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
    d = decision_scores(y, p, 4)
    assert d["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p))
    assert d["f1_macro"] == pytest.approx(f1_score(y, p, labels=[0, 1, 2, 3], average="macro", zero_division=0))


def test_metrics_carry_patient_bootstrap_intervals_of_the_headline_metrics():
    from medmm.tasks.diagnosis.metrics import diagnosis_metrics

    rng = np.random.default_rng(0)
    classes = ["a", "b", "c"]
    recs = []
    for i in range(120):
        p = rng.dirichlet([1, 1, 1])
        recs.append({"id": str(i), "group": f"patient{i // 4}", "reference": classes[int(rng.integers(3))],
                     "prediction": {"label": classes[int(p.argmax())], "probs": dict(zip(classes, p.tolist(), strict=True))}})
    m = diagnosis_metrics(recs, classes, False, n_resamples=300)
    assert m["n_groups"] == 30  # resampled by patient, not by image
    for key in ("auroc_macro_ovr", "accuracy", "balanced_accuracy", "f1_macro"):
        low, high = m["ci"][key]
        assert low < m[key] < high and high - low > 0.02  # the fast forms equal the reported values
    assert "ci" not in diagnosis_metrics(recs, classes, False)  # n_resamples=0: no intervals
    multi = [{"id": str(i), "group": str(i), "prediction": {"probs": {"x": float(v)}},
              "reference": {"x": int(v + rng.normal(0, 0.3) > 0.5) if i % 10 else None}}
             for i, v in enumerate(rng.random(80))]
    mm = diagnosis_metrics(multi, ["x"], True, n_resamples=300)
    low, high = mm["ci"]["auroc_macro"]
    assert low < mm["auroc_macro"] < high and mm["n_groups"] == 80  # a missing label is NaN, left out per resample


def test_external_validation_projects_onto_other_label_space():
    classes = ("COVID-19", "no finding", "other", "other pneumonia")
    train = []
    rng = np.random.default_rng(0)
    for i in range(8):
        train.append(Sample(id=f"c{i}", dataset="covid_cxr", split="x", images=[ImageRef(array=(rng.random((16, 16)) * 255).astype(np.uint8))],
                            text={"clinical_notes": "n"}, targets={"finding_group": classes[i % 4]}))
    t = _task(target="finding_group", fusion="image_only", image={"size": 16})
    t.setup(train)
    ext = [Sample(id=f"e{i}", dataset="pneumoniamnist", split="test", images=[ImageRef(array=(rng.random((28, 28)) * 255).astype(np.uint8))],
                  targets={"label": ("normal", "pneumonia")[i % 2]}) for i in range(6)]
    desc = t.prepare_external("pneumoniamnist")
    assert desc["name"] == "covid_cxr_to_pneumoniamnist" and desc["mapping"]["other"] is None
    t.eval()
    with torch.no_grad():
        recs = t.evaluation_step(t.collate(ext))
    assert {r["reference"] for r in recs} == {"normal", "pneumonia"}
    assert all(set(r["prediction"]["probs"]) == {"normal", "pneumonia"} for r in recs)
    assert all(abs(sum(r["prediction"]["probs"].values()) - 1) < 1e-6 for r in recs)
    m = t.compute_metrics(recs)
    assert m["labels"] == ["normal", "pneumonia"] and m["n_scored"] == 6
    from medmm.errors import MedmmError

    t2 = _task(target="finding_group", fusion="image_only", image={"size": 16})
    t2.setup(train)
    with pytest.raises(MedmmError, match="no label map"):
        t2.prepare_external("breastmnist")


def _engine_run(cfg_path: Path, out: Path, extra: list[str]):
    from medmm.engine import load_config
    from medmm.engine.api import train

    cfg = load_config(cfg_path, extra, validate_model=True)
    return train(cfg, out)


FAST = ["trainer.max_steps=2", "trainer.max_epochs=1", "trainer.batch_size=4", "trainer.limit_val_batches=2",
        "data.max_samples=12", "model.image.size=32", "model.dim=32",
        "model.text.encoder_kwargs={dim: 32, num_layers: 1, num_heads: 2, vocab_size: 300}", "trainer.progress_bar=false"]


def test_vqa_rad_organ_config_trains_a_few_steps(tmp_path, monkeypatch):
    from medmm.data.bundled import vqa_rad_sample_root

    monkeypatch.chdir(REPO)
    res = _engine_run(REPO / "configs/diagnosis/vqa_rad_organ.yaml", tmp_path / "run",
                      FAST + [f"data.root={vqa_rad_sample_root()}"])
    assert "test" in res and 0 <= res["test"]["accuracy"] <= 1
    state = json.loads((tmp_path / "run" / "task_state.json").read_text())["state"]
    assert state["classes"] == ["ABD", "CHEST", "HEAD"] and "head" in state["mask_words"]


def test_medpix2_config_trains_a_few_steps(tmp_path, monkeypatch, shared_data):
    monkeypatch.chdir(REPO)
    res = _engine_run(REPO / "configs/diagnosis/medpix2.yaml", tmp_path / "run", FAST + ["data.max_samples=24"])
    from medmm.engine.selection import is_selection_file, plain_names

    # val's numbers are named selection_* exactly when its file's protocol says it chose something (issue 26)
    doc = json.loads((tmp_path / "run" / "metrics" / "val.json").read_text())
    assert "val" in res and is_selection_file(doc) == any(k.startswith("selection_") for k in res["val"])
    val = plain_names(res["val"])
    assert val["n_scored"] + val["n_unlabelled"] > 0


@pytest.mark.slow
def test_external_evaluate_through_engine(tmp_path, monkeypatch, shared_data):
    from medmm.engine.api import evaluate

    monkeypatch.chdir(REPO)
    _engine_run(REPO / "configs/diagnosis/covid_cxr.yaml", tmp_path / "run",
                FAST + ["model.fusion=image_only", "data.max_samples=40"])
    res = evaluate(tmp_path / "run", shared_data / "medmnist", dataset="pneumoniamnist_balanced", split="test")
    prov = res["provenance"]
    assert prov["external"] is True and prov["training_dataset"] == "covid_cxr"
    assert prov["label_map"]["name"] == "covid_cxr_to_pneumoniamnist_balanced"
    assert res["metrics"]["labels"] == ["normal", "pneumonia"] and res["metrics"]["n_scored"] == 468
