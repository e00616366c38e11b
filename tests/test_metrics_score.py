import csv
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medmm.cli import app
from medmm.errors import BadInputError
from medmm.metrics.score import score_files

runner = CliRunner()


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _run(*args):
    res = runner.invoke(app, list(map(str, args)))
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res


def test_report_cli_with_bootstrap_and_unicode(tmp_path):
    refs = [{"id": f"r{i}", "reference": t, "patient_id": f"p{i // 2}"} for i, t in enumerate([
        "Cardiomegaly. No pleural effusion.", "Small left pleural effusion.", "No acute disease.",
        "Mild pulmonary edema. Cardiomegaly.", "Lungs are clear. Heart size normal — ok.", "Right pneumothorax."])]
    preds = [{"id": "r0", "prediction": "Cardiomegaly without effusion."}, {"id": "r1", "prediction": ""},
             {"id": "r2", "prediction": "No acute disease. ✓"}, {"id": "r3", "prediction": "Edema."},
             {"id": "r4", "prediction": "Lungs are clear."}, {"id": "r5", "prediction": "Pneumothorax on the right."}]
    p, r = _jsonl(tmp_path / "p.jsonl", preds), _jsonl(tmp_path / "r.jsonl", refs)
    out = tmp_path / "m.json"
    _run("score", "--task", "report", "--pred", p, "--ref", r, "--out", out, "--bootstrap", 50,
         "--group-by", "patient_id", "--uncertain", "positive", "--observations", "5")
    m = json.loads(out.read_text())
    assert m["n_empty_predictions"] == 1
    assert 0 <= m["nlg"]["bleu_4"] <= 1 and m["nlg"]["rouge_l"] > 0
    ce = m["clinical_efficacy"]
    assert ce["per_observation"]["Cardiomegaly"]["tp"] == 1 and ce["per_observation"]["Pleural Effusion"]["fn"] == 1
    prov = m["provenance"]
    assert prov["label_handling"]["uncertain"] == "positive" and prov["n_samples"] == 6
    assert prov["ci_units"] == 3 and prov["seed"] == 0 and "bootstrap" in prov["ci_method"]
    assert m["ci"]["nlg.bleu_1"]["low"] <= m["nlg"]["bleu_1"] <= m["ci"]["nlg.bleu_1"]["high"]


def test_mismatched_and_duplicate_ids_are_clear_errors(tmp_path):
    r = _jsonl(tmp_path / "r.jsonl", [{"id": "a", "reference": "x"}, {"id": "b", "reference": "y"}])
    p = _jsonl(tmp_path / "p.jsonl", [{"id": "a", "prediction": "x"}])
    with pytest.raises(BadInputError, match="have no prediction"):
        score_files("vqa", p, r)
    dup = _jsonl(tmp_path / "d.jsonl", [{"id": "a", "prediction": "x"}, {"id": "a", "prediction": "y"}])
    with pytest.raises(BadInputError, match="more than once"):
        score_files("vqa", dup, r)
    empty_ref = _jsonl(tmp_path / "e.jsonl", [{"id": "a", "reference": " "}])
    with pytest.raises(BadInputError, match="empty"):
        score_files("report", _jsonl(tmp_path / "p1.jsonl", [{"id": "a", "prediction": "x"}]), empty_ref)


def test_cli_main_reports_bad_input_without_traceback(tmp_path, capsys, monkeypatch):
    from medmm.cli import main

    r = _jsonl(tmp_path / "r.jsonl", [{"id": "a", "reference": "yes"}])
    p = _jsonl(tmp_path / "p.jsonl", [{"id": "b", "prediction": "yes"}])
    monkeypatch.setattr("sys.argv", ["medmm", "score", "--task", "vqa", "--pred", str(p), "--ref", str(r),
                                     "--out", str(tmp_path / "m.json")])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2 and "p.jsonl" in capsys.readouterr().err


def test_vqa_and_classification_cli(tmp_path):
    r = _jsonl(tmp_path / "r.jsonl", [
        {"id": 1, "reference": "Yes", "answer_type": "CLOSED", "question_type": "PRES"},
        {"id": 2, "reference": "left lung", "answer_type": "OPEN", "question_type": "POS"}])
    p = _jsonl(tmp_path / "p.jsonl", [{"id": 1, "prediction": "yes"}, {"id": 2, "prediction": "the left lung."}])
    _run("score", "--task", "vqa", "--pred", p, "--ref", r, "--out", tmp_path / "v.json")
    v = json.loads((tmp_path / "v.json").read_text())
    assert v["overall_accuracy"] == 1.0 and v["by_question_type"]["POS"]["n"] == 1

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (40, 3))
    s = np.clip(y * 0.6 + rng.random((40, 3)) * 0.5, 0, 1)
    _jsonl(tmp_path / "cr.jsonl", [{"id": i, "reference": y[i].tolist()} for i in range(40)])
    _jsonl(tmp_path / "cp.jsonl", [{"id": i, "prediction": s[i].tolist()} for i in range(40)])
    _run("score", "--task", "classification", "--pred", tmp_path / "cp.jsonl", "--ref", tmp_path / "cr.jsonl",
         "--out", tmp_path / "c.json", "--labels", "a,b,c", "--bootstrap", 30)
    c = json.loads((tmp_path / "c.json").read_text())
    assert c["kind"] == "multilabel" and c["per_label"]["a"]["auroc"] > 0.8
    assert "auroc_macro" in c["ci"]


def test_segmentation_and_retrieval_cli(tmp_path):
    ref = np.zeros((16, 16), np.uint8)
    ref[4:10, 4:10] = 255
    pred = np.zeros_like(ref)
    pred[4:10, 4:8] = 255
    Image.fromarray(ref).save(tmp_path / "r.png")
    Image.fromarray(pred).save(tmp_path / "p.png")
    _jsonl(tmp_path / "sr.jsonl", [{"id": "x", "reference": "r.png"}])
    _jsonl(tmp_path / "sp.jsonl", [{"id": "x", "prediction": "p.png"}])
    _run("score", "--task", "segmentation", "--pred", tmp_path / "sp.jsonl", "--ref", tmp_path / "sr.jsonl",
         "--out", tmp_path / "s.json")
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["per_class"]["foreground"]["dice"] == pytest.approx(2 * 24 / 60)

    emb = np.eye(4) + 0.1
    np.savez(tmp_path / "e.npz", image=emb, text=emb)
    _run("score", "--task", "retrieval", "--pred", tmp_path / "e.npz", "--out", tmp_path / "t.json", "--bootstrap", 20)
    t = json.loads((tmp_path / "t.json").read_text())
    assert t["image_to_text"]["R@1"] == 100.0 and t["provenance"]["ci_method"]
    np.save(tmp_path / "nan.npy", np.full((2, 2), np.nan))
    with pytest.raises(BadInputError, match="NaN"):
        score_files("retrieval", tmp_path / "nan.npy", None)


def test_label_reports_cli(tmp_path):
    src = tmp_path / "in.csv"
    with open(src, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["uid", "text"])
        w.writerow(["a", "Cardiomegaly. No effusion. Possible pneumonia."])
        w.writerow(["b", ""])
    out = tmp_path / "labels.csv"
    _run("label-reports", src, "--text-column", "text", "--id-column", "uid", "--out", out)
    with open(out, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["id"] == "a" and rows[0]["Cardiomegaly"] == "1" and rows[0]["Pleural Effusion"] == "0"
    assert rows[0]["Pneumonia"] == "-1" and rows[0]["Edema"] == "" and rows[1]["No Finding"] == ""
    res = runner.invoke(app, ["label-reports", str(src), "--text-column", "nope", "--out", str(out)])
    assert res.exit_code != 0 and "nope" in str(res.exception)


def test_metrics_import_no_torch():
    import subprocess
    import sys

    code = ("import sys, medmm.metrics.score, medmm.metrics.classification, medmm.metrics.retrieval, "
            "medmm.metrics.vqa, medmm.metrics.segmentation, medmm.metrics.stats, medmm.metrics.clinical; "
            "from medmm.metrics.classification import classification_metrics; classification_metrics([0, 1], [0.2, 0.8]); "
            "assert 'torch' not in sys.modules and 'monai' not in sys.modules, 'metrics imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_compare_cli_paired_tests(tmp_path):
    rng = np.random.default_rng(0)
    refs = [{"id": i, "reference": "yes" if i % 2 else "no", "answer_type": "CLOSED", "patient": i // 3}
            for i in range(60)]
    good = [{"id": r["id"], "prediction": r["reference"] if rng.random() < 0.95 else "maybe"} for r in refs]
    bad = [{"id": r["id"], "prediction": r["reference"] if rng.random() < 0.5 else "maybe"} for r in refs]
    r, a, b = _jsonl(tmp_path / "r.jsonl", refs), _jsonl(tmp_path / "a.jsonl", good), _jsonl(tmp_path / "b.jsonl", bad)
    out = tmp_path / "cmp.json"
    _run("score", "--task", "vqa", "--pred", a, "--ref", r, "--compare", b, "--out", out, "--bootstrap", 200,
         "--group-by", "patient")
    t = json.loads(out.read_text())["tests"]["overall_accuracy"]
    assert t["difference"] > 0.3 and t["p_randomisation"] < 0.05 and t["difference_low"] > 0
    assert t["n_units"] == 20
    same = score_files("vqa", a, r, bootstrap=50)
    assert same["ci"]["overall_accuracy"]["low"] <= same["overall_accuracy"] <= same["ci"]["overall_accuracy"]["high"]


def test_scorers_take_the_engine_task_names_and_old_names_still_work(tmp_path):
    from medmm.engine.task import list_tasks
    from medmm.metrics.score import DEPRECATED_ALIASES, SCORERS

    assert set(SCORERS) <= set(list_tasks()), "a file scorer is keyed by a name the engine does not know"
    assert set(DEPRECATED_ALIASES.values()) <= set(SCORERS)
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 30)
    _jsonl(tmp_path / "r.jsonl", [{"id": i, "reference": int(y[i])} for i in range(30)])
    _jsonl(tmp_path / "p.jsonl", [{"id": i, "prediction": float(np.clip(y[i] * 0.5 + rng.random() * 0.6, 0, 1))} for i in range(30)])
    outs = {}
    for name in ("diagnosis", "classification"):
        res = _run("score", "--task", name, "--pred", tmp_path / "p.jsonl", "--ref", tmp_path / "r.jsonl",
                   "--out", tmp_path / f"{name}.json", "--threshold", "0.4", "--bootstrap", 20)
        assert ("deprecated" in res.output) == (name == "classification")
        outs[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert outs["diagnosis"]["f1"] == outs["classification"]["f1"] and outs["diagnosis"]["ci"] == outs["classification"]["ci"]
    assert outs["diagnosis"]["task"] == outs["classification"]["task"] == "diagnosis"  # one naming in the output too
    with pytest.warns(DeprecationWarning, match="report_generation"), pytest.raises(BadInputError):
        score_files("report", tmp_path / "p.jsonl", None)
    res = runner.invoke(app, ["score", "--task", "reports", "--pred", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "x.json")])
    assert res.exit_code != 0 and "unknown task" in res.output
