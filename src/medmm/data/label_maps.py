"""One harmonised label vocabulary and the mappings between datasets' label spaces.

Each dataset names its classes its own way (covid_cxr ``finding_group`` "other pneumonia",
PneumoniaMNIST ``label`` "pneumonia", BreastMNIST "normal, benign", VQA-RAD organ "HEAD").
As in torchxrayvision, they are harmonised in ONE place:

* `VOCABULARY`: canonical concept -> synonyms (lower case). Used to map raw names onto concepts
  and by the diagnosis task's label-leakage guard (the words naming a label are masked from the
  text input).
* `LABEL_SPACES`: (dataset, target) -> the dataset's class names in their canonical order.
* `LabelMap`: source classes -> target classes (None = no counterpart, left out). A model trained
  on the source space is scored on the target dataset by summing the probabilities of the source
  classes mapped to each target class (`LabelMap.project_probs`).

Torch-free (lives in `medmm.data`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from medmm.errors import MedmmError
from medmm.registry import Registry

# Canonical concept -> synonyms/spellings (lower case; the concept name itself is included).
VOCABULARY: dict[str, tuple[str, ...]] = {
    "COVID-19": ("covid-19", "covid 19", "covid19", "covid", "sars-cov-2", "sars cov 2", "2019-ncov", "ncov",
                 "coronavirus", "corona virus", "novel coronavirus"),
    "Pneumonia": ("pneumonia", "pneumonias", "pneumonitis", "bronchopneumonia", "lobar pneumonia",
                  "bacterial pneumonia", "viral pneumonia", "other pneumonia"),
    "No Finding": ("no finding", "no findings", "normal", "unremarkable"),
    "Other": ("other",),
    "Malignant": ("malignant", "malignancy", "carcinoma", "cancer"),
    "Benign or Normal": ("normal, benign", "benign", "normal"),
    "Head": ("head", "brain", "skull", "cranial", "intracranial"),
    "Chest": ("chest", "thorax", "thoracic", "lung", "lungs"),
    "Abdomen": ("abd", "abdomen", "abdominal"),
}  # fmt: skip

# (dataset, target) -> class names in the dataset's own spelling, in the order used by models.
LABEL_SPACES: dict[tuple[str, str], tuple[str, ...]] = {
    ("covid_cxr", "finding_group"): ("COVID-19", "no finding", "other", "other pneumonia"),
    ("pneumoniamnist", "label"): ("normal", "pneumonia"),
    ("pneumoniamnist_trainsubset", "label"): ("normal", "pneumonia"),
    ("pneumoniamnist_balanced", "label"): ("normal", "pneumonia"),
    ("breastmnist", "label"): ("malignant", "normal, benign"),
    ("vqa_rad", "organ"): ("ABD", "CHEST", "HEAD"),
}

# Raw class name -> canonical concept, per dataset target (names not listed fall back to
# `canonical()` lookup through VOCABULARY).
_CANONICAL_OVERRIDES: dict[tuple[str, str], dict[str, str | None]] = {
    ("covid_cxr", "finding_group"): {
        "COVID-19": "COVID-19",
        "other pneumonia": "Pneumonia",
        "no finding": "No Finding",
        "other": "Other",
        "unknown": None,
    },
    ("breastmnist", "label"): {"malignant": "Malignant", "normal, benign": "Benign or Normal"},
}


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def canonical(name: str, dataset: str | None = None, target: str | None = None) -> str | None:
    """The canonical concept of a raw class name (None when it has none, e.g. "unknown").

    A dataset-specific override wins; otherwise the first concept whose synonyms contain the
    name (case-insensitive) is returned.
    """
    if dataset is not None and target is not None:
        over = _CANONICAL_OVERRIDES.get((dataset, target))
        if over is not None and name in over:
            return over[name]
    n = _norm(name)
    for concept, syns in VOCABULARY.items():
        if n == concept.lower() or n in syns:
            return concept
    return None


# Words too common to mask on their own (masking "no" would hide every negation in the notes).
_STOPWORDS = frozenset(
    "a an and or of the no not with without in on at to for by other finding findings normal unknown".split()
)


def label_words(labels: Iterable[str]) -> list[str]:
    """Phrases and words that name any of `labels`, for masking them out of text (leakage guard).

    For each label: the label itself, its content words (stop words such as "no"/"other" are
    left out: alone they do not name a class) and every synonym of its canonical concept.
    Returned longest first, so a phrase is masked before its parts.
    """
    out: set[str] = set()
    for label in labels:
        n = _norm(label)
        if not n:
            continue
        if n not in _STOPWORDS:  # a class called "other" is not masked word by word in all text
            out.add(n)
        for tok in re.split(r"[^a-z0-9\-]+", n):
            tok = tok.strip("-")
            if len(tok) > 1 and tok not in _STOPWORDS and not tok.isdigit():
                out.add(tok)
        concept = canonical(label)
        if concept is not None:
            out.update(s for s in VOCABULARY[concept] if s not in _STOPWORDS)
    return sorted(out, key=lambda s: (-len(s), s))


def mask_words(text: str, words: Sequence[str], mask: str = "[MASK]") -> str:
    """Replace every whole-word, case-insensitive occurrence of `words` in `text` by `mask`."""
    if not words or not text:
        return text
    pattern = _compiled(tuple(words))
    return pattern.sub(mask, text)


_PATTERNS: dict[tuple[str, ...], re.Pattern[str]] = {}


def _compiled(words: tuple[str, ...]) -> re.Pattern[str]:
    pat = _PATTERNS.get(words)
    if pat is None:
        # Flexible whitespace/hyphen inside a phrase ("covid 19" == "covid-19" == "covid  19").
        alts = [r"[\s\-]*".join(re.escape(p) for p in re.split(r"[\s\-]+", w) if p) for w in words]
        pat = re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(alts) + r")(?![A-Za-z0-9])", re.IGNORECASE)
        _PATTERNS[words] = pat
    return pat


@dataclass
class LabelMap:
    """A mapping from one label space (a model's classes) to another (an external dataset's).

    mapping: source class -> target class, or None for a source class with no counterpart.
    """

    name: str
    source: tuple[str, str]
    target: tuple[str, str]
    mapping: dict[str, str | None]
    note: str = ""
    target_classes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.target_classes:
            self.target_classes = LABEL_SPACES.get(self.target) or tuple(
                sorted({v for v in self.mapping.values() if v is not None})
            )
        bad = {v for v in self.mapping.values() if v is not None and v not in self.target_classes}
        if bad:
            raise MedmmError(f"label map {self.name!r}: {sorted(bad)} not in target classes {self.target_classes}")

    def project_probs(self, source_classes: Sequence[str], probs: Sequence[Sequence[float]]) -> list[list[float]]:
        """Per-sample probabilities over `target_classes`: the sum over source classes mapped to
        each target class, renormalised over the mapped classes (unmapped mass left out)."""
        missing = [c for c in source_classes if c not in self.mapping]
        if missing:
            raise MedmmError(f"label map {self.name!r} has no entry for model classes {missing}")
        col = {c: i for i, c in enumerate(self.target_classes)}
        out = []
        for row in probs:
            acc = [0.0] * len(self.target_classes)
            for c, p in zip(source_classes, row, strict=False):
                t = self.mapping[c]
                if t is not None:
                    acc[col[t]] += float(p)
            total = sum(acc)
            out.append([a / total for a in acc] if total > 0 else [1.0 / len(acc)] * len(acc))
        return out

    def describe(self) -> dict[str, object]:
        """JSON-serialisable description (written into external metrics files)."""
        return {
            "name": self.name,
            "source": list(self.source),
            "target": list(self.target),
            "mapping": dict(self.mapping),
            "target_classes": list(self.target_classes),
            "note": self.note,
        }


# Metadata: the (dataset, target) a map reads from and the dataset it maps to (find_label_map).
_MAPS: Registry[LabelMap] = Registry("label map")


def register_label_map(lm: LabelMap) -> LabelMap:
    """Add a LabelMap to the registry (name must be new)."""
    return _MAPS.register(lm.name, lm, source=tuple(lm.source), target_dataset=lm.target[0])


def get_label_map(name: str) -> LabelMap:
    """The registered LabelMap called `name`."""
    return _MAPS[name]


def list_label_maps() -> list[str]:
    """Names of the registered label maps."""
    return _MAPS.names()


def find_label_map(source: tuple[str, str], target_dataset: str, target: str | None = None) -> LabelMap:
    """The registered map from `source` (dataset, target) to `target_dataset` (and target name).

    Exactly one must match; otherwise the error lists the known maps.
    """
    hits = [e.obj for e in _MAPS.entries(source=tuple(source), target_dataset=target_dataset)
            if target is None or e.obj.target[1] == target]
    if len(hits) != 1:
        what = "no" if not hits else "several"
        raise MedmmError(
            f"{what} label map from {source[0]}.{source[1]} to {target_dataset}; known: {', '.join(_MAPS.names())}"
        )
    return hits[0]


def derive_label_map(
    name: str, source: tuple[str, str], source_classes: Sequence[str], target: tuple[str, str], target_classes: Sequence[str]
) -> LabelMap:
    """A LabelMap built through the canonical vocabulary: source and target classes whose
    canonical concepts are equal are mapped; others map to None. Not registered."""
    by_concept = {}
    for t in target_classes:
        c = canonical(t, *target)
        if c is not None:
            by_concept.setdefault(c, t)
    mapping = {s: by_concept.get(canonical(s, *source)) for s in source_classes}  # type: ignore[arg-type]
    return LabelMap(name, tuple(source), tuple(target), mapping, note="derived through the canonical vocabulary",
                    target_classes=tuple(target_classes))


# Built-in maps. COVID-19 is a viral pneumonia, so it maps to PneumoniaMNIST's "pneumonia"; the
# covid_cxr "other" group (ARDS, lipoid pneumonia, ...) has no counterpart and is left out.
for _pm in ("pneumoniamnist", "pneumoniamnist_trainsubset", "pneumoniamnist_balanced"):
    register_label_map(
        LabelMap(
            name=f"covid_cxr_to_{_pm}",
            source=("covid_cxr", "finding_group"),
            target=(_pm, "label"),
            mapping={"COVID-19": "pneumonia", "other pneumonia": "pneumonia", "no finding": "normal", "other": None},
            note="COVID-19 and other infectious pneumonias -> pneumonia; no finding -> normal; other (ARDS, "
            "lipoid, ...) has no PneumoniaMNIST class and its probability mass is left out (renormalised)",
        )
    )
    register_label_map(
        LabelMap(
            name=f"{_pm}_to_covid_cxr",
            source=(_pm, "label"),
            target=("covid_cxr", "pneumonia_vs_normal"),
            mapping={"normal": "no finding", "pneumonia": "pneumonia"},
            note="scored on covid_cxr rows whose finding_group maps to pneumonia (COVID-19, other pneumonia) or "
            "no finding; the covid_cxr reference is projected with `reference_projection`",
            target_classes=("no finding", "pneumonia"),
        )
    )

# How an external dataset's own reference labels are read in a map's target space when the
# target is not one of the dataset's targets (covid_cxr finding_group -> pneumonia/no finding).
REFERENCE_PROJECTIONS: dict[tuple[str, str], tuple[str, dict[str, str | None]]] = {
    ("covid_cxr", "pneumonia_vs_normal"): (
        "finding_group",
        {"COVID-19": "pneumonia", "other pneumonia": "pneumonia", "no finding": "no finding", "other": None,
         "unknown": None},
    ),
}


def reference_projection(target: tuple[str, str]) -> tuple[str, dict[str, str | None]] | None:
    """(the dataset's own target key, value -> target class) when `target` is a derived space."""
    return REFERENCE_PROJECTIONS.get(tuple(target))  # type: ignore[arg-type]
