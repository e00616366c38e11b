"""VQA task: vocabularies, routing, KG facts, rationale, state, engine train/evaluate."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch

from medmm.data import load_dataset
from medmm.data.bundled import vqa_rad_sample_root
from medmm.errors import BadInputError, MedmmError
from medmm.tasks.vqa.answers import normalise_vqa_answer
from medmm.tasks.vqa.task import VQATask
from tests.conftest import merged, shared_dataset

TINY = {
    "image": {"encoder": "small_cnn", "encoder_kwargs": {"in_channels": 1, "image_size": 32, "widths": [8, 16]}},
    "text": {"encoder": "scratch", "max_length": 64,
             "encoder_kwargs": {"vocab_size": 600, "dim": 32, "num_layers": 1, "num_heads": 2, "max_length": 64}},
    "fusion": "cross_attention",
    "fusion_kwargs": {"heads": 2},
    "dim": 32,
    "decoder": {"layers": 1, "heads": 2},
    "bootstrap_resamples": 50,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def samples():
    return load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples


def make_task(samples, base: dict | None = None, **kw) -> VQATask:
    torch.manual_seed(0)
    task = VQATask.from_config(merged(TINY if base is None else base, **kw))
    task.setup(samples)
    return task


def write_kg(root: Path) -> Path:
    kg = root / "KG"
    kg.mkdir(parents=True)
    (kg / "en_disease.csv").write_text("disease#attribute#value\nPneumonia#location#Lung\n", encoding="utf-8")
    (kg / "en_organ.csv").write_text("organ#attribute#value\nLung#function#breathe\nBrain#function#thinking\n", encoding="utf-8")
    (kg / "en_organ_rel.csv").write_text("organ#attribute#value\nLung#belong to#Respiratory System\n", encoding="utf-8")
    return root


def test_setup_builds_vocabularies(samples):
    task = make_task(samples, classifier={"min_open_answer_count": 2})
    assert {"yes", "no"} <= set(task.closed_answers)
    assert set(task.answers) == set(task.closed_answers) | set(task.open_answers)
    # every kept open answer was seen at least twice on open training questions
    opens = [normalise_vqa_answer(s.text["answer"]) for s in samples if s.targets["answer_type"] == "OPEN"]
    assert all(opens.count(a) >= 2 for a in task.open_answers)
    assert len(task.open_answers) < len(set(opens))  # singletons are left to the decoder
    assert task.words[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]


def test_training_step_learns_and_grads_flow(samples):
    task = make_task(samples)
    batch = task.collate(samples[:16])
    assert batch["images"].shape == (16, 1, 32, 32)
    opt = torch.optim.Adam(task.parameters(), 3e-3)
    task.train()
    first = None
    for _ in range(15):
        out = task.training_step(batch)
        assert torch.isfinite(out["loss"])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = first if first is not None else float(out["loss"].detach())
    assert float(out["loss"]) < 0.7 * first
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in task.image_encoder.parameters())


def test_routing_rule(samples):
    sub = samples[:40]
    task = make_task(samples, open_confidence=1.0).eval()
    recs = task.evaluation_step(task.collate(sub))
    closed = [r for r in recs if r["answer_type"] == "CLOSED"]
    opened = [r for r in recs if r["answer_type"] == "OPEN"]
    assert closed and opened
    # closed questions: always the classifier, restricted to answers seen on closed questions
    assert all(r["source"] == "classifier" and r["prediction"] in task.closed_answers for r in closed)
    # threshold 1.0: an open question goes to the decoder unless it decodes nothing
    assert all(r["source"] == "decoder" or r["prediction"] in task.open_answers for r in opened)
    assert any(r["source"] == "decoder" for r in opened)
    task.config.open_confidence = 0.0
    recs0 = task.evaluation_step(task.collate(sub))
    assert all(r["source"] == "classifier" for r in recs0)
    assert all(r["prediction"] in task.open_answers for r in recs0 if r["answer_type"] == "OPEN")
    for r in recs0:
        for key in ("id", "question", "prediction", "reference", "answer_type", "question_type", "image_path"):
            assert key in r


def test_late_fusion_has_one_answer_head_per_modality(samples):
    task = make_task(samples, base={**TINY, "fusion_kwargs": {}}, fusion="late").eval()
    assert set(task.classifier) == {"image", "text"}
    batch = task.collate(samples[:8])
    fused, _, _ = task.forward_features(batch)
    per_image = task.classifier["image"](fused.modality_features[:, 0])
    per_text = task.classifier["text"](fused.modality_features[:, 1])
    # logits are the mean of the two heads, not one head on the mean of the features
    assert torch.allclose(task.answer_logits(fused), (per_image + per_text) / 2, atol=1e-6)
    assert not torch.allclose(task.answer_logits(fused), task.classifier["image"](fused.pooled), atol=1e-3)
    task.train()
    out = task.training_step(batch)
    out["loss"].backward()
    assert all(p.grad is not None for p in task.classifier["text"].parameters())


def test_late_fusion_stacking_is_refused_not_ignored():
    from medmm.errors import MedmmError

    with pytest.raises(MedmmError, match="not 'stack'"):
        VQATask.from_config({**TINY, "fusion": "late", "fusion_kwargs": {"combine": "stack"}})


def test_state_round_trip_gives_same_answers(samples):
    task = make_task(samples).eval()
    batch = task.collate(samples[:24])
    before = [(r["prediction"], r["confidence"]) for r in task.evaluation_step(batch)]
    state = json.loads(json.dumps(task.state()))
    other = VQATask.from_config(dict(TINY))
    other.load_state(state)
    other.load_state_dict(task.state_dict(), strict=True)
    other.eval()
    after = [(r["prediction"], r["confidence"]) for r in other.evaluation_step(other.collate(samples[:24]))]
    assert before == after


def test_kg_facts_and_rationale(samples, tmp_path):
    root = write_kg(tmp_path / "slake")
    task = make_task(samples, kg={"enabled": True, "root": str(root), "top_k": 2}, rationale=True).eval()
    text, facts = task.text_input("Is there pneumonia in the lungs?")
    assert facts == ["pneumonia - location - lung", "lung - function - breathe"]
    assert text == "Is there pneumonia in the lungs? [SEP] pneumonia - location - lung; lung - function - breathe"
    assert task.text_input("Is the liver enlarged?") == ("Is the liver enlarged?", [])
    lung = [s for s in samples if "lung" in s.text["question"].lower()][:4]
    recs = task.evaluation_step(task.collate(lung))
    for r in recs:
        rat = r["rationale"]
        assert rat["facts"] and all("lung" in f for f in rat["facts"][:1] + rat["facts"][-1:])
        assert len(rat["image_regions"]) == 3 and rat["image_regions"][0]["grid"] == [8, 8]
        assert len(rat["text_tokens"]) == 3 and all(isinstance(t["token"], str) for t in rat["text_tokens"])
    # the KG travels in the state: no kg.root needed to rebuild
    other = VQATask.from_config(merged(TINY, kg={"enabled": True}, rationale=True))
    other.load_state(json.loads(json.dumps(task.state())))
    assert other.text_input("pneumonia?")[1] == ["pneumonia - location - lung"]


def test_use_kg_without_root_is_an_error(samples):
    from medmm.errors import MedmmError

    with pytest.raises(MedmmError, match=r"model\.kg\.root"):
        make_task(samples[:10], kg={"enabled": True})


def test_gated_fusion_rationale_uses_spatial_attention(samples):
    task = make_task(samples, base={**TINY, "fusion_kwargs": {}}, fusion="gated", rationale=True).eval()
    rec = task.evaluation_step(task.collate(samples[:2]))[0]
    assert len(rec["rationale"]["image_regions"]) == 3 and "text_tokens" not in rec["rationale"]


def test_frozen_text_cache_matches_encoder(samples):
    task = make_task(samples, text={"freeze": True}).eval()
    batch = task.collate(samples[:8])
    cached = task._frozen_text_features(batch)
    cached_again = task._frozen_text_features(task.collate(samples[4:8] + samples[:4]))
    direct = task.text_encoder(batch["input_ids"], batch["attention_mask"])
    m = batch["attention_mask"].bool()[..., None]
    assert torch.allclose(cached.tokens * m, direct.tokens * m, atol=1e-5)
    assert torch.allclose(cached_again.pooled[:4], direct.pooled[4:], atol=1e-5)
    task.train()
    assert not task.text_encoder.training


def test_missing_images_clear_error(samples):
    no_img = [copy.copy(s) for s in samples[:5]]  # copies: `samples` is shared by the module's tests
    for s in no_img:
        s.images = []
    with pytest.raises(BadInputError, match="images are missing"):
        VQATask.from_config(dict(TINY)).setup(no_img)


def test_slake_config_says_images_missing(tmp_path):
    from medmm.engine import load_config, train

    shared_dataset("slake")
    cfg = load_config("configs/vqa/slake.yaml", ["model.text.encoder=scratch", "model.text.freeze=false"])
    with pytest.raises(BadInputError, match=r"Slake1.0/imgs/.*images are missing"):
        train(cfg, tmp_path / "run")


def _test_root(tmp_path: Path) -> Path:
    """A VQA-RAD-layout root holding only test_freeform questions (on the sample's images)."""
    src = vqa_rad_sample_root()
    recs = json.loads((src / "VQA_RAD Dataset Public.json").read_text())[:30]
    for r in recs:
        r["phrase_type"] = "test_freeform"
    root = tmp_path / "vqa_rad_test"
    root.mkdir()
    (root / "VQA_RAD Dataset Public.json").write_text(json.dumps(recs))
    shutil.copytree(src / "VQA_RAD Image Folder", root / "VQA_RAD Image Folder")
    return root


def test_engine_train_then_evaluate_on_test_only_root(tmp_path):
    from medmm.engine import evaluate, load_config, predict, train

    cfg = load_config(
        "configs/vqa/vqa_rad_sample.yaml",
        [f"data.root={vqa_rad_sample_root()}", "data.max_samples=64", "trainer.max_epochs=1", "trainer.batch_size=16",
         "model.image.encoder_kwargs={in_channels: 1, image_size: 32, widths: [8, 16]}",
         "model.text.encoder_kwargs={vocab_size: 600, dim: 32, num_layers: 1, num_heads: 2, max_length: 48}",
         "model.dim=32", "model.bootstrap_resamples=20", "model.rationale=true"],
    )
    run = tmp_path / "run"
    metrics = train(cfg, run)
    assert 0.0 <= metrics["val"]["selection_overall_accuracy"] <= 1.0  # validation chose the epoch
    root = _test_root(tmp_path)
    res = evaluate(run, root, split="test")
    m = res["metrics"]
    assert m["n"] == 30 and set(m["ci"]) >= {"overall_accuracy", "closed_accuracy", "open_exact_match"}
    assert res["provenance"]["n_samples"] == 30
    preds = predict(run, root, split="test")
    assert len(preds) == 30 and all("rationale" in p and "prediction" in p for p in preds)


def test_image_augment_trains_the_encoder_on_jittered_images(samples, monkeypatch):
    import medmm.tasks.vqa.task as vqa_module

    with pytest.raises(MedmmError, match="augment.image needs model.image.freeze: false"):
        VQATask.from_config(merged(TINY, augment={"image": True}, image={"freeze": True}))
    task = make_task(samples, augment={"image": True})
    seen = []
    real = vqa_module.random_affine_jitter
    monkeypatch.setattr(vqa_module, "random_affine_jitter", lambda images: seen.append(images) or real(images))
    batch = task.collate(samples[:8])
    task.train()
    out = task.training_step(batch)
    out["loss"].backward()
    assert len(seen) == 1 and seen[0] is batch["images"]  # the collated batch is left as it was
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in task.image_encoder.parameters())
    task.eval()
    task.evaluation_step(batch)
    assert len(seen) == 1  # evaluation sees the images as they are
