"""`medmm package`: contents, manifest checks, strict loading, model card; `medmm.load_model`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lightning")
pytest.importorskip("safetensors")

from typer.testing import CliRunner

from medmm.errors import BadInputError, MedmmError
from medmm.serve import package as pk
from serve_runs import trained_package


@pytest.fixture(scope="module")
def dx(tmp_path_factory):
    return trained_package("diagnosis", tmp_path_factory.mktemp("serve_pkg"))


def test_package_holds_everything_with_checksums(dx):
    run, pkg = dx
    names = {p.relative_to(pkg).as_posix() for p in pkg.rglob("*") if p.is_file()}
    assert {"model.safetensors", "weights_extra.json", "config.yaml", "task_state.json", "package.json",
            "MODEL_CARD.md", "MANIFEST.json"} <= names
    manifest = json.loads((pkg / "MANIFEST.json").read_text())
    assert set(manifest["sha256"]) == names - {"MANIFEST.json"}
    info = pk.verify_package(pkg)
    state = json.loads((run / "task_state.json").read_text())["state"]
    assert info["outputs"]["labels"] == state["classes"]  # label names in output order
    assert info["outputs"]["thresholds"] == state["thresholds"]
    assert info["outputs"]["preprocessing"]["size"] == 32
    assert set(info["inputs"]) == {"image", "question"}
    card = (pkg / "MODEL_CARD.md").read_text()
    assert "## Intended use" in card and "not a medical device" in card and "licence of the training data" in card
    assert "vqa_rad" in card


def test_tampered_missing_or_extra_files_are_refused(dx, tmp_path):
    _, pkg = dx
    for change, match in [
        (lambda d: (d / "task_state.json").write_text((d / "task_state.json").read_text() + " "), "sha256 does not match"),
        (lambda d: (d / "MODEL_CARD.md").unlink(), "missing"),
        (lambda d: (d / "extra.bin").write_bytes(b"x"), "not listed"),
    ]:
        d = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(pkg, d)
        change(d)
        with pytest.raises(BadInputError, match=match):
            pk.verify_package(d)


def test_weights_load_strictly(dx, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from medmm.serve.predictor import Predictor

    _, pkg = dx
    d = tmp_path / "extra_tensor"
    shutil.copytree(pkg, d)
    tensors = load_file(str(d / pk.WEIGHTS))
    save_file({**tensors, "surplus.weight": torch.zeros(2)}, str(d / pk.WEIGHTS))
    pk.write_manifest(d)  # a consistent manifest: only the strict load can catch it
    with pytest.raises(BadInputError, match="surplus.weight"):
        Predictor(d)
    dropped = next(k for k in tensors if k.endswith(".weight"))  # (BatchNorm tolerates a missing num_batches_tracked)
    save_file({k: v for k, v in tensors.items() if k != dropped}, str(d / pk.WEIGHTS))
    pk.write_manifest(d)
    with pytest.raises(BadInputError, match="Missing key"):
        Predictor(d)


def test_package_weights_equal_the_run(dx):
    import torch

    from medmm.engine.api import load_run
    from medmm.serve.predictor import Predictor

    run, pkg = dx
    _, task = load_run(run)
    served = Predictor(pkg).task.state_dict()
    for k, v in task.state_dict().items():
        assert torch.equal(v, served[k]) if isinstance(v, torch.Tensor) else v == served[k], k


def test_cli_package_refuses_non_empty_out(dx, tmp_path):
    from medmm.cli import app

    run, _ = dx
    out = tmp_path / "pkg"
    runner = CliRunner()
    res = runner.invoke(app, ["package", str(run), "--out", str(out)])
    assert res.exit_code == 0, res.output
    pk.verify_package(out)
    res = runner.invoke(app, ["package", str(run), "--out", str(out)])
    assert isinstance(res.exception, MedmmError) and "not empty" in str(res.exception)
    with pytest.raises(BadInputError, match="no MANIFEST.json"):
        pk.verify_package(run)


def test_import_medmm_stays_light():
    code = "import sys, medmm; assert callable(medmm.load_model); print(sorted(m for m in ('torch', 'fastapi', 'safetensors') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_serve_refuses_public_host_without_token(dx, monkeypatch):
    from medmm.cli import app

    monkeypatch.delenv("MEDMM_SERVE_TOKEN", raising=False)
    res = CliRunner().invoke(app, ["serve", str(dx[1]), "--host", "0.0.0.0", "--port", "1"])
    assert isinstance(res.exception, MedmmError) and "not a loopback address" in str(res.exception)
    assert Path(dx[1]).exists()
