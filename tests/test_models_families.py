"""`medmm models tiny FAMILY` folders load through medmm's HF encoders and train/predict/evaluate
retrieval on the bundled VQA-RAD sample (2 steps each; LoRA for ViT and BERT)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
from typer.testing import CliRunner

import medmm
from medmm.cli import app
from medmm.errors import MedmmError
from medmm.models.families import CAUSAL_LM, FAMILIES, IMAGE, TEXT, VLM, write_tiny

# The encoder families; the generative VLMs, causal LMs and open_clip folders have their own tests
# (tests/test_vlm*.py, tests/test_report_prefix_lm.py, tests/test_open_clip_dual.py).
ENCODERS = {n: f for n, f in FAMILIES.items() if f.role not in (VLM, CAUSAL_LM) and f.writer is None}

BUNDLED = Path(medmm.__file__).parent / "data" / "bundled" / "vqa_rad_sample"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """Every encoder family written once through the CLI."""
    root = tmp_path_factory.mktemp("tiny_models")
    out = {}
    for name in ENCODERS:
        res = CliRunner().invoke(app, ["models", "tiny", name, "--out", str(root / name)])
        assert res.exit_code == 0, res.output
        out[name] = root / name
    return out


def test_models_list_names_every_family_and_role():
    res = CliRunner().invoke(app, ["models", "list"])
    assert res.exit_code == 0, res.output
    for f in FAMILIES.values():
        assert f.name in res.output and f.model_class in res.output
    assert {f.role for f in FAMILIES.values()} == {"image encoder", "text encoder", "dual encoder", "generative VLM",
                                                   "causal LM (report decoder)"}


def test_tiny_folders_hold_the_real_checkpoint_files(tiny):
    import transformers

    for name, folder in tiny.items():
        fam = FAMILIES[name]
        cfg = json.loads((folder / "config.json").read_text())
        assert cfg["architectures"] == [fam.model_class]
        assert (folder / "model.safetensors").is_file()
        assert (folder / "preprocessor_config.json").is_file() == (fam.image_processor is not None)
        assert (folder / "tokenizer.json").is_file() == fam.text
        assert type(transformers.AutoModel.from_pretrained(folder)).__name__ == fam.model_class
    tok = transformers.AutoTokenizer.from_pretrained(tiny["bert"])
    ids = tok("the chest x-ray")["input_ids"]
    assert tok.unk_token_id not in ids  # WordPiece vocabulary covers plain English letters


def test_tiny_refuses_unknown_family_and_non_empty_folder(tmp_path, tiny):
    res = CliRunner().invoke(app, ["models", "tiny", "gpt9", "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "known: vit" in str(res.exception)
    with pytest.raises(MedmmError, match="not empty"):
        write_tiny("vit", tiny["vit"])


@pytest.mark.parametrize("name", [n for n, f in FAMILIES.items() if f.role == IMAGE])
def test_image_encoder_preprocessing_comes_from_the_processor_config(tiny, name):
    from medmm.models.encoders import create_image_encoder

    proc = json.loads((tiny[name] / "preprocessor_config.json").read_text())
    enc = create_image_encoder(f"hf:{tiny[name]}")
    assert enc.input_spec.mean == tuple(proc["image_mean"]) and enc.input_spec.std == tuple(proc["image_std"])
    assert enc.input_spec.size == 32
    sha = hashlib.sha256((tiny[name] / "model.safetensors").read_bytes()).hexdigest()
    assert enc.hf_source["weights_sha256"] == {"model.safetensors": sha}


def test_no_processor_config_is_an_error_unless_stats_are_given(tiny, tmp_path):
    import shutil

    from medmm.models.encoders import create_image_encoder

    folder = tmp_path / "vit_no_proc"
    shutil.copytree(tiny["vit"], folder)
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(MedmmError, match="no preprocessor_config.json"):
        create_image_encoder(f"hf:{folder}")
    enc = create_image_encoder(f"hf:{folder}", image_mean=[0.1] * 3, image_std=[0.2] * 3)
    assert enc.input_spec.mean == (0.1,) * 3 and enc.input_spec.size == 32


def test_missing_model_is_one_line_naming_where_it_looked(monkeypatch, tmp_path):
    import huggingface_hub.constants

    from medmm.models.encoders import create_text_encoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import; else ~20 s of retries
    with pytest.raises(MedmmError) as err:
        create_text_encoder("hf:medmm-test/no-such-model")
    msg = str(err.value)
    assert "\n" not in msg and "no local directory" in msg and "Hugging Face cache" in msg and "HF_HUB_OFFLINE=1" in msg
    with pytest.raises(MedmmError, match="config.json missing"):
        create_text_encoder(f"hf:{tmp_path}")


def _model_section(name: str, tiny: dict[str, Path], lora: bool) -> dict:
    fam = FAMILIES[name]
    if fam.role == IMAGE:
        m = {"image_encoder": f"hf:{tiny[name]}", "text_encoder": f"hf:{tiny['bert']}", "freeze_text": True}
        if lora:
            m["image_lora"] = {"r": 4, "alpha": 8}  # targets guessed: q_proj/v_proj in transformers 5 ViT
    elif fam.role == TEXT:
        m = {"image_encoder": "small_cnn", "image_encoder_kwargs": {"widths": [8, 16], "image_size": 32},
             "text_encoder": f"hf:{tiny[name]}"}
        if lora:
            m["text_lora"] = {"r": 4, "alpha": 8}  # targets guessed: query/value
    else:
        m = {"clip_model": f"hf:{tiny[name]}"}
    return {**m, "embed_dim": 16, "text_field": ["question", "answer"], "max_text_length": 32, "bootstrap_resamples": 10}


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    """The first 6 QA pairs of the bundled sample, in VQA-RAD's layout (images linked), for predict."""
    root = tmp_path_factory.mktemp("vqa_rad_small")
    records = json.loads((BUNDLED / "VQA_RAD Dataset Public.json").read_text())[:6]
    (root / "VQA_RAD Dataset Public.json").write_text(json.dumps(records))
    (root / "VQA_RAD Image Folder").symlink_to(BUNDLED / "VQA_RAD Image Folder")
    return root


def _train_predict_evaluate(name: str, tiny: dict[str, Path], out: Path, small_root: Path, lora: bool = False) -> dict:
    from medmm.engine.api import evaluate, predict, train
    from medmm.engine.config import config_from_dict

    cfg = config_from_dict({
        "task": "retrieval",
        "seed": 0,
        "data": {"dataset": "vqa_rad", "root": str(BUNDLED), "split": "grouped", "group_by": "image",
                 "source_splits": ["train"], "fractions": {"train": 0.6, "val": 0.2, "test": 0.2}, "max_samples": 30},
        "model": _model_section(name, tiny, lora),
        "trainer": {"max_epochs": 1, "max_steps": 2, "batch_size": 8, "lr": 1e-3, "progress_bar": False,
                    "deterministic": False, "limit_val_batches": 1},
    })
    res = train(cfg, out)
    assert 0 <= res["test"]["text_to_image"]["mrr"] <= 1
    test_json = json.loads((out / "metrics" / "test.json").read_text())
    sources = {s["source"]: s for s in test_json["provenance"]["pretrained"]}
    sha = hashlib.sha256((tiny[name] / "model.safetensors").read_bytes()).hexdigest()
    assert sources[str(tiny[name])]["weights_sha256"]["model.safetensors"] == sha
    preds = predict(out, small_root, split="train")
    assert len(preds) == 6 and "image_embedding" in preds[0]["prediction"]
    ev = evaluate(out, split="test", out=out / "eval.json")
    assert ev["provenance"]["pretrained"] and "text_to_image" in ev["metrics"]
    return res


# Default run: one dual encoder here, one image and one text family in the LoRA test below; the rest slow.
_FAST = {"clip"}


@pytest.mark.parametrize("name", [n if n in _FAST else pytest.param(n, marks=pytest.mark.slow) for n in ENCODERS])
def test_every_family_trains_predicts_evaluates_from_its_tiny_folder(name, tiny, tmp_path, small_root):
    _train_predict_evaluate(name, tiny, tmp_path / "run", small_root)


@pytest.mark.parametrize("name", ["vit", "bert"])
def test_lora_on_a_tiny_folder_trains_only_adapters(name, tiny, tmp_path, small_root):
    from medmm.engine.api import load_run

    _train_predict_evaluate(name, tiny, tmp_path / "run", small_root, lora=True)
    _, task = load_run(tmp_path / "run")
    tower = task.model.image_encoder if name == "vit" else task.model.text_encoder
    trainable = [n for n, p in tower.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_a_dual_encoder_folder_serves_as_an_image_encoder(tiny, name):
    import torch

    from medmm.models.encoders import create_image_encoder

    enc = create_image_encoder(f"hf:{tiny[name]}")  # the vision tower of the full model
    assert "Vision" in type(enc.model).__name__ and enc.input_spec.size == 32
    assert enc(torch.randn(2, 1, 32, 32)).pooled.shape == (2, 32)


def test_hub_name_loads_from_the_hf_cache_offline_with_its_sha256(tiny, tmp_path):
    """A hub name under HF_HUB_OFFLINE=1 is read from the HF cache (its layout built by hand here)."""
    import os
    import shutil
    import subprocess
    import sys

    repo = tmp_path / "cache" / "models--medmm-test--tiny-vit"
    shutil.copytree(tiny["vit"], repo / "snapshots" / "abc")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    code = ("import json; from medmm.models.encoders import create_image_encoder; "
            "e = create_image_encoder('hf:medmm-test/tiny-vit'); print(json.dumps(e.hf_source))")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    sha = hashlib.sha256((tiny["vit"] / "model.safetensors").read_bytes()).hexdigest()
    assert rec["source"] == "medmm-test/tiny-vit" and rec["path"].endswith("snapshots/abc")
    assert rec["weights_sha256"] == {"model.safetensors": sha}
