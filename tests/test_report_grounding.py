"""Grounded consensus decoding: the attribute lexicon, attribute-weighted pseudo-references, and
the report task's pretrained / frozen image encoder and grounded re-ranking."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medmm.errors import BadInputError, MedmmError  # noqa: E402
from medmm.tasks.report.grounding import AttributeLexicon, reference_attribute_weights  # noqa: E402
from medmm.tasks.report.task import ReportGenerationTask  # noqa: E402
from tests.conftest import merged  # noqa: E402
from tests.test_report_generation_conditioning import SMALL, _samples  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CAPTIONS = ["axial ct of the liver"] * 10 + ["sagittal mr of the brain"] * 10 + ["coronal mr of the knee"] * 10
PLANE = [0] * 10 + [1] * 10 + [2] * 10
CLASSES = {"plane": ["Axial", "Sagittal", "Coronal"]}


def test_lexicon_learns_indicative_words_and_penalises_contradiction():
    lex = AttributeLexicon.fit(CAPTIONS, {"plane": PLANE}, CLASSES, min_count=5, min_purity=0.8)
    assert {"axial", "sagittal", "coronal", "brain", "liver"} <= set(lex.words["plane"])
    assert "of" not in lex.words["plane"] and "mr" not in lex.words["plane"]  # "mr": two planes, impure
    sagittal_image = {"plane": [0.05, 0.9, 0.05]}
    assert lex.consistency("sagittal view", sagittal_image) == 0.0  # agrees: no penalty (never a bonus)
    assert lex.consistency("axial ct", sagittal_image) < -1.0  # contradicts the predicted plane
    assert lex.consistency("a mass is seen", sagittal_image) == 0.0  # names nothing
    assert lex.consistency("axial ct", {}) == 0.0
    q = lex.implied("axial ct of the liver")["plane"]
    assert q.argmax() == 0 and q.sum() == pytest.approx(1.0)
    again = AttributeLexicon.from_dict(lex.to_dict())
    assert again.consistency("axial ct", sagittal_image) == pytest.approx(lex.consistency("axial ct", sagittal_image))
    with pytest.raises(MedmmError):
        lex.consistency("axial", {"plane": [0.5, 0.5]})
    with pytest.raises(MedmmError):
        AttributeLexicon.fit(CAPTIONS, {"plane": PLANE[:3]}, CLASSES)


def test_lexicon_is_the_same_under_any_hash_seed():
    """String hashing differs per process (PYTHONHASHSEED); the saved lexicon and its floats must not."""
    import json
    import os
    import subprocess
    import sys

    code = ("import json; from tests.test_report_grounding import CAPTIONS, PLANE, CLASSES; "
            "from medmm.tasks.report.grounding import AttributeLexicon as L; "
            "lex = L.fit(CAPTIONS + ['axial flair of the brain'] * 6, {'plane': PLANE + [0] * 6}, CLASSES, min_count=5, min_purity=0.5); "
            "print(json.dumps([lex.to_dict(), lex.implied('axial sagittal coronal brain liver flair')['plane'].tolist()]))")
    outs = []
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outs.append(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
    assert outs[0] == outs[1] == outs[2]
    assert list(json.loads(outs[0])[0]["words"]["plane"]) == sorted(json.loads(outs[0])[0]["words"]["plane"])


def test_reference_weights_follow_the_predicted_attributes():
    probs = [[0.8, 0.2], [0.1, 0.9]]
    w = reference_attribute_weights([[0, 1], [1, 0], [-1, 1]], probs, power=1.0)
    assert w == pytest.approx([0.8 * 0.9, 0.2 * 0.1, 0.9])
    assert reference_attribute_weights([[0, 1]], probs, power=0.0) == [1.0]
    assert reference_attribute_weights([[0, 1]], probs, power=2.0)[0] == pytest.approx((0.8 * 0.9) ** 2)
    with pytest.raises(MedmmError):
        reference_attribute_weights([[0]], probs, 1.0)


def _task(**kw) -> tuple[ReportGenerationTask, list]:
    train = _samples(16)
    torch.manual_seed(0)
    task = ReportGenerationTask.from_config(merged(SMALL, attributes={"targets": ["modality", "plane"], "min_count": 2}, **kw))
    task.setup(train)
    return task, train


def test_task_fits_grounding_state_and_refuses_grounding_without_it():
    task, train = _task()
    assert len(task.store_labels) == 16 and task.lexicon is not None
    assert task.store_labels[0] == [task.attributes["modality"].index("CT"), task.attributes["plane"].index("Axial")]
    st = task.state()
    clone = ReportGenerationTask.from_config(merged(SMALL, attributes={"targets": ["modality", "plane"], "min_count": 2}))
    clone.load_state(st)
    assert clone.store_labels == task.store_labels and clone.lexicon.to_dict() == task.lexicon.to_dict()
    with pytest.raises(MedmmError):
        task.fit_grounding(train[::-1])  # not the store's order
    with pytest.raises(MedmmError, match=r"need model\.attributes\.targets"):
        ReportGenerationTask.from_config(merged(SMALL, mbr={"attribute_weight": 0.1}))
    with pytest.raises(MedmmError):
        ReportGenerationTask.from_config(merged(SMALL, attributes={"targets": ["plane"]}, mbr={"reference_power": -1.0}))
    old = ReportGenerationTask.from_config(merged(SMALL, attributes={"targets": ["modality", "plane"], "min_count": 2}))
    old.load_state({k: v for k, v in st.items() if k not in ("store_labels", "attribute_lexicon")})  # a run from before
    old.load_state_dict(task.state_dict())
    with pytest.raises(MedmmError, match="fit_grounding"):
        old.set_decoding(mbr_references=4, mbr_attribute_weight=0.5)
    old.fit_grounding(train)
    old.set_decoding(mbr_references=4, mbr_attribute_weight=0.5)


def test_grounded_pick_drops_the_contradicting_candidate():
    task, train = _task(mbr={"references": 4})
    task.eval()
    hits = task.collate(train[:1])["hits"][0]
    cands = ["axial ct shows a liver mass.", "sagittal mr shows a brain lesion."]
    ref_ids = [h for h, _ in hits[:4]]
    mr_image = {"modality": np.array([0.02, 0.98]), "plane": np.full(len(task.attributes["plane"]), 1e-3)}
    mr_image["plane"][task.attributes["plane"].index("Sagittal")] = 1.0
    ct_image = {"modality": np.array([0.98, 0.02]), "plane": np.full(len(task.attributes["plane"]), 1e-3)}
    ct_image["plane"][task.attributes["plane"].index("Axial")] = 1.0
    plain = task._consensus_pick(cands, hits, None, mr_image)  # weight 0: grounding off
    task.set_decoding(mbr_attribute_weight=10.0)
    assert task._consensus_pick(cands, hits, None, mr_image)["text"] == cands[1]
    assert task._consensus_pick(cands, hits, None, ct_image)["text"] == cands[0]
    assert task._consensus_pick(cands, hits, None, None)["text"] == plain["text"]  # no probabilities: plain
    assert ref_ids
    # the typical-consensus baseline in the records never uses grounding
    rec = task.evaluation_step(task.collate(train[:2]))[0]
    assert "typical_consensus_prediction" in rec


def test_sampled_candidates_are_added_and_reproducible():
    task, train = _task(mbr={"references": 4, "candidates": 2, "samples": 3})
    task.eval()
    batch = task.collate(train[:2])
    ids, _ = task.generate_candidates(batch)
    assert all(2 < len(c) <= 5 for c in ids)
    assert task.generate_candidates(batch)[0] == ids  # seeded sampling


def test_pretrained_frozen_image_encoder(tmp_path):
    from medmm.models import create_image_encoder
    from medmm.models.pretrained import save_weights

    torch.manual_seed(3)
    enc = create_image_encoder(SMALL["image"]["encoder"], **SMALL["image"]["encoder_kwargs"])
    for p in enc.parameters():
        p.data.normal_(0, 0.1)
    path = tmp_path / "enc.pt"
    sha = save_weights(enc, path, {"architecture": "small_cnn"})
    task, train = _task(image={"pretrained": str(path), "freeze": True})
    for a, b in zip(task.image_encoder.state_dict().values(), enc.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert task.state()["image_pretrained_sha256"] == sha
    assert not any(p.requires_grad for p in task.image_encoder.parameters())
    task.train()
    assert task.training and not task.image_encoder.training  # frozen: fixed normalisation statistics
    before = [p.clone() for p in task.image_encoder.parameters()]
    opt = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=1e-2)
    task.training_step(task.collate(train[:4]))["loss"].backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, task.image_encoder.parameters(), strict=True))
    with pytest.raises(BadInputError, match="missing.pt: weights file not found"):
        _task(image={"pretrained": str(tmp_path / "missing.pt")})
