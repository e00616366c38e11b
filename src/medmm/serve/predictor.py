"""`load_model(DIR)` -> `Predictor`: a model package ready to predict, in three lines.

    p = medmm.load_model("pkg/")
    p.predict(image="scan.dcm", question="is there a fracture?")

The package is verified (sha256 of every file) and the weights loaded strictly (a missing or
unexpected tensor is an error). Predictions go through the engine's `run_inference` with
`predict_step`, so they are those of `medmm predict` on the same files. A task's inputs are
`Sample` fields: the image, and text under any `Sample.text` key; no task is special here.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import numpy as np

from medmm.data.schema import TEXT_FIELDS, ImageRef, Sample
from medmm.errors import BadInputError
from medmm.serve import package as pk


class Predictor:
    """A loaded model package. Thread-safe (one inference at a time per predictor)."""

    def __init__(self, root: str | Path):
        from medmm.engine import rundir as rd
        from medmm.engine.api import build_task

        self.root = Path(root)
        self.info = pk.verify_package(self.root)
        self.config = rd.read_yaml_config(self.root)
        state = rd.read_json(self.root / rd.TASK_STATE)
        self.task = build_task(self.config, self.root / rd.CONFIG)
        self.task.load_state(state["state"])
        try:
            self.task.load_state_dict(pk.load_weights(self.root), strict=True)
        except RuntimeError as exc:  # missing / unexpected / mis-shaped tensors: never dropped silently
            raise BadInputError(self.root / pk.WEIGHTS, f"weights do not match the task: {exc}") from None
        if self.config.trainer.channels_last:
            import torch

            self.task.to(memory_format=torch.channels_last)
        self.task.eval()
        self.task_name = self.config.task
        self._lock = threading.Lock()
        self._n = 0

    def sample(self, image: Any = None, sample_id: str | None = None, **text: str) -> Sample:
        """A `Sample` from an image (path, bytes or array; a list of them for a study of several
        views) and text fields (`Sample.text` keys)."""
        unknown = sorted(set(text) - set(TEXT_FIELDS))
        if unknown:
            raise BadInputError(None, f"unknown text field(s) {unknown}; known: {', '.join(TEXT_FIELDS)}")
        if sample_id is None:
            self._n += 1
            sample_id = f"request-{self._n}"
        views = [] if image is None else list(image) if isinstance(image, (list, tuple)) else [image]
        images = [ImageRef(array=_image_array(v)) for v in views]
        return Sample(id=sample_id, dataset="request", split="predict", images=images,
                      text={k: str(v) for k, v in text.items() if v is not None})

    def predict(self, image: Any = None, **text: str) -> dict[str, Any]:
        """The task's prediction record for one input (image path/bytes/array and text fields)."""
        records, errors = self.predict_samples([self.sample(image, **text)])
        if errors:
            raise BadInputError(None, next(iter(errors.values())))
        return records[0]

    def predict_samples(self, samples: list[Sample]) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """One record per sample, in order (tasks that emit several records per sample, e.g. one per
        prompted class, give a dict {"records": [...]}); and sample id -> error for refused ones."""
        from medmm.engine.api import run_inference

        cfg = self.config
        cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, num_workers=0, eval_batch_size=max(1, len(samples))))
        with self._lock:
            records, skipped = run_inference(self.task, samples, cfg, with_references=False)
        by_id: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            sid = str(r.get("id"))
            key = sid if sid in {s.id for s in samples} else sid.split("#", 1)[0]
            by_id.setdefault(key, []).append(r)
        out, errors = [], {}
        for s in samples:
            if s.id in skipped:
                errors[s.id] = _strip_id(skipped[s.id], s.id)
            elif s.id not in by_id:
                errors[s.id] = "the task produced no prediction for this input"
            else:
                recs = by_id[s.id]
                out.append(recs[0] if len(recs) == 1 else {"id": s.id, "records": recs})
        return out, errors

    def explain(self, sample: Sample, method: str = "gradcam") -> dict[str, Any]:
        """A heatmap overlay of `sample` (PNG bytes, base64) from `medmm.interpret`, for tasks
        with a registered explainer; `MedmmError` naming the explainable tasks otherwise."""
        import base64
        import tempfile

        from medmm.interpret.explain import explain_samples

        with self._lock, tempfile.TemporaryDirectory(prefix="medmm-explain-") as tmp:
            summary = explain_samples(self.task, [sample], tmp, methods=(method,), faithfulness_steps=4, n_random=1, scale=1)
            rec = summary["samples"][0]
            heat = rec.get("heatmaps", {}).get(method)  # word-region tasks (retrieval, reports) have no image heatmap
            if heat is None:
                raise BadInputError(None, f"explanation method {method!r} does not apply to this model")
            png = (Path(tmp) / heat["png"]).read_bytes()
        return {"method": method, "explained_class": rec["explained_class"], "probability": rec["probability"],
                "deletion_auc": heat["deletion_auc"], "random_deletion_auc": heat["random_deletion_auc"],
                "png_base64": base64.b64encode(png).decode("ascii")}


def _strip_id(message: str, sid: str) -> str:
    return message[len(sid) + 2:] if message.startswith(f"{sid}: ") else message


def _image_array(image: Any) -> np.ndarray:
    from medmm.data.io import read_image
    from medmm.serve.inputs import decode_image

    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, (bytes, bytearray)):
        return decode_image(bytes(image), max_pixels=1 << 28)
    # A path: read here (not ImageRef(path=...)) so no task keeps a per-path cache entry forever.
    return read_image(image)


def load_model(root: str | Path) -> Predictor:
    """Load a model package made by `medmm package` (verified, strict); see `Predictor`."""
    return Predictor(root)
