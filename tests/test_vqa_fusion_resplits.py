"""benchmarks/vqa_fusion_resplits.py: pooled accuracies with CIs, paired tests, table, training plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import load_benchmark


def _module():
    return load_benchmark("vqa_fusion_resplits")


def _run(root: Path, name: str, rows: list[tuple[str, str, str, str, str]], log: str | None = None) -> Path:
    """A run folder whose predictions/test.jsonl looks like a real VQA run's (id, prediction,
    reference, answer_type, group = image file name, ...)."""
    (root / name / "predictions").mkdir(parents=True)
    lines = [json.dumps({"id": i, "question": "q?", "prediction": p, "reference": ref, "answer_type": t, "question_type": "PRES",
                         "group": img, "source": "classifier", "confidence": 0.9}) for i, p, ref, t, img in rows]
    (root / name / "predictions" / "test.jsonl").write_text("\n".join(lines) + "\n")
    if log is not None:
        (root / f"{name}.log").write_text(log)
    return root / name


# Split 0: questions 1-4 on images a, b; split 1: questions 5-6, image a again (another split).
SPLIT0 = [("1", "yes", "CLOSED", "a.jpg"), ("2", "no", "CLOSED", "a.jpg"), ("3", "liver", "OPEN", "b.jpg"), ("4", "ct", "OPEN", "b.jpg")]
SPLIT1 = [("5", "yes", "CLOSED", "a.jpg"), ("6", "lung", "OPEN", "a.jpg")]
TIME_LOG = "...\n\tUser time (seconds): 100.50\n\tSystem time (seconds): 4.50\n\tElapsed (wall clock) time (h:mm:ss or m:ss): 2:03.25\n"


def _answers(split, preds):
    return [(i, p, ref, t, img) for (i, ref, t, img), p in zip(split, preds, strict=True)]


@pytest.fixture()
def runs(tmp_path):
    # gated: split 0 3/4 right (closed 2/2, open 1/2), split 1 1/2 -> pooled 4/6, closed 3/3, open 1/3
    # text_only: split 0 1/4 (closed 1/2, open 0/2), split 1 1/2 (closed 1/1) -> 2/6, closed 2/3, open 0/3
    # early: everything right -> 6/6
    return {
        "gated": [_run(tmp_path, "g0", _answers(SPLIT0, ["Yes", "no", "the liver", "mri"]), TIME_LOG),
                  _run(tmp_path, "g1", _answers(SPLIT1, ["yes", "heart"]))],
        "text_only": [_run(tmp_path, "t0", _answers(SPLIT0, ["yes", "yes", "kidney", "mri"])),
                      _run(tmp_path, "t1", _answers(SPLIT1, ["yes", "heart"]))],
        "early": [_run(tmp_path, "e0", _answers(SPLIT0, ["yes", "no", "liver", "CT"])),
                  _run(tmp_path, "e1", _answers(SPLIT1, ["yes", "lung"]))],
    }


def test_pooled_accuracy_and_paired_differences(runs):
    mod = _module()
    res = mod.summarise(runs, baseline="gated", reference="text_only", n_resamples=300)["variants"]
    g = res["gated"]["pooled"]
    assert g["overall"]["n"] == 6 and g["closed"]["n"] == 3 and g["open"]["n"] == 3
    assert g["overall"]["accuracy"] == pytest.approx(4 / 6)
    assert g["closed"]["accuracy"] == 1.0 and g["open"]["accuracy"] == pytest.approx(1 / 3)
    # groups are (split, image): a.jpg of split 0 and a.jpg of split 1 are two units
    assert g["n_groups"] == 3
    assert g["overall"]["low"] <= 4 / 6 <= g["overall"]["high"] and g["overall"]["low"] < g["overall"]["high"]
    assert g["closed"]["low"] == g["closed"]["high"] == 1.0  # all closed answers right in every resample
    e = res["early"]["pooled"]
    assert e["overall"]["low"] == e["overall"]["high"] == 1.0
    # per seed
    assert [s["overall"] for s in res["gated"]["seeds"]] == [0.75, 0.5]
    assert [s["open"] for s in res["text_only"]["seeds"]] == [0.0, 0.0]
    assert res["gated"]["seeds"][0]["cpu_s"] == pytest.approx(105.0) and res["gated"]["seeds"][0]["wall_s"] == pytest.approx(123.25)
    assert "cpu_s" not in res["gated"]["seeds"][1]
    # paired differences: variant minus baseline / reference
    assert "vs_baseline" not in res["gated"] and "vs_reference" not in res["text_only"]
    assert res["early"]["vs_baseline"]["overall"]["difference"] == pytest.approx(2 / 6)
    assert res["early"]["vs_baseline"]["open"]["difference"] == pytest.approx(2 / 3)
    assert res["gated"]["vs_reference"]["overall"]["difference"] == pytest.approx(2 / 6)
    assert res["gated"]["vs_reference"]["closed"]["difference"] == pytest.approx(1 / 3)
    assert res["text_only"]["vs_baseline"]["overall"]["difference"] == pytest.approx(-2 / 6)
    assert 0 < res["early"]["vs_baseline"]["overall"]["p_randomisation"] <= 1

    table = mod.markdown({"variants": res}, "gated", "text_only")
    assert "| gated | 6 | 66.7 [" in table and "| 75.0 / 50.0 | 105-105 |" in table
    assert "| early | +33.3 [" in table and "| text_only | -33.3 [" in table


def test_split_mismatch_is_refused(runs, tmp_path):
    mod = _module()
    other = _run(tmp_path, "x1", _answers(SPLIT0[:2], ["yes", "no"]))
    with pytest.raises(SystemExit, match="same held-out questions"):
        mod.summarise({"gated": runs["gated"], "early": [runs["early"][0], other]}, "gated", None, n_resamples=10)


def test_plan_trains_only_missing_runs(runs, tmp_path, monkeypatch):
    mod = _module()
    assert mod.parse_variant("film") == ("film", ["model.fusion=film"])
    assert mod.parse_variant("q:model.fusion=text_only,model.memory.weight=0") == ("q", ["model.fusion=text_only", "model.memory.weight=0"])
    dirs = mod.run_dirs(["gated", "early"], [0, 1], tmp_path / "fus", {"gated": str(tmp_path / "g{seed}")})
    assert dirs == {"gated": [tmp_path / "g0", tmp_path / "g1"], "early": [tmp_path / "fus/early_s0", tmp_path / "fus/early_s1"]}
    _run(tmp_path / "fus", "early_s1", _answers(SPLIT1, ["yes", "lung"]))
    calls = []
    monkeypatch.setattr(mod.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 0)
    mod.train_missing(Path("c.yaml"), {"early": ["model.fusion=early"]}, {"early": dirs["early"]}, [0, 1], jobs=2)
    assert len(calls) == 1
    assert calls[0][-7:] == ["medmm", "train", "c.yaml", "model.fusion=early", "seed=0", "--out", str(tmp_path / "fus/early_s0")]
    assert (tmp_path / "fus/early_s0.log").read_text().startswith(" ".join(calls[0]))


def test_plot_writes_png(runs, tmp_path):
    mod = _module()
    res = mod.summarise({"gated": runs["gated"], "early": runs["early"]}, "gated", None, n_resamples=20)
    mod.plot(res, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
