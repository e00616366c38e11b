"""benchmarks/vqa_resplit_compare.py: per-run accuracies, pooled paired test, split mismatch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import load_benchmark


def _module():
    return load_benchmark("vqa_resplit_compare")


def _run(root: Path, name: str, rows: list[tuple[str, str, str, str]]) -> Path:
    (root / name / "predictions").mkdir(parents=True)
    lines = [json.dumps({"id": i, "prediction": p, "reference": ref, "answer_type": t, "group": f"img{i}"}) for i, p, ref, t in rows]
    (root / name / "predictions" / "test.jsonl").write_text("\n".join(lines) + "\n")
    return root / name


def test_pooled_comparison_over_two_splits(tmp_path):
    mod = _module()
    a0 = _run(tmp_path, "a0", [("1", "Yes", "yes", "CLOSED"), ("2", "no", "yes", "CLOSED"), ("3", "liver", "the liver", "OPEN")])
    b0 = _run(tmp_path, "b0", [("3", "kidney", "the liver", "OPEN"), ("1", "no", "yes", "CLOSED"), ("2", "no", "yes", "CLOSED")])
    a1 = _run(tmp_path, "a1", [("7", "yes", "yes", "CLOSED")])
    b1 = _run(tmp_path, "b1", [("7", "yes", "yes", "CLOSED")])
    res = mod.compare([a0, a1], [b0, b1], n_resamples=200)
    assert [r["a_accuracy"] for r in res["runs"]] == [pytest.approx(2 / 3), 1.0]
    assert [r["b_accuracy"] for r in res["runs"]] == [0.0, 1.0]
    pooled = res["pooled"]
    assert pooled["overall"]["n"] == 4 and pooled["overall"]["difference"] == pytest.approx(0.5)
    assert pooled["closed"]["n"] == 3 and pooled["open"]["difference"] == pytest.approx(1.0)
    with pytest.raises(SystemExit, match="same held-out questions"):
        mod.compare([a0], [b1])
    with pytest.raises(SystemExit, match="same number"):
        mod.compare([a0, a1], [b0])
