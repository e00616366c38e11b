"""Same seed, same result, for every shipped config: each one, shortened (16 samples per split,
1 epoch), trained twice in two separate processes with one seed gives identical metrics.

Separate processes on purpose: a per-process difference (hash order, e.g. the scratch
WordPiece trainer's) is invisible to two runs inside one process. Configs whose dataset or
earlier run (image_pretrained, init_run under runs/) is absent here skip with the reason.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from conftest import SHARED_DATA

pytest.importorskip("torch")
pytest.importorskip("lightning")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*/*.yaml"))
SHORT = [
    "trainer.max_epochs=1", "data.max_samples=16", "trainer.batch_size=4", "trainer.eval_batch_size=16",
    "trainer.warmup_steps=0", "trainer.num_threads=1", "trainer.progress_bar=false", "trainer.early_stopping_patience=null",
]
# Model keys shortened where the task has them (fewer bootstrap resamples, shorter decoding).
SHORT_MODEL = {"bootstrap_resamples": 20, "mbr.references": 0, "scst.samples": 2}  # retrieval refuses 0 resamples


def _root(raw: dict) -> Path:
    """The config's data.root on this machine (../shared/data/... -> conftest's SHARED_DATA)."""
    root = raw["data"]["root"]
    if root.startswith("../shared/data/"):
        return SHARED_DATA / root.removeprefix("../shared/data/")
    return (REPO / root).resolve()


def _missing(raw: dict) -> str | None:
    """Why this config cannot run here, or None."""
    if not _root(raw).exists():
        return f"dataset root {_root(raw)} is absent (set MEDMM_SHARED_DATA)"
    if raw["data"]["dataset"] == "iu_xray" and not (_root(raw) / "images").is_dir():
        return f"{_root(raw)} holds IU X-ray reports only (no images/); the config needs a full R2Gen folder"
    sections = [("model", raw.get("model") or {})]
    while sections:  # nested sections too (model.image.pretrained, model.retrieval.run)
        where, section = sections.pop()
        for key, value in section.items():
            if isinstance(value, dict):
                sections.append((f"{where}.{key}", value))
            elif isinstance(value, str) and value.startswith("runs/") and not (REPO / value).exists():
                return f"{where}.{key} needs an earlier run ({value})"
    for key in ("pretrained", "clip_model"):  # a Hugging Face model (retrieval's CLIP: hf:NAME)
        pretrained = (raw.get("model") or {}).get(key)
        if isinstance(pretrained, str):
            from medmm.models.encoders.hf_loading import resolve_dir

            if resolve_dir(pretrained.removeprefix("hf:")) is None:
                return f"model.{key} {pretrained!r} is neither a folder nor in the Hugging Face cache (no weights offline)"
    return None


# medmm.data.datasets.medmnist's registered names -> the file each reads
MEDMNIST_FILES = {"pneumoniamnist_trainsubset": "pneumoniamnist_28_trainsubset_fullvaltest.npz",
                  "pneumoniamnist_balanced": "pneumoniamnist_28_balanced_subset.npz"}


def _class_mixed_medmnist(raw: dict, folder: Path) -> Path:
    """A copy of the config's MedMNIST file whose first 16 records of each split hold both classes
    (the shared files are sorted by label, so a max_samples=16 run would see one class)."""
    import numpy as np

    name = raw["data"]["dataset"]
    src = _root(raw) / MEDMNIST_FILES.get(name, f"{name}.npz")
    arrays = dict(np.load(src))
    for split in ("train", "val", "test"):
        if f"{split}_labels" not in arrays:
            continue
        y = arrays[f"{split}_labels"].ravel()
        pick = np.concatenate([np.flatnonzero(y == c)[:8] for c in np.unique(y)])
        arrays[f"{split}_labels"], arrays[f"{split}_images"] = arrays[f"{split}_labels"][pick], arrays[f"{split}_images"][pick]
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / src.name, **arrays)
    return folder


def _overrides(raw: dict, tmp: Path) -> list[str]:
    from medmm import plugins
    from medmm.engine.config_fields import field_help
    from medmm.engine.task import get_task_class

    plugins.load()  # registers the tasks

    fields = {f.key for f in field_help(get_task_class(raw["task"]).Config)}  # dotted: mbr.references
    root = _class_mixed_medmnist(raw, tmp / "data") if str(raw["data"]["dataset"]).startswith(("breastmnist", "pneumoniamnist")) \
        else _root(raw)
    extra = []
    if (raw.get("trainer") or {}).get("lr_milestones"):  # milestones must fall inside the (shortened) run
        extra = ["trainer.max_epochs=2", "trainer.lr_milestones=[1]"]
    return [*SHORT, *extra, f"data.root={root}", *(f"model.{k}={v}" for k, v in SHORT_MODEL.items() if k in fields)]


VOLATILE = re.compile(r"time|_utc|seconds|duration|run_dir")  # when and where, not what was computed


def _numbers(obj):
    """The metrics without wall-clock times and paths (they differ between any two runs)."""
    if isinstance(obj, dict):
        return {k: _numbers(v) for k, v in obj.items() if not VOLATILE.search(str(k))}
    if isinstance(obj, list):
        return [_numbers(v) for v in obj]
    return obj


def _train(config: Path, overrides: list[str], out: Path) -> dict:
    cmd = [sys.executable, "-c", "from medmm.cli import main; main()", "train", str(config), *overrides, "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False, cwd=REPO)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return {p.stem: _numbers(json.loads(p.read_text())["metrics"]) for p in sorted((out / "metrics").glob("*.json"))}


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=[f"{c.parent.name}/{c.stem}" for c in CONFIGS])
def test_same_seed_same_metrics_in_two_processes(config, tmp_path):
    raw = yaml.safe_load(config.read_text())
    why = _missing(raw)
    if why:
        pytest.skip(why)
    overrides = _overrides(raw, tmp_path)
    # The two runs go side by side (one thread each, num_threads=1): half the wall time on 2 cores.
    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(lambda out: _train(config, overrides, out), [tmp_path / "a", tmp_path / "b"])
    assert "val" in first or "test" in first or "train" in first
    # Compare as JSON text: NaN == NaN there, and every digit counts.
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
