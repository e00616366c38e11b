"""Grounding consensus decoding in the image's predicted attributes.

Consensus (MBR) decoding (`mbr`) picks the candidate text that agrees most with the
captions of the nearest training images. Nothing in it asks whether a text fits what the
image's attribute heads (`attributes`: modality, plane, location) predict. Two ways in:

* attribute consistency of a candidate (`AttributeLexicon`): from the training captions and
  their metadata, each word that (almost) always comes with one class of an attribute
  ("sagittal" -> plane Sagittal, "flair" -> modality_detail MR - FLAIR) is learned with its class
  distribution. A candidate's implied distribution per attribute is the mean over its indicative
  words; its consistency is the pointwise mutual information between that and the image's
  predicted distribution, sum over attributes of
  ``min(0, log sum_c p_image(c) q_text(c) - log sum_c p_prior(c) q_text(c))``
  (0 when the text names nothing or names what the image more likely is than a random training
  image; negative when it names what the image is predicted not to be: a caption saying
  "axial CT" for an image predicted "sagittal MR" loses). Penalty only: an unclipped bonus
  rewarded texts that pile up attribute words (val CIDEr-D fell, benchmarks/report_medpix2.md).
* attribute-weighted pseudo-references (`reference_attribute_weights`): the training captions
  that vote in the consensus weigh ``prod_t p_image(class_t of that training image) ** power``,
  so neighbours whose metadata fit the predicted attributes count more.

    lex = AttributeLexicon.fit(train_captions, {"plane": train_plane_idx}, {"plane": classes})
    bonus = lex.consistency("sagittal t1 mr", {"plane": probs_from_the_head})
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from medmm.errors import MedmmError
from medmm.tasks.report.mbr import consensus_words


class AttributeLexicon:
    """Words that name an attribute class, learned from training captions and their labels.

    Args (of `fit`):
        texts: training captions. labels: target -> class index per caption (-1 = unknown).
        classes: target -> class names. min_count: a word must occur in this many captions with a
        known label. min_purity: and its most frequent class must cover this share of them.
    """

    def __init__(self, words: dict[str, dict[str, list[float]]], priors: dict[str, list[float]]):
        self.words = words  # target -> word -> class distribution
        self.priors = priors  # target -> class frequencies of the training captions

    @classmethod
    def fit(cls, texts: Sequence[str], labels: dict[str, Sequence[int]], classes: dict[str, list[str]],
            min_count: int = 8, min_purity: float = 0.8) -> AttributeLexicon:
        """Learn the indicative words of each target (see the class docstring)."""
        words: dict[str, dict[str, list[float]]] = {}
        priors: dict[str, list[float]] = {}
        for t, idx in labels.items():
            if len(idx) != len(texts):
                raise MedmmError(f"attribute lexicon: {len(texts)} texts but {len(idx)} labels for {t!r}")
            k = len(classes[t])
            counts: dict[str, np.ndarray] = {}
            prior = np.ones(k)  # add-one: every class possible
            for text, c in zip(texts, idx, strict=True):
                if c < 0:
                    continue
                prior[c] += 1
                for w in set(consensus_words(text)):
                    counts.setdefault(w, np.zeros(k))[c] += 1
            words[t] = {}
            for w, v in sorted(counts.items()):  # sorted: the saved lexicon must not depend on PYTHONHASHSEED
                n = v.sum()
                if n >= min_count and v.max() / n >= min_purity:
                    words[t][w] = ((v + 0.5) / (n + 0.5 * k)).tolist()  # light smoothing: never certain
            priors[t] = (prior / prior.sum()).tolist()
        return cls(words, priors)

    def implied(self, text: str) -> dict[str, np.ndarray]:
        """Per target whose indicative words the text contains: the mean class distribution."""
        ws = sorted(set(consensus_words(text)))  # a fixed summation order: same floats in every process
        out = {}
        for t, lex in self.words.items():
            hits = [lex[w] for w in ws if w in lex]
            if hits:
                out[t] = np.mean(np.asarray(hits), 0)
        return out

    def consistency(self, text: str, image_probs: dict[str, Sequence[float]]) -> float:
        """Sum over targets of min(0, log P(agree | image) - log P(agree | prior)) (module docstring)."""
        total = 0.0
        for t, q in self.implied(text).items():
            if t not in image_probs:
                continue
            p = np.asarray(image_probs[t], dtype=float)
            if p.shape != q.shape:
                raise MedmmError(f"attribute {t!r}: {p.shape[0]} predicted classes but the lexicon has {q.shape[0]}")
            pmi = math.log(float(p @ q) + 1e-9) - math.log(float(np.asarray(self.priors[t]) @ q) + 1e-9)
            total += min(0.0, pmi)
        return total

    def to_dict(self) -> dict[str, Any]:
        return {"words": self.words, "priors": self.priors}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttributeLexicon:
        return cls({t: dict(v) for t, v in d["words"].items()}, dict(d["priors"]))


def reference_attribute_weights(reference_labels: Sequence[Sequence[int]], image_probs: Sequence[Sequence[float]],
                                power: float) -> list[float]:
    """Per pseudo-reference: prod over targets of p_image(its class) ** power (unknown class: 1).

    `reference_labels[j][t]` is training image j's class index for target t (-1 unknown);
    `image_probs[t]` the query image's predicted distribution. power 0 gives all ones.
    """
    if power == 0:
        return [1.0] * len(reference_labels)
    out = []
    for lab in reference_labels:
        if len(lab) != len(image_probs):
            raise MedmmError(f"{len(lab)} labels per reference but {len(image_probs)} predicted attributes")
        w = 1.0
        for c, p in zip(lab, image_probs, strict=True):
            if c >= 0:
                w *= max(float(p[c]), 1e-6) ** power
        out.append(w)
    return out


__all__ = ["AttributeLexicon", "reference_attribute_weights"]
