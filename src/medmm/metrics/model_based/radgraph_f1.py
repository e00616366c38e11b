"""RadGraph-F1 (F1-RadGraph) from entity/relation graphs: exact, torch-free.

RadGraph (Jain et al., NeurIPS Datasets & Benchmarks 2021) annotates a report as entities
(a token span and a label: ``ANAT-DP`` anatomy, ``OBS-DP`` / ``OBS-U`` / ``OBS-DA`` observation
definitely present / uncertain / definitely absent; RadGraph-XL writes them as e.g.
``Observation::definitely absent``) and directed relations between entities (``modify``,
``located_at``, ``suggestive_of``). F1-RadGraph (Delbrouck et al., Findings of EMNLP 2022),
as the ``radgraph`` package (0.1.18, ``radgraph/rewards.py``) defines it, compares the graph
of a generated report with the graph of its reference through three sets per graph:

- ``simple`` (RG_E): one ``(tokens, label)`` per entity;
- ``partial`` (RG_ER, the one most RRG papers report): ``(tokens, label)`` for an entity with
  no outgoing relation, ``(tokens, label, True)`` for one with at least one;
- ``complete`` (RG_ER-bar): ``(tokens, label)`` for an entity with no outgoing relation, and
  one ``(tokens, label, relation type, target tokens)`` per outgoing relation.

Sets, not multisets: a repeated element counts once. Per report, precision = |H∩R| / |H| and
recall = |H∩R| / |R| (0 when the set is empty), F1 = 2PR / (P + R) (0 when P + R = 0). A
report whose generated or reference text is empty, or whose graph on either side has no
entity, scores 0 on all three (also when both sides are empty). The corpus score is the mean
over all reports, those zeros included.

Letter case, ``casing``: ``"radgraph-0.1.18"`` (default) reproduces the released package,
which lower-cases only the source and target tokens of the ``complete`` relation tuples and
compares everything else as extracted; ``"lower"`` lower-cases every token (the upstream
repository after release 0.1.18, commit b5ab8d0). They differ only where the same words
differ in case between the two reports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

LEVELS = ("simple", "partial", "complete")
# the literature's names of the three levels (radgraph README: rg_e, rg_er, rg_bar_er)
LEVEL_NAMES = {"simple": "RG_E", "partial": "RG_ER", "complete": "RG_ER_bar"}
CASINGS = ("radgraph-0.1.18", "lower")
V1_LABELS = frozenset({"ANAT-DP", "OBS-DP", "OBS-U", "OBS-DA"})
_XL_LABEL = re.compile(r"^(Anatomy|Observation)(::measurement)?::(definitely present|definitely absent|uncertain)$")
RELATION_TYPES = frozenset({"modify", "located_at", "suggestive_of"})


@dataclass(frozen=True)
class ReportGraph:
    """One report's RadGraph annotation.

    ``entities``: ``(tokens, label)`` pairs, tokens being the span's words joined by single
    spaces. ``relations``: ``(source, target, type)`` with source and target indices into
    ``entities``.
    """

    entities: tuple[tuple[str, str], ...] = ()
    relations: tuple[tuple[int, int, str], ...] = ()

    def __post_init__(self) -> None:
        for tokens, label in self.entities:
            if not isinstance(tokens, str) or not (label in V1_LABELS or _XL_LABEL.match(label or "")):
                raise ValueError(f"entity {(tokens, label)!r}: expected (tokens, label) with label one of "
                                 f"{sorted(V1_LABELS)} or RadGraph-XL's 'Anatomy|Observation::...'")
        n = len(self.entities)
        for src, tgt, kind in self.relations:
            if kind not in RELATION_TYPES:
                raise ValueError(f"relation {(src, tgt, kind)!r}: type must be one of {sorted(RELATION_TYPES)}")
            if not (0 <= src < n and 0 <= tgt < n):
                raise ValueError(f"relation {(src, tgt, kind)!r}: entity index out of range (graph has {n} entities)")

    @classmethod
    def from_annotation(cls, annotation: Mapping[str, Any]) -> ReportGraph:
        """The graph of one report as the ``radgraph`` package returns it:
        ``{"entities": {"1": {"tokens", "label", "relations": [[type, "2"], ...]}, ...}, ...}``."""
        ents = annotation.get("entities")
        if not isinstance(ents, Mapping):
            raise ValueError("annotation has no 'entities' mapping (expected the radgraph package's per-report output)")
        keys = list(ents)
        index = {k: i for i, k in enumerate(keys)}
        entities, relations = [], []
        for i, k in enumerate(keys):
            e = ents[k]
            entities.append((e["tokens"], e["label"]))
            for kind, target in e.get("relations", ()):
                if str(target) not in index:
                    raise ValueError(f"entity {k!r}: relation {kind!r} points to unknown entity {target!r}")
                relations.append((i, index[str(target)], kind))
        return cls(tuple(entities), tuple(relations))


def _sets(graph: ReportGraph, casing: str) -> dict[str, set[tuple]]:
    """The three comparison sets of one graph (module docstring)."""
    def tok(t: str) -> str:
        return t.lower() if casing == "lower" else t

    out: dict[str, set[tuple]] = {level: set() for level in LEVELS}
    outgoing: dict[int, list[tuple[int, str]]] = {}
    for src, tgt, kind in graph.relations:
        outgoing.setdefault(src, []).append((tgt, kind))
    for i, (tokens, label) in enumerate(graph.entities):
        out["simple"].add((tok(tokens), label))
        if i not in outgoing:
            out["partial"].add((tok(tokens), label))
            out["complete"].add((tok(tokens), label))
            continue
        out["partial"].add((tok(tokens), label, True))
        for tgt, kind in outgoing[i]:
            # the released package lower-cases both ends of a relation tuple whatever the casing
            out["complete"].add((tokens.lower(), label, kind, graph.entities[tgt][0].lower()))
    return out


def _f1(hyp: set, ref: set) -> float:
    common = len(hyp & ref)
    p = common / len(hyp) if hyp else 0.0
    r = common / len(ref) if ref else 0.0
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def report_f1(hyp: ReportGraph, ref: ReportGraph, *, casing: str = "radgraph-0.1.18") -> dict[str, float]:
    """``{"simple", "partial", "complete"}`` F1 of one generated report's graph against its reference's."""
    if casing not in CASINGS:
        raise ValueError(f"casing must be one of {CASINGS}, got {casing!r}")
    if not hyp.entities or not ref.entities:
        return dict.fromkeys(LEVELS, 0.0)
    h, r = _sets(hyp, casing), _sets(ref, casing)
    return {level: _f1(h[level], r[level]) for level in LEVELS}


def per_report_f1(hyps: Sequence[ReportGraph | None], refs: Sequence[ReportGraph | None], *,
                  casing: str = "radgraph-0.1.18") -> dict[str, list[float]]:
    """Per level, the F1 of each aligned pair; ``None`` on either side (an empty report text,
    never given to the extractor) scores 0."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} generated graphs for {len(refs)} references")
    out: dict[str, list[float]] = {level: [] for level in LEVELS}
    for h, r in zip(hyps, refs, strict=True):
        scores = dict.fromkeys(LEVELS, 0.0) if h is None or r is None else report_f1(h, r, casing=casing)
        for level in LEVELS:
            out[level].append(scores[level])
    return out


def corpus_f1(per_report: Mapping[str, Sequence[float]], index: Sequence[int] | None = None) -> dict[str, float]:
    """Mean per-report F1 of each level, over all reports or those at ``index`` (a resample)."""
    out = {}
    for level in LEVELS:
        v = np.asarray(per_report[level], dtype=float)
        sel = v if index is None else v[np.asarray(index, dtype=int)]
        out[level] = float(sel.mean()) if sel.size else float("nan")
    return out


def corpus_f1_with_ci(per_report: Mapping[str, Sequence[float]], *, n_resamples: int = 1000, seed: int = 0,
                      confidence: float = 0.95, groups: Sequence[Any] | None = None) -> dict[str, Any]:
    """Corpus means with percentile-bootstrap intervals (:func:`medmm.metrics.stats.bootstrap_ci`)."""
    from medmm.metrics.stats import bootstrap_ci

    n = len(per_report[LEVELS[0]])
    return bootstrap_ci(lambda idx: corpus_f1(per_report, idx), np.arange(n), n_resamples=n_resamples,
                        seed=seed, confidence=confidence, groups=groups)
