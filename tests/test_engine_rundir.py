"""Run-directory helpers: atomic writes, environment record, checkpoint IO, HTML report."""

from __future__ import annotations

import errno
import json
import re

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")

from medmm.engine import rundir as rd  # noqa: E402
from medmm.engine.checkpoints import AtomicCheckpointIO  # noqa: E402
from medmm.engine.module import flatten_scalars, warmup_schedule  # noqa: E402
from medmm.engine.report import write_report  # noqa: E402
from medmm.errors import BadInputError, MedmmError  # noqa: E402


def test_atomic_checkpoint_keeps_old_file_when_a_write_fails(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "ck" / "last.ckpt"
    io.save_checkpoint({"global_step": 1}, path)
    assert torch.load(path, weights_only=True)["global_step"] == 1

    def boom(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", boom)
    # One line naming the folder, not a traceback from deep inside torch.
    with pytest.raises(MedmmError, match=rf"^{re.escape(str(path.parent))}: cannot write last.ckpt \(No space left on device"):
        io.save_checkpoint({"global_step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["global_step"] == 1  # old checkpoint intact
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temp file left


def test_json_helpers_and_environment(tmp_path):
    import numpy as np

    rd.write_json(tmp_path / "a" / "m.json", {"x": np.float32(0.5), "arr": np.arange(2)})
    assert json.loads((tmp_path / "a/m.json").read_text()) == {"x": 0.5, "arr": [0, 1]}
    rd.write_jsonl(tmp_path / "p.jsonl", [{"id": "a"}, {"id": "b"}])
    assert (tmp_path / "p.jsonl").read_text().splitlines() == ['{"id": "a"}', '{"id": "b"}']
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(BadInputError, match="bad.json: not valid JSON"):
        rd.read_json(tmp_path / "bad.json")
    env = rd.environment(seed=5)
    assert env["seed"] == 5 and env["torch"] == torch.__version__ and env["cpu_count"] >= 1
    assert rd.sha256_file(tmp_path / "p.jsonl") == __import__("hashlib").sha256((tmp_path / "p.jsonl").read_bytes()).hexdigest()


def test_schedule_and_flatten():
    f = warmup_schedule("cosine", warmup=2, total=10)
    assert [round(f(s), 3) for s in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert f(10) == pytest.approx(0.0) and 0 < f(6) < 1
    assert warmup_schedule("linear", 0, 10)(5) == pytest.approx(0.5)
    assert warmup_schedule("constant", 0, 10)(9) == 1.0
    assert flatten_scalars({"a": 1, "b": {"c": 2.0, "d": "x"}, "e": float("nan"), "f": True}) == {"a": 1.0, "b/c": 2.0}


def test_report_from_run_files(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs/metrics.csv").write_text(
        "epoch,step,train/loss_step,val/loss,val/acc\n0,0,1.0,,\n0,1,0.8,,\n0,1,,0.9,0.6\n1,3,0.5,,\n1,3,,0.7,0.8\n"
    )
    rd.write_json(tmp_path / "metrics/test.json", {
        "metrics": {"acc": 0.8, "labels": ["a", "b"], "confusion_matrix": [[3, 1], [0, 4]],
                    "per_class": {"a": {"recall": 0.75}, "b": {"recall": 1.0}}},
        "provenance": {"n_samples": 8, "n_skipped": 0},
    })
    (tmp_path / "config.yaml").write_text("task: x <script>\n")
    html = write_report(tmp_path).read_text()
    for png in ("loss.png", "val_metrics.png", "confusion_test.png", "per_class_test.png"):
        assert (tmp_path / "plots" / png).stat().st_size > 1000
        assert f"plots/{png}" in html
    assert "<script>" not in html and "&lt;script&gt;" in html  # config text is escaped


def test_report_shows_intervals_and_breakdowns(tmp_path):
    rd.write_json(tmp_path / "metrics/test.json", {"metrics": {
        "overall_accuracy": 0.4, "closed_accuracy": 0.6, "n": 10, "open_exact_match": float("nan"),
        "ci": {"overall_accuracy": [0.3, 0.5], "closed_accuracy": {"low": 0.45, "high": 0.75}},
        "by_question_type": {"PRES": {"n": 6, "overall_accuracy": 0.5, "open_exact_match": None},
                             "POS <b>": {"n": 4, "overall_accuracy": 0.25, "open_exact_match": 0.0}},
        "image_to_text": {"R@1": 0.2}, "image_to_text_ci": {"R@1": [0.1, 0.3]},
    }, "provenance": {}})
    html = write_report(tmp_path).read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"<tr><th>([^<]+)</th>(.*?)</tr>", html)}
    assert rows["overall_accuracy"] == "<td>0.4</td><td>[0.3, 0.5]</td>"
    assert rows["closed_accuracy"] == "<td>0.6</td><td>[0.45, 0.75]</td>"
    assert rows["open_exact_match"] == "<td>n/a</td><td></td>" and rows["n"] == "<td>10</td><td></td>"
    assert rows["R@1"] == "<td>0.2</td><td>[0.1, 0.3]</td>"
    assert rows["PRES"] == "<td>6</td><td>0.5</td><td></td>"
    assert "POS &lt;b&gt;" in html and "<b>" not in html
    assert (tmp_path / "plots/by_question_type_test.png").stat().st_size > 1000
