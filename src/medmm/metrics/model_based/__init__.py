"""Optional model-based report metrics (off by default; need torch + transformers and published weights).

``medmm score --task report_generation --model-metrics chexbert=PATH`` adds F1-CheXbert;
``--model-metrics radgraph=PATH`` (or ``radgraph-xl=PATH``) adds F1-RadGraph, whose extractor
also needs the ``radgraph`` package; ``--model-metrics ratescore=NER,ENCODER[,AFFINITY]`` adds
RaTEScore (two Hugging Face model folders or Hub ids). PATH is the published file, a folder holding it, or a Hub
repo id, optionally pinned: ``PATH#sha256=HEX``. Importing this package is torch-free; a model
is built only when its metric is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

KNOWN = ("chexbert", "radgraph", "radgraph-xl", "ratescore")


def _radgraph_key(name: str) -> str:
    """Output name of a RadGraph metric: radgraph -> f1_radgraph, radgraph-xl -> f1_radgraph_xl."""
    return "f1_" + name.replace("-", "_")


def parse_specs(items: Sequence[str] | None) -> dict[str, str]:
    """``["chexbert=PATH", ...]`` -> ``{"chexbert": "PATH"}``; unknown names and bad forms are errors."""
    specs: dict[str, str] = {}
    for item in items or ():
        name, sep, where = item.partition("=")
        name = name.strip().lower()
        if not sep or not where.strip():
            raise ValueError(f"--model-metrics {item!r}: expected NAME=PATH, e.g. chexbert=/models/chexbert.pth "
                             f"or radgraph=/models/radgraph.tar.gz")
        if name not in KNOWN:
            raise ValueError(f"--model-metrics {item!r}: unknown metric {name!r}; known: {list(KNOWN)}")
        specs[name] = where.strip()
    return specs


def label_with_models(specs: dict[str, str], hyps: Sequence[str], refs: Sequence[str]) -> dict[str, Any]:
    """Per metric, for the aligned reports: chexbert {"hyp": labels, "ref": labels, "provenance"};
    radgraph / radgraph-xl {"per_report": {level: [F1, ...]}, "provenance"}."""
    out: dict[str, Any] = {}
    if "chexbert" in specs:
        from medmm.metrics.model_based.chexbert import LABEL_HANDLING, CheXbertLabeller

        model = CheXbertLabeller(specs["chexbert"])
        out["chexbert"] = {"hyp": model.label(hyps), "ref": model.label(refs),
                           "provenance": {**model.provenance(), "label_handling": LABEL_HANDLING,
                                          "implementation": "medmm.metrics.model_based.chexbert (CheXbert, Smit et al. 2020)",
                                          "averaging": "micro = pooled counts; macro = mean over observations with a defined F1"}}
    for name in (n for n in KNOWN if n.startswith("radgraph") and n in specs):
        from medmm.metrics.model_based.radgraph_extract import RadGraphExtractor
        from medmm.metrics.model_based.radgraph_f1 import LEVEL_NAMES, per_report_f1

        extractor = RadGraphExtractor(name, specs[name])
        hyp_graphs, ref_graphs = extractor.graphs(hyps), extractor.graphs(refs)
        casing = "radgraph-0.1.18"
        out[name] = {"per_report": per_report_f1(hyp_graphs, ref_graphs, casing=casing),
                     "provenance": {**extractor.provenance(), "casing": casing, "levels": LEVEL_NAMES,
                                    "implementation": "medmm.metrics.model_based.radgraph_f1 (F1-RadGraph, Delbrouck "
                                                      "et al. 2022, as defined by radgraph 0.1.18 rewards.py)",
                                    "averaging": "per-report set F1, mean over reports (empty report or graph = 0)",
                                    "n_empty_graphs": sum(1 for h, r in zip(hyp_graphs, ref_graphs, strict=True)
                                                          if h is None or r is None or not h.entities or not r.entities)}}
    if "ratescore" in specs:
        from medmm.metrics.model_based.ratescore import EMPTY_SCORE
        from medmm.metrics.model_based.ratescore_models import RaTEScorer

        scorer = RaTEScorer(specs["ratescore"])
        scores, counts = scorer.scores(hyps, refs)
        out["ratescore"] = {"per_report": {"ratescore": scores},
                            "provenance": {**scorer.provenance(),
                                           "implementation": "medmm.metrics.model_based.ratescore (RaTEScore, Zhao "
                                                             "et al. EMNLP 2024, as the reference code "
                                                             "MAGIC-AI4Med/RaTEScore defines it)",
                                           "averaging": f"per-report score, mean over reports (a report pair with no "
                                                        f"entity on either side = {EMPTY_SCORE})",
                                           "n_no_entities": sum(1 for h, r in counts if h == 0 or r == 0)}}
    return out


def per_sample(labelled: dict[str, Any]) -> list[dict[str, Any]]:
    """``label_with_models``' output cut into one record per report, so that resamples (and the paired
    test's swaps between two systems) carry each report's own labels or scores."""
    n = max((len(v["hyp"]) if "hyp" in v else len(next(iter(v["per_report"].values()))) for v in labelled.values()),
            default=0)
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for name, v in labelled.items():
        for i in range(n):
            if name == "chexbert":
                out[i][name] = (v["hyp"][i], v["ref"][i])
            else:
                out[i][name] = {level: scores[i] for level, scores in v["per_report"].items()}
    return out


def aggregate_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The metrics of a selection of ``per_sample`` records."""
    out: dict[str, Any] = {}
    names = samples[0].keys() if samples else ()
    if "chexbert" in names:
        from medmm.metrics.model_based.chexbert import f1_chexbert

        out.update(f1_chexbert([s["chexbert"][0] for s in samples], [s["chexbert"][1] for s in samples]))
    for name in (n for n in KNOWN if n.startswith("radgraph") and n in names):
        from medmm.metrics.model_based.radgraph_f1 import corpus_f1

        out[_radgraph_key(name)] = corpus_f1({level: [s[name][level] for s in samples] for level in samples[0][name]})
    if "ratescore" in names:
        from medmm.metrics.model_based.ratescore import corpus_score

        out["ratescore"] = corpus_score([s["ratescore"]["ratescore"] for s in samples])
    return out


def aggregate(labelled: dict[str, Any], index: Sequence[int] | None = None) -> dict[str, Any]:
    """The metrics of ``label_with_models``' output, optionally over a subset of samples (bootstrap)."""
    samples = per_sample(labelled)
    return aggregate_samples(samples if index is None else [samples[i] for i in index])


def flat_scores(samples: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The headline numbers of ``per_sample`` records as flat ``model_metrics.…`` keys (bootstrap CIs, paired tests)."""
    from medmm.metrics.score import as_float

    d: dict[str, float] = {}
    for key, m in aggregate_samples(samples).items():
        if key.startswith("f1_chexbert"):
            for avg in ("micro", "macro"):
                d[f"model_metrics.{key}.{avg}.f1"] = as_float(m[avg]["f1"])
        elif key == "ratescore":
            d["model_metrics.ratescore"] = m["mean"]
        else:  # RadGraph: one mean per level
            d.update({f"model_metrics.{key}.{level}": v for level, v in m.items()})
    return d
