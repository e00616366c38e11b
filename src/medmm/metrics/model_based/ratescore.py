"""RaTEScore from typed entities and their embeddings: exact, torch-free.

RaTEScore (Zhao et al., EMNLP 2024; reference code ``MAGIC-AI4Med/RaTEScore``, MIT) compares a
generated report with its reference through the medical entities a NER model finds in each
(types ``ABNORMALITY``, ``NON-ABNORMALITY``, ``DISEASE``, ``NON-DISEASE``, ``ANATOMY``; the
``NON-`` types are negated findings) and their embeddings by a synonym-aware encoder. For one
direction, from entity set A to entity set B:

- each entity a of A is matched to the entity b of B with the highest cosine similarity s(a);
- it weighs w(a) = W[type(a), type(b)] (the published type-pair "affinity" matrix) and its
  similarity is multiplied by the negation penalty ``neg_weight`` when a and b have opposite
  polarity (one of DISEASE/ABNORMALITY, the other NON-DISEASE/NON-ABNORMALITY), else by 1;
- the direction's score is Σ s(a)·w(a)·penalty(a) / Σ w(a)  (0 when Σ w(a) = 0).

Per report, with R from reference to generated entities and P from generated to reference
entities, RaTEScore = 2PR / (P + R) (0 when P + R = 0), and 0.5 when either report has no
entity (both empty included), as the reference code defines it. The corpus score is the mean
over reports. The two published matrices are ``long`` (the reference code's default) and
``short``; a JSON file in the same form (``"gttype_predtype": weight`` in lower case plus
``"neg_weight"``) may replace them.

Deviation from the reference code: a cosine tie picks the first best entity (numpy argmax);
``torch.topk`` does not promise which of tied entries it returns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TYPES = ("ABNORMALITY", "NON-ABNORMALITY", "DISEASE", "NON-DISEASE", "ANATOMY")
POSITIVE, NEGATED = frozenset({"ABNORMALITY", "DISEASE"}), frozenset({"NON-ABNORMALITY", "NON-DISEASE"})
EMPTY_SCORE = 0.5  # either report without entities (reference code)

# The published type-pair weights (MAGIC-AI4Med/RaTEScore, affinity_matrix/{long,short}_weight.json, MIT):
# rows = type of the entity being matched, columns = type of its best match, in TYPES order.
_LONG = ((0.4276119164393705, 0.5431049700217344, 0.0034478181112993847, 0.27005425386213877, 0.6240929990607657),
         (0.16546764653692908, 0.0009357166071730684, 0.719397354576018, 0.0927333564267591, 0.018670610691852826),
         (0.8396510075734789, 0.9820689020512646, 0.8460555030578727, 0.3789136708096537, 0.9950209388542061),
         (0.7759420231214385, 0.03860183811876373, 0.10073046076318157, 0.34065681486566446, 0.1839139293714062),
         (0.7487824274337533, 0.02097055139911715, 0.4592143222158069, 0.00013736314126696204, 0.2856134859160784))
_SHORT = ((0.4070293318365468, 0.9479148658006686, 0.28342529466226446, 0.23875064111146294, 0.6952639610605605),
          (0.1712744286898638, 0.0007887930317199857, 0.00045065329822896076, 0.8555432840895761, 0.4485149671497294),
          (0.8840397619834857, 0.6962283914800402, 0.19018958438059513, 0.943727057946997, 0.9637659445696822),
          (0.9555801066212176, 0.05650711141169969, 0.6072996585919443, 0.3214769399791204, 0.13122106162635216),
          (0.5829759950441763, 0.794672584951181, 0.0006059634829551632, 0.27982942400798977, 0.7709590751917746))
_NEG = {"long": 0.8716553966489615, "short": 0.3611577852354489}


@dataclass(frozen=True)
class Affinity:
    """Type-pair weights ``weights[(matched type, best-match type)]`` and the negation penalty."""

    name: str
    weights: Mapping[tuple[str, str], float]
    neg_weight: float

    def weight(self, a: str, b: str) -> float:
        """W[a, b]; an entity type the matrix does not know is an error, not a silent 0."""
        try:
            return self.weights[(a, b)]
        except KeyError:
            raise ValueError(f"RaTEScore affinity {self.name!r} has no weight for type pair ({a}, {b}); "
                             f"known types: {sorted({t for t, _ in self.weights})}") from None


def _from_rows(name: str, rows: Sequence[Sequence[float]], neg: float) -> Affinity:
    return Affinity(name, {(a, b): rows[i][j] for i, a in enumerate(TYPES) for j, b in enumerate(TYPES)}, neg)


def load_affinity(spec: str = "long") -> Affinity:
    """``"long"`` (default), ``"short"``, or a JSON file ``{"abnormality_anatomy": w, …, "neg_weight": x}``."""
    if spec.lower() == "long":
        return _from_rows("long", _LONG, _NEG["long"])
    if spec.lower() == "short":
        return _from_rows("short", _SHORT, _NEG["short"])
    path = Path(spec).expanduser()
    try:
        raw = json.loads(path.read_text())
        neg = float(raw.pop("neg_weight"))
        weights = {tuple(k.upper().split("_", 1)): float(v) for k, v in raw.items()}
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise ValueError(f"RaTEScore affinity {spec!r}: not 'long', 'short' or a JSON file of "
                         f"'type_type' weights with 'neg_weight' ({type(exc).__name__}: {exc})") from exc
    return Affinity(str(path), weights, neg)


def opposite_polarity(a: str, b: str) -> bool:
    """A finding against a negated finding (either way round): the pairs the negation penalty hits."""
    return (a in POSITIVE and b in NEGATED) or (a in NEGATED and b in POSITIVE)


def directional(src: np.ndarray, src_types: Sequence[str], tgt: np.ndarray, tgt_types: Sequence[str],
                affinity: Affinity) -> float:
    """Σ s·w·penalty / Σ w over the entities of ``src``, each against its most similar entity of ``tgt``."""
    a = np.asarray(src, dtype=np.float64)
    b = np.asarray(tgt, dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)  # as torch F.normalize (eps 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    sim = a @ b.T
    best = sim.argmax(axis=1)
    num = den = 0.0
    for i, j in enumerate(best):
        w = affinity.weight(src_types[i], tgt_types[j])
        penalty = affinity.neg_weight if opposite_polarity(src_types[i], tgt_types[j]) else 1.0
        num += float(sim[i, j]) * w * penalty
        den += w
    return num / den if den != 0 else 0.0


def report_score(hyp: np.ndarray, hyp_types: Sequence[str], ref: np.ndarray, ref_types: Sequence[str],
                 affinity: Affinity) -> float:
    """RaTEScore of one generated report against its reference, from their entities' embeddings and types."""
    if len(hyp_types) != len(hyp) or len(ref_types) != len(ref):
        raise ValueError("RaTEScore: one type per entity embedding expected")
    if len(hyp_types) == 0 or len(ref_types) == 0:
        return EMPTY_SCORE
    recall = directional(ref, ref_types, hyp, hyp_types, affinity)
    precision = directional(hyp, hyp_types, ref, ref_types, affinity)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def corpus_score(scores: Sequence[float]) -> dict[str, Any]:
    """The corpus RaTEScore: mean of per-report scores (NaN for no reports)."""
    return {"mean": float(np.mean(scores)) if len(scores) else float("nan"), "n": len(scores)}
