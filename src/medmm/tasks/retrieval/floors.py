"""Retrieval: the protocol record and the trivial floors (`Task.protocol`, `Task.floors` hooks).

Floors (`medmm.metrics.floors.retrieval_floors`) on the same de-duplicated galleries as the
model's metrics: ``random`` (seeded random ranking) and ``frozen_bridge`` (no learnt encoder: an
image is matched to a text through the reports of its nearest training images by pixels).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from medmm.data.schema import Sample

if TYPE_CHECKING:
    from medmm.tasks.retrieval.task import RetrievalTask

RETRIEVAL_METRIC_DEFINITIONS = {
    "R@K": "percentage of queries with a positive ranked in the top K of the de-duplicated gallery "
           "(pessimistic ties; a text and an image are positive when they share an image key or the text)",
    "mrr": "mean reciprocal rank of the best-ranked positive", "median_rank": "median rank of the best positive",
    "<direction>_ci": "95% percentile bootstrap, resampling the queries' groups (case/patient)",
    "<direction>_random": "exact expectation under uniformly random ranking",
}


def retrieval_protocol(task: RetrievalTask) -> dict[str, Any]:
    """Metric definitions, and the pretrained checkpoint (source, sha256) when `clip_model` names one."""
    from medmm.tasks.retrieval.untrained import pretrained_record

    out: dict[str, Any] = {"metric_definitions": RETRIEVAL_METRIC_DEFINITIONS, "oracle_inputs": []}
    pretrained = pretrained_record(task)
    if pretrained is not None:
        out["pretrained_model"] = pretrained
    return out


def retrieval_floors(task: RetrievalTask, train_samples: list[Sample], samples: list[Sample],
                     records: list[dict[str, Any]]) -> dict[str, Any]:
    """Random and frozen-feature floors on the model's galleries, both directions."""
    from medmm.metrics import floors as F
    from medmm.tasks.retrieval.task import _galleries

    img, txt, pos, img_groups, txt_groups = _galleries(records)
    by_id = {s.id: s for s in samples}
    image_refs: dict[str, Any] = {}
    texts: dict[str, str] = {}
    for r in records:  # the galleries' order: first record of each key, as `_galleries`
        image_refs.setdefault(r["reference"]["image_key"], by_id[r["id"]].images[0])
        texts.setdefault(r["reference"]["text_key"], r["reference"]["text"])
    train = [s for s in train_samples if s.images and task.text_of(s).strip()]
    px = F.PixelThumbnails()
    sim = img.astype(np.float64) @ txt.T.astype(np.float64)
    return F.retrieval_floors(px.matrix([s.images[0] for s in train]), [task.text_of(s) for s in train],
                              px.matrix(list(image_refs.values())), list(texts.values()), pos, sim,
                              img_groups, txt_groups, n_resamples=task.bootstrap_resamples)
