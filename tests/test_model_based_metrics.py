"""Optional model-based report metrics: F1-CheXbert with a tiny hand-built stand-in of chexbert.pth."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from medmm.metrics.model_based import aggregate, label_with_models, parse_specs  # noqa: E402
from medmm.metrics.model_based.chexbert import HEADS, CheXbertLabeller  # noqa: E402
from medmm.metrics.model_based.weights import (  # noqa: E402
    WeightsChecksumError,
    WeightsLayoutError,
    WeightsNotFoundError,
)

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "effusion", "edema", "pneumothorax", "possible", "normal"]
H = 16
# token -> the hidden dimension it switches on (others embed to zero)
DIM = {"effusion": 0, "edema": 1, "pneumothorax": 2, "possible": 3}


def _stand_in(folder: Path, *, drop_head: bool = False) -> Path:
    """chexbert.pth with the published layout ({'model_state_dict': {'module.bert.…', 'module.linear_heads.i.…'}}),
    built so that labels are predictable: Q = K = 0 makes [CLS] attend uniformly to the report's tokens, V and the
    attention output are the identity and the feed-forward adds 0, so [CLS]'s state has dimension DIM[w] > 0 exactly
    when word w is in the report; each head reads its dimension."""
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=len(VOCAB), hidden_size=H, num_hidden_layers=1, num_attention_heads=1,
                     intermediate_size=8, max_position_embeddings=32, type_vocab_size=2)
    torch.manual_seed(0)
    bert = BertModel(cfg)  # random init, then the parts that matter are set
    sd = {k: v.clone() for k, v in bert.state_dict().items()}
    for k, v in sd.items():
        if "LayerNorm.weight" in k:
            v.fill_(1.0)
        elif "LayerNorm.bias" in k or "embeddings" in k or k.endswith((".query.weight", ".key.weight",
                                                                       ".query.bias", ".key.bias", ".bias")):
            v.zero_()
    emb = sd["embeddings.word_embeddings.weight"]
    for w, d in DIM.items():
        emb[VOCAB.index(w), d] = 10.0
    layer = "encoder.layer.0."
    sd[layer + "attention.self.value.weight"] = torch.eye(H)
    sd[layer + "attention.output.dense.weight"] = torch.eye(H)
    sd[layer + "output.dense.weight"].zero_()
    heads = {}
    for i, name in enumerate(HEADS):
        n = 2 if name == "No Finding" else 4
        w, b = torch.zeros(n, H), torch.zeros(n)
        b[0] = 0.1  # blank unless a dimension speaks
        if name == "Pleural Effusion":
            w[1, DIM["effusion"]] = 1.0
        if name == "Pneumothorax":
            w[1, DIM["pneumothorax"]] = 1.0
        if name == "Edema":
            w[1, DIM["edema"]] = 1.0
            w[3, DIM["possible"]] = 3.0  # "possible edema" -> uncertain
        heads[f"linear_heads.{i}.weight"], heads[f"linear_heads.{i}.bias"] = w, b
    if drop_head:
        del heads["linear_heads.13.weight"], heads["linear_heads.13.bias"]
    full = {f"module.bert.{k}": v for k, v in sd.items()} | {f"module.{k}": v for k, v in heads.items()}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "chexbert.pth"
    torch.save({"epoch": 2, "model_state_dict": full,
                "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 2e-5, "params": [0, 1]}]}}, path)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return path


HYPS = ["Effusion.", "Edema.", "Pneumothorax and effusion.", "Possible edema."]
REFS = ["Effusion.", "Effusion and edema.", "Normal.", "Edema."]


def test_labels_and_f1_match_hand_computed(tmp_path):
    path = _stand_in(tmp_path / "m")
    model = CheXbertLabeller(str(tmp_path / "m"))
    labels = model.label(HYPS)
    assert [sorted((k, int(v)) for k, v in d.items()) for d in labels] == [
        [("Pleural Effusion", 1)], [("Edema", 1)], [("Pleural Effusion", 1), ("Pneumothorax", 1)], [("Edema", -1)]]
    assert model.provenance()["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()

    specs = parse_specs([f"chexbert={path}"])
    m = aggregate(label_with_models(specs, HYPS, REFS))
    # by hand (only "positive" counts): Effusion TP1 FN1 FP1 -> F1 1/2; Edema TP1 FN1 (uncertain = 0) -> 2/3;
    # Pneumothorax FP1 -> 0; the other 11 have no positive on either side (undefined, out of macro).
    f14, f5 = m["f1_chexbert"], m["f1_chexbert_5"]
    assert f14["micro"]["f1"] == pytest.approx(4 / 8)  # TP2 FP2 FN2
    assert f14["macro"]["f1"] == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)
    assert len(f14["macro_excluded"]) == 11
    assert f5["micro"]["f1"] == pytest.approx(4 / 7)  # Effusion + Edema: TP2 FP1 FN2
    assert f5["macro"]["f1"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_missing_weights_and_wrong_layout_are_clear(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="no chexbert.pth in folder"):
        CheXbertLabeller(str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="not a file, a folder, or a Hub repo id"):
        CheXbertLabeller(str(tmp_path / "nowhere" / "chexbert.pth"))
    bad = _stand_in(tmp_path / "bad", drop_head=True)
    with pytest.raises(WeightsLayoutError, match="linear_heads keys 26, expected 28"):
        CheXbertLabeller(str(bad))
    with pytest.raises(WeightsChecksumError, match="differs from the pinned 0000"):
        CheXbertLabeller(f"{bad}#sha256={'0' * 64}")
    torch.save({"model_state_dict": {"module.encoder.weight": torch.zeros(2)}}, tmp_path / "other.pth")
    with pytest.raises(WeightsLayoutError, match="not a CheXbert checkpoint"):
        CheXbertLabeller(str(tmp_path / "other.pth"))
    with pytest.raises(ValueError, match="unknown metric 'green'"):
        parse_specs(["green=/x"])


def test_report_scorer_adds_metric_only_when_asked(tmp_path):
    from medmm.tasks.report.file_scorer import prepare_report

    path = _stand_in(tmp_path / "m")
    pred, ref = tmp_path / "pred.jsonl", tmp_path / "ref.jsonl"
    pred.write_text("".join(json.dumps({"id": str(i), "prediction": h}) + "\n" for i, h in enumerate(HYPS)))
    ref.write_text("".join(json.dumps({"id": str(i), "reference": r}) + "\n" for i, r in enumerate(REFS)))
    off = prepare_report(pred, ref)
    assert "model_metrics" not in off.result and not any(k.startswith("model_metrics") for k in off.aggregate(off.items))
    on = prepare_report(pred, ref, model_metrics={"chexbert": str(path)})
    assert on.result["model_metrics"]["f1_chexbert"]["micro"]["f1"] == pytest.approx(0.5)
    assert on.result["model_metrics"]["provenance"]["chexbert"]["weights_sha256"] == hashlib.sha256(
        path.read_bytes()).hexdigest()
    agg = on.aggregate(on.items[:2])  # a resample: the first two reports only
    assert agg["model_metrics.f1_chexbert.micro.f1"] == pytest.approx(2 * 2 / (2 * 2 + 1))  # TP2 FN1


def _flat(text: str) -> str:
    """CLI output without rich's box drawing and line wrapping."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", text).split())


def test_cli_rejects_unknown_metric_and_wrong_task(tmp_path):
    from typer.testing import CliRunner

    from medmm.cli import app

    pred = tmp_path / "p.jsonl"
    pred.write_text(json.dumps({"id": "0", "prediction": "x"}) + "\n")
    base = ["score", "--task", "report_generation", "--pred", str(pred), "--ref", str(pred), "--out", str(tmp_path / "o.json")]
    res = CliRunner().invoke(app, [*base, "--model-metrics", "bleurt=/x"])
    assert res.exit_code != 0 and "unknown metric 'bleurt'" in _flat(res.output)
    res = CliRunner().invoke(app, ["score", "--task", "classification", "--pred", str(pred), "--out",
                                   str(tmp_path / "o.json"), "--model-metrics", f"chexbert={tmp_path}"])
    assert res.exit_code != 0 and "takes no model-based metrics" in _flat(res.output)


def test_metrics_package_stays_torch_free():
    code = "import sys, medmm.metrics, medmm.metrics.model_based; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_paired_comparison_uses_each_systems_own_labels(tmp_path):
    """System B's model labels must be B's (a resample or swap used to look them up by position in A's)."""
    from medmm.metrics.score import compare_files

    path = _stand_in(tmp_path / "m")
    pred, ref, copy = tmp_path / "pred.jsonl", tmp_path / "ref.jsonl", tmp_path / "copy.jsonl"
    pred.write_text("".join(json.dumps({"id": str(i), "prediction": h}) + "\n" for i, h in enumerate(HYPS)))
    ref.write_text("".join(json.dumps({"id": str(i), "reference": r}) + "\n" for i, r in enumerate(REFS)))
    copy.write_text("".join(json.dumps({"id": str(i), "prediction": r}) + "\n" for i, r in enumerate(REFS)))
    res = compare_files("report_generation", pred, copy, ref, n_resamples=20, model_metrics={"chexbert": str(path)})
    t = res["tests"]["model_metrics.f1_chexbert.micro.f1"]
    assert t["a"] == pytest.approx(0.5) and t["b"] == pytest.approx(1.0)
