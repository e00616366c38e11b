"""open_clip checkpoints (BiomedCLIP's format) read without open_clip: the tiny folder of
`medmm models tiny biomedclip` loads, records its sha256, trains/evaluates retrieval, classifies
zero-shot, is found in the HF cache offline, and gives open_clip's own embeddings (that last test
only where open_clip is installed: it needs torchvision, which does not load on the CPU torch)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("transformers")
import torch

import medmm
from medmm.errors import MedmmError
from medmm.models.encoders.open_clip_dual import OpenClipDualEncoder
from medmm.models.families import write_tiny

BUNDLED = Path(medmm.__file__).parent / "data" / "bundled" / "vqa_rad_sample"
WEIGHTS = "open_clip_model.safetensors"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny("biomedclip", tmp_path_factory.mktemp("oc") / "biomedclip")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _texts(model, texts: list[str]) -> torch.Tensor:
    tok = model.tokenizer(texts, padding="max_length", truncation=True, max_length=model.max_length, return_tensors="pt")
    return model.encode_text(tok["input_ids"], tok["attention_mask"])[0]


def test_tiny_folder_loads_with_its_config_preprocessing_and_sha256(tiny):
    model = OpenClipDualEncoder(str(tiny)).eval()
    cfg = json.loads((tiny / "open_clip_config.json").read_text())
    assert model.input_spec.size == 224 and model.input_spec.interpolation == "bicubic"
    assert list(model.input_spec.mean) == cfg["preprocess_cfg"]["mean"]
    assert model.hf_source["weights_sha256"] == {WEIGHTS: _sha(tiny / WEIGHTS)}
    with torch.no_grad():
        img = model.encode_image(torch.randn(2, 1, 224, 224))[0]  # grey images are repeated to RGB
        txt = _texts(model, ["the chest x ray", "no effusion"])
    assert img.shape == txt.shape == (2, cfg["model_cfg"]["embed_dim"])
    assert torch.allclose(img.norm(dim=-1), torch.ones(2)) and not torch.allclose(txt[0], txt[1])


def test_weights_that_do_not_fit_are_an_error_never_dropped(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "bad"
    shutil.copytree(tiny, folder)
    state = load_file(str(folder / WEIGHTS))
    state["visual.trunk.reg_token"] = torch.zeros(1, 1, 192)
    save_file(state, str(folder / WEIGHTS))
    with pytest.raises(MedmmError, match="reg_token"):
        OpenClipDualEncoder(str(folder))
    del state["visual.trunk.reg_token"], state["text.proj.2.weight"]
    save_file(state, str(folder / WEIGHTS))
    with pytest.raises(MedmmError, match=r"text_proj tower.*2\.weight"):
        OpenClipDualEncoder(str(folder))


def test_unsupported_architectures_are_named(tiny, tmp_path):
    folder = tmp_path / "convnext"
    shutil.copytree(tiny, folder)
    cfg = json.loads((folder / "open_clip_config.json").read_text())
    cfg["model_cfg"]["vision_cfg"]["timm_model_name"] = "convnext_base"
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    with pytest.raises(MedmmError, match="convnext_base.*unsupported"):
        OpenClipDualEncoder(str(folder))
    with pytest.raises(MedmmError, match="open_clip_config.json missing"):
        OpenClipDualEncoder(str(tmp_path))


def test_missing_hub_model_is_one_line_naming_where_it_looked(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(MedmmError) as err:
        OpenClipDualEncoder("hf-hub:medmm-test/no-such-clip")
    msg = str(err.value)
    assert "\n" not in msg and "Hugging Face cache" in msg and "HF_HUB_OFFLINE=1" in msg


def test_hub_name_is_read_from_the_hf_cache_offline(tiny, tmp_path, monkeypatch):
    import huggingface_hub.constants

    repo = tmp_path / "cache" / "models--medmm-test--tiny-biomedclip"
    shutil.copytree(tiny, repo / "snapshots" / "abc")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # both read at import
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    rec = OpenClipDualEncoder("hf-hub:medmm-test/tiny-biomedclip").hf_source
    assert rec["path"].endswith("snapshots/abc") and rec["weights_sha256"] == {WEIGHTS: _sha(tiny / WEIGHTS)}


def test_retrieval_trains_evaluates_and_classifies_zero_shot(tiny, tmp_path):
    from medmm.engine.api import evaluate, load_run, train
    from medmm.engine.config import config_from_dict
    from medmm.tasks.retrieval.zero_shot import zero_shot_classify

    cfg = config_from_dict({
        "task": "retrieval", "seed": 0,
        "data": {"dataset": "vqa_rad", "root": str(BUNDLED), "split": "grouped", "group_by": "image",
                 "source_splits": ["train"], "fractions": {"train": 0.6, "val": 0.2, "test": 0.2}, "max_samples": 12},
        "model": {"clip_model": f"open_clip:{tiny}", "embed_dim": 16, "text_field": ["question", "answer"],
                  "max_text_length": 32, "bootstrap_resamples": 10, "freeze_image": True},
        "trainer": {"max_epochs": 1, "max_steps": 2, "batch_size": 4, "lr": 1e-3, "progress_bar": False,
                    "deterministic": False, "limit_val_batches": 1},
    })
    out = tmp_path / "run"
    train(cfg, out)
    test_json = json.loads((out / "metrics" / "test.json").read_text())
    sources = {s["source"]: s for s in test_json["provenance"]["pretrained"]}
    assert sources[f"{tiny}"]["weights_sha256"] == {WEIGHTS: _sha(tiny / WEIGHTS)}
    ev = evaluate(out, split="test", out=out / "eval.json")
    assert 0 <= ev["metrics"]["text_to_image"]["mrr"] <= 1
    _, task = load_run(out)
    assert isinstance(task.model, OpenClipDualEncoder)
    res = zero_shot_classify(task.eval(), torch.randn(3, 3, 224, 224), {"ct": ["a ct scan"], "xray": ["a chest x ray"]})
    assert res.probabilities.shape == (3, 2) and torch.allclose(torch.as_tensor(res.probabilities).sum(1).float(), torch.ones(3))


def test_embeddings_equal_open_clips_own(tiny, monkeypatch):
    """The same folder through open_clip (timm trunk, HFTextEncoder): same image and text embeddings."""
    open_clip = pytest.importorskip(
        "open_clip", reason="open_clip not installed (it needs torchvision, whose PyPI wheels do not load on the CPU torch)"
    )
    monkeypatch.chdir(tiny)  # open_clip reads hf_model_name ("text_tower") relative to the working directory
    ref = open_clip.create_model(f"local-dir:{tiny}").eval()
    ours = OpenClipDualEncoder(str(tiny)).eval()
    images = torch.randn(3, 3, 224, 224)
    tok = ours.tokenizer(["the chest x ray", "no effusion", "a"], padding="max_length", truncation=True,
                         max_length=ours.max_length, return_tensors="pt")
    with torch.no_grad():
        want_img = torch.nn.functional.normalize(ref.encode_image(images), dim=-1)
        want_txt = torch.nn.functional.normalize(ref.encode_text(tok["input_ids"]), dim=-1)
        got_img = ours.encode_image(images)[0]
        got_txt = ours.encode_text(tok["input_ids"], tok["attention_mask"])[0]
    assert torch.allclose(got_img, want_img, atol=1e-5) and torch.allclose(got_txt, want_txt, atol=1e-5)
    assert torch.allclose(ours.logit_scale, ref.logit_scale)
