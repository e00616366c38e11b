"""Trivial floors: the baselines a model of each task must beat, beside every result.

Every floor is fit on the run's TRAINING samples only and scored on exactly the samples the
model was scored on; the model is then compared with it by `medmm.metrics.stats.paired_tests`
(paired percentile bootstrap of the difference model - floor, and an approximate-randomisation
p-value), resampling the same groups (patient, image) as the task's own intervals.

    prior / majority, logistic regression on pixels   classification (diagnosis)
    answer prior, question-only nearest neighbour       VQA
    nearest-neighbour report by image similarity        report generation
    random ranking, frozen-feature bridge               image <-> text retrieval
    Otsu threshold (hematoxylin channel for RGB)        segmentation

Images are compared as ``PIXEL_SIZE`` x ``PIXEL_SIZE`` grayscale thumbnails (area-averaged,
each standardised to mean 0 / norm 1), texts as TF-IDF vectors (scikit-learn). Tasks gather
their inputs and call these functions from their `Task.floors` hook; this module imports no
torch, model or engine code.

One floor's entry in a metrics file::

    {"description": "...", "metrics": {name: value}, "model_minus_floor": {name: {"difference",
     "ci": [low, high], "p_value", "p_bootstrap"}}, "method": "..."}

"p_value" is the approximate-randomisation p (two-sided); "ci" the paired bootstrap interval.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from medmm.data.schema import ImageRef

PIXEL_SIZE = 16


# ----------------------------------------------------------------------------- features
class PixelThumbnails:
    """Standardised grayscale thumbnails of images (cached by path), the floors' image features."""

    def __init__(self, size: int = PIXEL_SIZE):
        self.size = size
        self._cache: dict[str, np.ndarray] = {}

    def vector(self, ref: ImageRef | str) -> np.ndarray:
        """(size*size,) float32 thumbnail of one image (path or ImageRef), mean 0 and norm 1."""
        path = ref if isinstance(ref, str) else ref.path
        if path is not None and path in self._cache:
            return self._cache[path]
        arr = _read(ref)
        v = thumbnail(arr, self.size).ravel()
        v = v - v.mean()
        n = float(np.linalg.norm(v))
        v = (v / n if n > 0 else v).astype(np.float32)
        if path is not None:
            self._cache[path] = v
        return v

    def matrix(self, refs: Sequence[ImageRef | str]) -> np.ndarray:
        """(n, size*size) thumbnails of `refs`."""
        return np.stack([self.vector(r) for r in refs]) if refs else np.zeros((0, self.size * self.size), np.float32)


def _read(ref: ImageRef | str) -> np.ndarray:
    if isinstance(ref, ImageRef) and ref.array is not None:
        return np.asarray(ref.array)
    from medmm.data.io import read_image

    return read_image(ref if isinstance(ref, str) else ref.path)


def gray(arr: np.ndarray) -> np.ndarray:
    """2-D float32 of an (H, W), (H, W, C) or (H, W, D) image (channel mean; RGB: luminance)."""
    a = np.asarray(arr, dtype=np.float32)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        return a[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    if a.ndim == 3:
        return a.mean(axis=-1)
    if a.ndim != 2:
        raise ValueError(f"cannot make a thumbnail of an image of shape {a.shape}")
    return a


def thumbnail(arr: np.ndarray, size: int) -> np.ndarray:
    """(size, size) area-averaged grayscale thumbnail."""
    from PIL import Image

    g = gray(arr)
    return np.asarray(Image.fromarray(g, mode="F").resize((size, size), Image.Resampling.BOX), dtype=np.float32)


def tfidf(train_texts: Sequence[str], *others: Sequence[str]) -> list[np.ndarray]:
    """L2-normalised TF-IDF (word 1-2 grams, fit on `train_texts`) of the training and other texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    fitted = vec.fit_transform([t or "" for t in train_texts])
    return [fitted, *(vec.transform([t or "" for t in o]) for o in others)]


def nearest(train: Any, query: Any) -> np.ndarray:
    """Index of each query row's most similar training row (cosine of normalised rows; first on ties)."""
    sim = query @ train.T
    sim = sim.toarray() if hasattr(sim, "toarray") else np.asarray(sim)
    return sim.argmax(axis=1) if sim.shape[1] else np.zeros(sim.shape[0], int)


# ----------------------------------------------------------------------------- comparison
def compare(metric_fn: Callable[..., dict[str, float]], model_pred: Any, floor_pred: Any, *shared: Any,
            groups: Sequence[Any] | None, n_resamples: int, seed: int = 0, description: str = "") -> dict[str, Any]:
    """A floor's entry: its metrics and model - floor per metric, paired (see module docstring)."""
    from medmm.metrics.stats import flatten, paired_tests

    if n_resamples <= 0:  # intervals switched off by the task's config: values and differences only
        a, b = flatten(metric_fn(model_pred, *shared)), flatten(metric_fn(floor_pred, *shared))
        return {"description": description, "metrics": {k: _finite(v) for k, v in b.items()},
                "model_minus_floor": {k: {"difference": _finite(a[k] - b[k]), "ci": None, "p_value": None,
                                          "p_bootstrap": None} for k in b if k in a},
                "method": "no resamples (bootstrap_resamples: 0): no interval or test"}
    tests = paired_tests(metric_fn, model_pred, floor_pred, *shared, n_resamples=n_resamples, seed=seed,
                         groups=groups)
    entry: dict[str, Any] = {"description": description,
                             "metrics": {k: _finite(v["b"]) for k, v in tests.items()}, "model_minus_floor": {}}
    for k, v in tests.items():
        if "error" in v:
            entry["model_minus_floor"][k] = {"error": v["error"]}
            continue
        entry["model_minus_floor"][k] = {
            "difference": v["difference"],
            "ci": [v["difference_low"], v["difference_high"]],
            "p_value": v["p_randomisation"],
            "p_bootstrap": v["p_bootstrap"],
        }
        entry["method"] = v["method"]
    return entry


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def skipped(reason: str) -> dict[str, Any]:
    """The entry of a floor that could not be computed (named and explained, never silently absent)."""
    return {"skipped": reason}


# ----------------------------------------------------------------------------- classification
def classification_headline(scores: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """AUROC (macro one-vs-rest) and arg-max accuracy of class scores (n, C) against labels y (n,);
    multi-label (y (n, C) 0/1, NaN = missing): macro AUROC over labels."""
    from medmm.metrics.classification import auroc_macro_multilabel, auroc_macro_ovr

    if y.ndim == 2:
        return {"auroc_macro": auroc_macro_multilabel(y, scores)}
    return {"auroc_macro_ovr": auroc_macro_ovr(y, scores), "accuracy": float(np.mean(scores.argmax(1) == y))}


def classification_floors(train_y: np.ndarray, eval_y: np.ndarray, model_scores: np.ndarray,
                          features: dict[str, tuple[Any, np.ndarray, Any]], *, groups: Sequence[Any] | None,
                          n_resamples: int, seed: int = 0) -> dict[str, Any]:
    """`prior` (the training class frequencies as every sample's scores: majority-class decisions,
    AUROC 0.5) and `logistic_<name>` (scikit-learn logistic regression, standardised, L2, C=1, on
    each (train_X, train_y, eval_X) of `features`, e.g. pixel thumbnails) for multi-class integer
    labels (n,) or multi-label 0/1/NaN matrices (n, C); compared on `classification_headline`."""
    n_classes = model_scores.shape[1]
    if eval_y.ndim == 2:
        prior = np.nanmean(train_y, axis=0) if len(train_y) else np.zeros(n_classes)
        prior = np.where(np.isfinite(prior), prior, 0.0)
    else:
        prior = np.bincount(train_y, minlength=n_classes) / max(1, len(train_y))
    out: dict[str, Any] = {
        "prior": compare(classification_headline, model_scores, np.tile(prior, (len(eval_y), 1)), eval_y,
                         groups=groups, n_resamples=n_resamples, seed=seed,
                         description="training class frequencies as every sample's scores (majority-class decisions)"),
    }
    for name, (xtr, ytr, xev) in features.items():
        try:
            scores = _logistic_scores(ytr, xtr, xev, n_classes)
        except ValueError as exc:
            out[f"logistic_{name}"] = skipped(str(exc))
            continue
        out[f"logistic_{name}"] = compare(classification_headline, model_scores, scores, eval_y, groups=groups,
                                          n_resamples=n_resamples, seed=seed,
                                          description=f"logistic regression (standardised, L2, C=1) on {name}, "
                                                      "fit on the training samples")
    return out


def _logistic(xtr: Any, target: np.ndarray, xev: Any) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (n_eval, K), classes (K)) of a standardised L2 logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(with_mean=not hasattr(xtr, "toarray")), LogisticRegression(max_iter=2000, C=1.0))
    model.fit(xtr, target)
    return model.predict_proba(xev), model[-1].classes_


def _logistic_scores(y: np.ndarray, xtr: Any, xev: Any, n_classes: int) -> np.ndarray:
    if y.ndim == 2:  # multi-label: one binary model per label, on the rows where it is known
        cols = []
        for j in range(y.shape[1]):
            keep = np.isfinite(y[:, j])
            t = y[keep, j].astype(int)
            if len(np.unique(t)) < 2:  # one state only in training: its frequency (a constant)
                cols.append(np.full(xev.shape[0], float(t.mean()) if t.size else 0.0))
                continue
            p, cl = _logistic(xtr[keep], t, xev)
            cols.append(p[:, list(cl).index(1)])
        return np.stack(cols, axis=1)
    if len(np.unique(y)) < 2:
        raise ValueError("only one class in the training samples")
    p, cl = _logistic(xtr, y, xev)
    scores = np.zeros((xev.shape[0], n_classes))
    scores[:, cl] = p
    return scores


# ----------------------------------------------------------------------------- VQA
def vqa_headline(correct: np.ndarray, closed: np.ndarray) -> dict[str, float]:
    """Overall accuracy, closed accuracy and open exact match from per-question correctness
    (closed/open by the REFERENCE answer type: a scoring definition, not an input of a model)."""
    closed = closed.astype(bool)
    return {
        "overall_accuracy": float(correct.mean()),
        "closed_accuracy": float(correct[closed].mean()) if closed.any() else math.nan,
        "open_exact_match": float(correct[~closed].mean()) if (~closed).any() else math.nan,
    }


def vqa_floors(train_questions: Sequence[str], train_answers: Sequence[str], train_closed: Sequence[bool],
               questions: Sequence[str], references: Sequence[str], reference_types: Sequence[str | None],
               routed_closed: Sequence[bool], model_predictions: Sequence[str], *, groups: Sequence[Any] | None,
               n_resamples: int, seed: int = 0) -> dict[str, Any]:
    """`answer_prior` (the most frequent training answer of the question's ROUTED type: closed or
    open as the model predicts it from the question, no annotation) and `question_nn` (the answer
    of the most similar training question, TF-IDF cosine; the image is never looked at)."""
    from medmm.metrics.vqa import normalise_answer, score_item

    if not train_questions:
        return {"answer_prior": skipped("no training questions"), "question_nn": skipped("no training questions")}
    norm = [normalise_answer(a) for a in train_answers]
    top = {flag: Counter(a for a, c in zip(norm, train_closed, strict=True) if bool(c) == flag and a).most_common(1)
           for flag in (True, False)}
    overall = Counter(a for a in norm if a).most_common(1)
    fallback = overall[0][0] if overall else ""
    prior = [(top[bool(c)][0][0] if top[bool(c)] else fallback) for c in routed_closed]
    tr, ev = tfidf(train_questions, questions)
    nn = [train_answers[i] for i in nearest(tr, ev)]

    def correct(preds: Sequence[str]) -> np.ndarray:
        return np.array([score_item(str(p), str(r), t)["exact_match"] for p, r, t in
                         zip(preds, references, reference_types, strict=True)], dtype=float)

    closed = np.array([score_item("", str(r), t)["closed"] for r, t in zip(references, reference_types, strict=True)])
    model = correct(model_predictions)
    out = {}
    for name, preds, desc in (
        ("answer_prior", prior, "most frequent training answer of the routed (predicted closed/open) type"),
        ("question_nn", nn, "answer of the most similar training question (TF-IDF word 1-2 grams), no image"),
    ):
        out[name] = compare(vqa_headline, model, correct(preds), closed, groups=groups, n_resamples=n_resamples,
                            seed=seed, description=desc)
    return out


# ----------------------------------------------------------------------------- report generation
def report_rouge(hyps: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    """Per-sample ROUGE-L (PTB-tokenised, lower-cased, as `medmm.metrics.nlg`)."""
    from medmm.metrics.nlg.rouge import rouge_l
    from medmm.metrics.nlg.tokenize import coco_tokenize

    return np.array([rouge_l(coco_tokenize(h or ""), [coco_tokenize(r or "")]) for h, r in zip(hyps, refs, strict=True)])


def report_floors(train_pixels: np.ndarray, train_texts: Sequence[str], eval_pixels: np.ndarray,
                  references: Sequence[str], model_predictions: Sequence[str], *, groups: Sequence[Any] | None,
                  n_resamples: int, seed: int = 0) -> dict[str, Any]:
    """`nn_report_pixels`: the training report of the most similar training image (pixel
    thumbnails, cosine), compared on per-sample ROUGE-L."""
    if len(train_texts) == 0:
        return {"nn_report_pixels": skipped("no training reports")}
    nn = [train_texts[i] for i in nearest(train_pixels, eval_pixels)]
    model, floor = report_rouge(model_predictions, references), report_rouge(nn, references)
    return {"nn_report_pixels": compare(lambda x: {"rouge_l": float(np.mean(x))}, model, floor, groups=groups,
                                        n_resamples=n_resamples, seed=seed,
                                        description="report of the nearest training image (pixel thumbnails); "
                                                    "metric: mean per-sample ROUGE-L")}


# ----------------------------------------------------------------------------- retrieval
def retrieval_floors(train_pixels: np.ndarray, train_texts: Sequence[str], gallery_pixels: np.ndarray,
                     gallery_texts: Sequence[str], positives: np.ndarray, model_similarity: np.ndarray,
                     image_groups: Sequence[Any], text_groups: Sequence[Any], *, n_resamples: int, seed: int = 0,
                     k_neighbours: int = 5) -> dict[str, Any]:
    """`random` (a seeded uniform random similarity matrix) and `frozen_bridge` (frozen features,
    no training of an encoder: an image is scored against a text by the TF-IDF similarity of the
    text to the reports of its `k_neighbours` nearest training images by pixel thumbnails), both
    directions, on per-query ranks (R@1/5/10, MRR)."""
    from medmm.metrics.retrieval import rank_metrics, ranks

    rng = np.random.default_rng(seed)
    sims = {"random": rng.random(model_similarity.shape)}
    if len(train_texts):
        tr_txt, gal_txt = tfidf(train_texts, gallery_texts)
        nbr = gallery_pixels @ train_pixels.T  # (images, train)
        k = min(k_neighbours, nbr.shape[1])
        top = np.argsort(-nbr, axis=1)[:, :k]
        text_sim = np.asarray((gal_txt @ tr_txt.T).toarray())  # (texts, train)
        sims["frozen_bridge"] = np.stack([text_sim[:, row].mean(axis=1) for row in top])
    descriptions = {"random": "uniformly random ranking (seeded)",
                    "frozen_bridge": f"TF-IDF similarity of the text to the reports of the {k_neighbours} nearest "
                                     "training images (pixel thumbnails); no learnt encoder"}
    out: dict[str, Any] = {}
    for name, sim in sims.items():
        entry: dict[str, Any] = {"description": descriptions[name]}
        for direction, ms, fs, pos, grp in (("image_to_text", model_similarity, sim, positives, image_groups),
                                            ("text_to_image", model_similarity.T, sim.T, positives.T, text_groups)):
            res = compare(lambda r: {k: v for k, v in rank_metrics(r).items() if k.startswith(("R@", "mrr"))},
                          ranks(ms, pos).astype(float), ranks(fs, pos).astype(float), groups=list(grp),
                          n_resamples=n_resamples, seed=seed)
            entry.setdefault("metrics", {})[direction] = res["metrics"]
            entry.setdefault("model_minus_floor", {})[direction] = res["model_minus_floor"]
            entry["method"] = res.get("method")
        out[name] = entry
    if "frozen_bridge" not in out:
        out["frozen_bridge"] = skipped("no training texts")
    return out


# ----------------------------------------------------------------------------- segmentation
# Ruifrok & Johnston's H&E(-DAB) stain vectors (scikit-image's rgb2hed uses the same matrix).
_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
_HED_INV = np.linalg.inv(_HED / np.linalg.norm(_HED, axis=1, keepdims=True))


def hematoxylin(rgb: np.ndarray) -> np.ndarray:
    """Hematoxylin optical density of an RGB image (colour deconvolution, Ruifrok & Johnston 2001)."""
    a = np.asarray(rgb, dtype=np.float64)[..., :3]
    scale = 65535.0 if a.max() > 255 else 255.0
    od = -np.log(np.maximum(a / scale, 1e-6))
    return (od @ _HED_INV)[..., 0]


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the cut of the histogram maximising the between-class variance."""
    v = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return lo
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.argmax(between[:-1]))])


def otsu_channel(image: np.ndarray) -> np.ndarray:
    """The channel Otsu thresholds: hematoxylin density for RGB, the gray values otherwise."""
    a = np.asarray(image)
    return hematoxylin(a) if a.ndim == 3 and a.shape[-1] in (3, 4) else gray(a)


def otsu_mask(image: np.ndarray, above: bool) -> np.ndarray:
    """Foreground where the Otsu channel is above (or below) its Otsu threshold."""
    c = otsu_channel(image)
    t = otsu_threshold(c)
    return (c > t) if above else (c <= t)


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of two binary masks; 1 when both are empty (as `medmm.metrics.segmentation`)."""
    p, r = pred.astype(bool), ref.astype(bool)
    s = p.sum() + r.sum()
    return 1.0 if s == 0 else float(2 * np.logical_and(p, r).sum() / s)


def fit_otsu_polarity(train_pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> bool:
    """Whether the foreground is ABOVE the Otsu threshold, chosen by mean Dice on training pairs."""
    if not train_pairs:
        raise ValueError("no training image/mask pairs to choose the Otsu polarity on")
    above = np.mean([dice(otsu_mask(img, True), m) for img, m in train_pairs])
    below = np.mean([dice(otsu_mask(img, False), m) for img, m in train_pairs])
    return bool(above >= below)


def segmentation_floors(train_pairs: dict[str, Sequence[tuple[np.ndarray, np.ndarray]]], images: Sequence[np.ndarray],
                        references: Sequence[np.ndarray], labels: Sequence[str], model_dice: Sequence[float], *,
                        groups: Sequence[Any] | None, n_resamples: int, seed: int = 0) -> dict[str, Any]:
    """`otsu`: per example, Otsu thresholding of the hematoxylin channel (RGB) or the gray values,
    the foreground side chosen per class label on that label's training (image, mask) pairs;
    compared on ``dice_mean`` (mean over classes of the mean per-example Dice, as the task's)."""
    missing = sorted({lb for lb in labels if not train_pairs.get(lb)})
    if missing:
        return {"otsu": skipped(f"no training image/mask pairs for {missing}")}
    above = {lb: fit_otsu_polarity(train_pairs[lb]) for lb in dict.fromkeys(labels)}
    floor = []
    for img, ref, lb in zip(images, references, labels, strict=True):
        m = otsu_mask(img, above[lb])
        if m.shape != ref.shape:
            from PIL import Image

            m = np.asarray(Image.fromarray(m.astype(np.uint8)).resize(ref.shape[::-1], Image.Resampling.NEAREST)) > 0
        floor.append(dice(m, ref))

    def dice_mean(d: np.ndarray, lab: np.ndarray) -> dict[str, float]:
        return {"dice_mean": float(np.mean([d[lab == k].mean() for k in np.unique(lab)]))}

    sides = ", ".join(f"{lb}: {'above' if a else 'below'}" for lb, a in above.items())
    return {"otsu": compare(dice_mean, np.asarray(model_dice, float), np.asarray(floor), np.asarray(labels),
                            groups=groups, n_resamples=n_resamples, seed=seed,
                            description="Otsu threshold of the hematoxylin channel (RGB) or the gray values; "
                                        f"foreground side chosen on training masks ({sides})")}
