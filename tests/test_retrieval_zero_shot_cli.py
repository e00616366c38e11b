"""Zero-shot retrieval with a CLIP-style model: `medmm evaluate --model DIR --task retrieval`.

A tiny random CLIP folder (`medmm models tiny clip`) ranks the bundled VQA-RAD sample's images and
question+answer texts through the CLI, untrained. The metrics file carries the retrieval metrics
with CIs, `training: zero-shot` and the checkpoint's sha256 (checked against the file's own bytes);
the metrics equal those of the same checkpoint scored through the retrieval task directly, and
nothing but the metrics file is written (no checkpoint, no run folder).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
import torch
from typer.testing import CliRunner

from cli_run import run_cli as _cli
from medmm.cli import app
from medmm.data import load_dataset
from medmm.data.bundled import vqa_rad_sample_root
from medmm.engine.task import get_task_class
from medmm.errors import MedmmError
from medmm.tasks.retrieval.task import RetrievalTask
from medmm.tasks.retrieval.untrained import clip_model_name

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RESAMPLES = 20


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "clip"
    _cli("models", "tiny", "clip", "--out", str(out))
    return out


def test_the_hook_names_the_checkpoint_its_format_and_the_datasets_text(tmp_path):
    hook = get_task_class("retrieval").zero_shot_section
    assert hook({}, "org/name", "vqa_rad") == {"clip_model": "hf:org/name", "text_lora": None, "image_lora": None,
                                               "local_loss_weight": 0.0, "text_field": ["question", "answer"]}
    # a config's own text field and settings are kept, its adapters dropped; prefixed names kept as given
    section = hook({"text_field": "findings", "text_lora": {"r": 8}, "embed_dim": 64}, "hf-hub:org/biomedclip", "medpix2")
    assert section["clip_model"] == "hf-hub:org/biomedclip" and section["text_field"] == "findings"
    assert section["text_lora"] is None and section["embed_dim"] == 64
    assert "text_field" not in hook({}, "m", "medpix2")  # captions: the task's default
    (tmp_path / "open_clip_config.json").write_text("{}")
    assert clip_model_name(str(tmp_path)) == f"open_clip:{tmp_path}"
    assert clip_model_name(f"hf:{tmp_path}") == f"hf:{tmp_path}"
    with pytest.raises(MedmmError, match="reads no --prompts"):
        hook({}, "m", "vqa_rad", "p.yaml")


def _direct_metrics(folder: Path) -> tuple[dict, dict]:
    """The same checkpoint scored through the retrieval task by hand, batch by batch as the engine does."""
    task = RetrievalTask.from_config({"clip_model": f"hf:{folder}", "text_field": ["question", "answer"],
                                      "bootstrap_resamples": RESAMPLES}).eval()
    samples = list(load_dataset("vqa_rad", vqa_rad_sample_root(), "train"))
    records = []
    for i in range(0, len(samples), 16):  # trainer.batch_size's default
        records.extend(task.evaluation_step(task.collate(samples[i:i + 16])))
    return task.compute_metrics(records), task.protocol()


def test_tiny_clip_ranks_the_vqa_rad_sample_zero_shot(tiny_clip, tmp_path):
    out_dir = tmp_path / "eval"
    out_dir.mkdir()
    out = out_dir / "m.json"
    shown = _cli("evaluate", "--model", str(tiny_clip), "--task", "retrieval", "--data", str(vqa_rad_sample_root()),
         "--dataset", "vqa_rad", "--split", "train", "--out", str(out),
         "--set", f"bootstrap_resamples={RESAMPLES}", "--set", "trainer.num_threads=1")
    assert [p.name for p in out_dir.iterdir()] == ["m.json"]  # untrained: no checkpoint, no run folder
    m = json.loads(out.read_text())
    metrics, protocol = m["metrics"], m["protocol"]
    for direction in ("image_to_text", "text_to_image"):
        assert {"R@1", "R@5", "R@10", "mrr", "median_rank"} <= set(metrics[direction])
        assert set(metrics[f"{direction}_ci"]) >= {"R@1", "mrr"} and "R@1" in metrics[f"{direction}_random"]
    assert metrics["n_images"] == 102 and m["provenance"]["n_samples"] == 602
    assert protocol["training"] == "zero-shot" and "mrr" in protocol["metric_definitions"]
    sha = hashlib.sha256((tiny_clip / "model.safetensors").read_bytes()).hexdigest()
    pm = protocol["pretrained_model"]
    assert pm["clip_model"] == f"hf:{tiny_clip}" and pm["class"] == "CLIPModel"
    assert pm["weights_sha256"] == {"model.safetensors": sha}
    assert m["provenance"]["pretrained"][0]["weights_sha256"] == {"model.safetensors": sha}
    # the printed table shows the grouped numbers with their CIs, not only n_images/n_texts
    r10, r10_ci = metrics["image_to_text"]["R@10"], metrics["image_to_text_ci"]["R@10"]
    row = next(line for line in shown.splitlines() if "image_to_text/R@10 " in line)
    assert f" {r10:.4g} " in row and f"[{r10_ci[0]:.4g}, {r10_ci[1]:.4g}]" in row
    assert "text_to_image_random/R@1 " in shown
    assert "skipped" in m["floors"]  # the sample has only 'train', the split the floors would be fit on: said

    with torch.no_grad():
        direct, direct_protocol = _direct_metrics(tiny_clip)
    assert json.loads(json.dumps(direct)) == metrics
    assert direct_protocol["pretrained_model"] == pm


def test_nothing_scored_is_an_error_not_an_empty_metrics_file(tiny_clip, tmp_path):
    """A text field no sample has skips every sample: the command fails with the reason."""
    out = tmp_path / "m.json"
    res = CliRunner().invoke(app, ["evaluate", "--model", str(tiny_clip), "--task", "retrieval",
                                   "--data", str(vqa_rad_sample_root()), "--dataset", "vqa_rad", "--split", "train",
                                   "--out", str(out), "--set", "text_field=no_such_field",
                                   "--set", "trainer.num_threads=1"])
    assert res.exit_code != 0 and not out.exists()
    assert "no sample of vqa_rad:train could be scored" in (res.output + str(res.exception))
