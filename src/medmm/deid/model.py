"""An optional token-classification model (e.g. a Stanford-style radiology de-identifier) whose
entities are merged with the rules. Loaded by hub name or local folder with transformers; with
HF_HUB_OFFLINE=1 transformers reads only the local cache or folder."""

from __future__ import annotations

from medmm.deid.spans import Span
from medmm.errors import BadInputError, require

# Model label -> medmm category; labels not listed keep their own upper-cased name (still masked).
LABEL_MAP = {
    "PATIENT": "NAME", "HCW": "NAME", "DOCTOR": "NAME", "PER": "NAME", "PERSON": "NAME", "NAME": "NAME",
    "STAFF": "NAME", "USERNAME": "NAME", "DATE": "DATE", "AGE": "AGE", "ID": "ID", "IDNUM": "ID",
    "MEDICALRECORD": "MRN", "MRN": "MRN", "PHONE": "PHONE", "FAX": "FAX", "EMAIL": "EMAIL", "URL": "URL",
    "LOCATION": "ADDRESS", "LOC": "ADDRESS", "STREET": "ADDRESS", "CITY": "ADDRESS", "ADDRESS": "ADDRESS",
    "ZIP": "POSTCODE", "HOSPITAL": "INSTITUTION", "ORGANIZATION": "INSTITUTION", "ORG": "INSTITUTION",
    "VENDOR": "INSTITUTION", "DEVICE": "SERIAL",
}


class ModelDetector:
    """Spans a transformers token-classification pipeline finds (label 'O' is never returned)."""

    def __init__(self, name_or_path: str, min_score: float = 0.5):
        transformers = require("transformers", "train", "the de-identification model")
        try:
            self.pipe = transformers.pipeline("token-classification", model=name_or_path,
                                              aggregation_strategy="simple", device=-1)
        except OSError as exc:
            raise BadInputError(name_or_path, f"cannot load the token-classification model: {exc}") from exc
        self.min_score = min_score

    def detect(self, text: str) -> list[Span]:
        """Entity spans of `text`, categories mapped through LABEL_MAP."""
        if not text.strip():
            return []
        out = []
        for ent in self.pipe(text):
            label = str(ent.get("entity_group") or ent.get("entity", "")).upper()
            label = label.split("-", 1)[-1] if label[:2] in ("B-", "I-") else label
            if label == "O" or float(ent["score"]) < self.min_score:
                continue
            out.append(Span(int(ent["start"]), int(ent["end"]), LABEL_MAP.get(label, label), "model"))
        return out
