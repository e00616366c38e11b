"""Report generation conditioned on predicted image attributes, and retrieval with a frozen,
trained image key (a `retrieval` run's image tower) instead of the thumbnail."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medmm.data.schema import ImageRef, Sample  # noqa: E402
from medmm.data.transforms import ImageInputSpec  # noqa: E402
from medmm.errors import MedmmError  # noqa: E402
from medmm.tasks.report.attributes import OTHER, attribute_accuracy, attribute_index, fit_attribute_classes  # noqa: E402
from medmm.tasks.report.retrieval import FrozenImageKey  # noqa: E402
from medmm.tasks.report.task import ReportGenerationTask  # noqa: E402
from tests.conftest import merged  # noqa: E402

SMALL = {
    "image": {"encoder": "small_cnn", "encoder_kwargs": {"in_channels": 1, "image_size": 16, "widths": [8, 16]},
              "max_images": 1},
    "text_field": "caption",
    "group_by": "case",
    "decoder": {"min_word_freq": 1, "layers": 1, "heads": 2},
    "dim": 32,
    "dropout": 0.0,
    "decoding": {"max_length": 10},
    "bootstrap_resamples": 0,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _samples(n: int, seed: int = 0, split: str = "train") -> list[Sample]:
    """Bright images are "CT" with an axial caption, striped ones "MR" with a sagittal one."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        ct = i % 2 == 0
        img = (rng.random((16, 16)) * 60 + (180 if ct else 0)).astype(np.uint8)
        if not ct:
            img[::2] = 255
        plane = "Axial" if ct else ("Sagittal" if i % 4 == 1 else "Coronal")
        targets = {"modality": "CT" if ct else "MR", "plane": plane}
        if i == 3:
            targets["plane"] = "Oblique"  # one rare value -> "<other>"
        cap = "axial ct shows a liver mass." if ct else f"{plane.lower()} mr shows a brain lesion."
        out.append(Sample(id=f"{split}{i}", dataset="toy", split=split, images=[ImageRef(array=img)],
                          text={"caption": cap}, targets=targets, case_id=f"c{i // 2}"))
    return out


def test_attribute_classes_index_and_accuracy():
    s = _samples(12)
    cls = fit_attribute_classes(s, ["modality", "plane"], min_count=2)
    assert cls["modality"] == ["CT", "MR"]
    assert cls["plane"][0] == "Axial" and cls["plane"][-1] == OTHER and "Oblique" not in cls["plane"]
    assert attribute_index(cls["plane"], "Oblique") == len(cls["plane"]) - 1
    assert attribute_index(cls["modality"], None) == -1
    assert attribute_index(["CT"], "MR") == -1  # no "<other>" class: a new value is ignored
    with pytest.raises(MedmmError):
        fit_attribute_classes(s, ["no_such_target"], 1)
    recs = [{"attributes": {"modality": {"prediction": "CT", "reference_class": "CT"}}},
            {"attributes": {"modality": {"prediction": "CT", "reference_class": "MR"}}},
            {"attributes": {"modality": {"prediction": "MR", "reference_class": None}}}]
    assert attribute_accuracy(recs) == {"modality": 0.5}


def test_attribute_heads_learn_and_condition_the_decoder():
    train, test = _samples(16), _samples(8, seed=1, split="test")
    torch.manual_seed(0)
    task = ReportGenerationTask.from_config(merged(SMALL, attributes={"targets": ["modality", "plane"], "min_count": 2}))
    task.setup(train)
    batch = task.collate(train)
    assert batch["attributes"].shape == (16, 2)
    mem_plain = task.encode(batch)[0]
    n_img = mem_plain.shape[1] - 2
    assert len(task.last_attribute_logits) == 2
    opt = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=3e-3)
    task.train()
    first = None
    for _ in range(40):
        opt.zero_grad()
        out = task.training_step(batch)
        out["loss"].backward()
        opt.step()
        first = first if first is not None else float(out["loss_attributes"])
    assert float(out["loss_attributes"]) < 0.5 * first
    task.eval()
    recs = task.evaluation_step(task.collate(test))
    acc = attribute_accuracy(recs)
    assert acc["modality"] == 1.0  # bright vs striped images: trivially separable
    for r in recs:
        a = r["attributes"]["modality"]
        assert a["reference"] in ("CT", "MR") and 0 < a["probability"] <= 1
    # the attribute tokens are part of the decoder memory, after the image tokens
    mem, pad, _ = task.encode(task.collate(test))
    assert mem.shape[1] == n_img + 2 and not pad[:, -2:].any()
    # state round trip keeps the class lists and reproduces the predictions
    clone = ReportGenerationTask.from_config(merged(SMALL, attributes={"targets": ["modality", "plane"], "min_count": 2}))
    clone.load_state(task.state())
    clone.load_state_dict(task.state_dict(), strict=True)
    clone.eval()
    assert clone.attributes == task.attributes
    assert [r["prediction"] for r in clone.evaluation_step(clone.collate(test))] == [r["prediction"] for r in recs]


from medmm.tasks.retrieval.task import RetrievalTask  # noqa: E402


class _FakeRetrievalTask(RetrievalTask):
    """Stands in for a loaded `retrieval` run: a DualEncoder-like image side (the task's own
    constructor is skipped: only the image side is read)."""

    def __init__(self, spec):
        torch.nn.Module.__init__(self)
        key = FrozenImageKey(spec)
        torch.manual_seed(1)
        self.model = SimpleNamespace(image_encoder=key.encoder, image_proj=key.proj, embed_dim=spec["embed_dim"])
        for p in key.parameters():  # non-trivial weights, so copying them is observable
            p.data.normal_(0, 0.2)
        self.input_spec = ImageInputSpec.from_dict(spec)
        self.image_size, self.channels, self.mean, self.std = spec["image_size"], 1, (0.5,), (0.5,)


SPEC = {"image_encoder": "small_cnn", "image_encoder_kwargs": {"in_channels": 1, "image_size": 16, "widths": [8]},
        "embed_dim": 8, "projection": "linear", "image_size": 16, "channels": 1, "mean": [0.5], "std": [0.5],
        "interpolation": "bilinear"}


@pytest.fixture()
def fake_run(monkeypatch):
    import medmm.engine.api as api

    fake = _FakeRetrievalTask(SPEC)
    cfg = SimpleNamespace(task="retrieval", model={k: SPEC[k] for k in ("image_encoder", "image_encoder_kwargs", "projection")})
    monkeypatch.setattr(api, "load_run", lambda run_dir: (cfg, fake))
    return fake


def test_frozen_key_from_run_copies_weights_and_stays_frozen(fake_run):
    key = FrozenImageKey.from_run("some/retrieval_run")
    assert key.spec()["embed_dim"] == 8 and key.spec()["run_dir"].endswith("some/retrieval_run")
    for a, b in zip(key.encoder.parameters(), fake_run.model.image_encoder.parameters(), strict=True):  # then key.proj
        assert torch.equal(a, b)
    assert not any(p.requires_grad for p in key.parameters())
    key.train()
    assert not key.training
    v = key.embed([np.zeros((20, 20), np.uint8), np.full((20, 20), 200, np.uint8)])
    assert v.shape == (8,) and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(MedmmError):
        FrozenImageKey({"image_encoder": "small_cnn"})
    # a key stored before retrieval used the shared transform says its stored keys may differ
    with pytest.warns(UserWarning, match="min-max"):
        FrozenImageKey({k: v for k, v in SPEC.items() if k != "interpolation"})
    assert key.spec()["interpolation"] == "bilinear"


def test_task_with_trained_retrieval_key(fake_run):
    train, test = _samples(12), _samples(4, seed=2, split="test")
    torch.manual_seed(0)
    task = ReportGenerationTask.from_config(merged(SMALL, retrieval={"run": "some/retrieval_run", "rag_k": 2}))
    task.setup(train)
    assert task.store_keys.shape == (12, 8) and task.state()["store"]["embedding"] == "retrieval_run"
    # the key is frozen: no optimiser ever sees it, and train() keeps it in eval mode
    assert all(not p.requires_grad for p in task.retrieval_key.parameters())
    task.train()
    assert not task.retrieval_key.training
    hits = task.collate(train)["hits"]
    assert all(h[0] not in {s.id for s in train if s.case_id == train[i].case_id} for i, hs in enumerate(hits) for h in hs)
    task.eval()
    recs = task.evaluation_step(task.collate(test))
    by_id = {s.id: s.text["caption"] for s in train}
    # the store is searched with the trained key; the thumbnail NN is reported beside it
    q = task.retrieval_key.embed([test[0].images[0].array])
    want = int(np.argmax(task.store_keys.numpy() @ q))
    assert recs[0]["nn_prediction"] == by_id[task.store_ids[want]]
    assert all(r["nn_thumbnail_prediction"] in by_id.values() for r in recs)
    assert "nn_thumbnail_baseline" in task.compute_metrics(recs)
    # self-contained: rebuilt from state() (spec, no run dir) + weights, same predictions
    clone = ReportGenerationTask.from_config(merged(SMALL, retrieval={"run": "gone/after/training", "rag_k": 2}))
    clone.load_state(task.state())
    clone.load_state_dict(task.state_dict(), strict=True)
    clone.eval()
    assert [r["prediction"] for r in clone.evaluation_step(clone.collate(test))] == [r["prediction"] for r in recs]
    assert [r["nn_prediction"] for r in clone.evaluation_step(clone.collate(test))] == [r["nn_prediction"] for r in recs]


def test_wrong_run_kind_is_refused(monkeypatch):
    import medmm.engine.api as api

    monkeypatch.setattr(api, "load_run", lambda run_dir: (SimpleNamespace(task="vqa", model={}), None))
    with pytest.raises(MedmmError, match="retrieval run"):
        FrozenImageKey.from_run("runs/vqa")


def test_frozen_key_carries_a_pretrained_processors_resize_and_crop(fake_run):
    from dataclasses import replace

    fake_run.input_spec = replace(fake_run.input_spec, resize_mode="shortest_edge", resize_size=20, resize_8bit=True)
    key = FrozenImageKey.from_run("some/retrieval_run")
    assert key.spec()["resize_mode"] == "shortest_edge" and key.spec()["resize_size"] == 20
    assert key._transform.spec == fake_run.input_spec  # the run's own preprocessing, crop included
    plain = FrozenImageKey(SPEC)
    assert plain._transform.spec == ImageInputSpec.from_dict(SPEC) and "resize_mode" not in plain.spec()
