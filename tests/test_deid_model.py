"""The optional token-classification model: a tiny random BERT saved to disk, and a fake that tags a
known span, merged with the rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from medmm.deid import TextDeidentifier
from medmm.deid.spans import Span


def _tiny_bert(folder: Path) -> None:
    transformers = pytest.importorskip("transformers")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "heart", "is", "normal", "seen", "by", "dr",
             ".", ",", "jane", "roe", "on"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), model_max_length=64)
    config = transformers.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
                                     num_labels=3, id2label={0: "O", 1: "B-PATIENT", 2: "I-PATIENT"},
                                     label2id={"O": 0, "B-PATIENT": 1, "I-PATIENT": 2})
    transformers.set_seed(0)
    transformers.BertForTokenClassification(config).save_pretrained(folder)
    tok.save_pretrained(folder)


@pytest.mark.slow  # importing transformers and building the pipeline takes 20-40 s on the shared VM
def test_tiny_random_bert_loads_offline_from_a_folder_and_runs(tmp_path: Path, monkeypatch) -> None:
    _tiny_bert(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    deid = TextDeidentifier(model=str(tmp_path))
    text = "Seen by Dr. Jane Roe on 03/04/2019. The heart is normal."
    clean, audit = deid.deidentify(text)
    # The rules still find what they find, whatever the random model says.
    assert "Jane Roe" not in clean and "03/04/2019" not in clean
    for a in audit:
        assert 0 <= a["start"] < a["end"] <= len(text)
        assert a["source"] in ("rules", "model", "rules+model")


def test_a_model_span_the_rules_miss_is_masked(monkeypatch) -> None:
    class FakeModel:
        def detect(self, text: str) -> list[Span]:
            i = text.index("Quux")
            return [Span(i, i + 4, "NAME", "model")]

    deid = TextDeidentifier()
    deid.model = FakeModel()
    clean, audit = deid.deidentify("Seen with Quux today. Heart normal.")
    assert clean == "Seen with [NAME] today. Heart normal."
    assert audit[0]["source"] == "model"


def test_pipeline_entities_are_mapped_to_categories() -> None:
    from medmm.deid.model import ModelDetector

    det = ModelDetector.__new__(ModelDetector)  # no transformers needed: a stand-in pipeline
    det.min_score = 0.5
    det.pipe = lambda text: [
        {"entity_group": "HCW", "score": 0.9, "start": 8, "end": 16},
        {"entity_group": "HOSPITAL", "score": 0.95, "start": 20, "end": 24},
        {"entity": "B-VENDOR", "score": 0.8, "start": 25, "end": 29},
        {"entity_group": "PATIENT", "score": 0.2, "start": 0, "end": 4},  # below the threshold
        {"entity_group": "O", "score": 0.99, "start": 0, "end": 4},
    ]
    spans = det.detect("Seen by Quuxley at Zorg Acme.")
    assert [(s.start, s.end, s.category, s.source) for s in spans] == [
        (8, 16, "NAME", "model"), (20, 24, "INSTITUTION", "model"), (25, 29, "INSTITUTION", "model")]
