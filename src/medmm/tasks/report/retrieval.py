"""Retrieval keys for report generation: which image embedding finds the "similar training studies".

Two keys exist:

* ``thumbnail`` (default): `medmm.knowledge.report_store.thumbnail_embedding`, training-free (a
  16 x 16 grey thumbnail). It finds images of similar modality / plane / region only.
* a trained key: the image tower + projection of a finished `retrieval` run (the contrastive
  image-caption dual encoder, `configs/retrieval/*.yaml`), loaded once and FROZEN. It is trained
  to put an image near its caption, so its neighbours are closer in caption content. It must not
  change while the report model trains (the store's keys would go stale), hence frozen.

`FrozenImageKey` is an `nn.Module` so its weights travel inside the report run's `model.pt`; the
`spec()` it returns (encoder name, kwargs, projection, input size) goes into the task state, so
`load_run` can rebuild it without the retrieval run directory.

    key = FrozenImageKey.from_run("runs/retrieval_medpix2")
    emb = key.embed([array_view1, array_view2])            # (E,) float32, L2-normalised
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medmm.data.transforms import ImageInputSpec, build_transform
from medmm.errors import MedmmError


class FrozenImageKey(nn.Module):
    """A retrieval run's image tower and projection, frozen and always in eval mode."""

    def __init__(self, spec: dict[str, Any]):
        super().__init__()
        from medmm.models import create_image_encoder
        from medmm.tasks.retrieval.task import _projection

        need = {"image_encoder", "image_encoder_kwargs", "embed_dim", "projection", "image_size", "channels", "mean", "std"}
        missing = need - set(spec)
        if missing:
            raise MedmmError(f"retrieval key spec lacks {sorted(missing)}")
        self._spec = dict(spec)
        if "interpolation" not in spec:  # written before retrieval used the shared transform
            warnings.warn("this retrieval key was stored by a medmm whose retrieval preprocessing min-max scaled "
                          "each image (now uint8 / 255 like every task, docs/data-io.md): keys stored with the run "
                          "and new queries may differ slightly; retrain the retrieval and report runs for exact agreement",
                          stacklevel=2)
        # the retrieval run's input, rebuilt from the stored keys (image_size, channels, mean, std)
        self._transform = build_transform(ImageInputSpec.from_dict(spec))
        self.encoder = create_image_encoder(spec["image_encoder"], **spec["image_encoder_kwargs"])
        self.proj = _projection(self.encoder.out_dim, int(spec["embed_dim"]), spec["projection"])
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    @classmethod
    def from_run(cls, run_dir: str | Path) -> FrozenImageKey:
        """The image side of a trained `retrieval` run (medmm encoders, not an HF CLIP model)."""
        from medmm.engine.api import load_run
        from medmm.tasks.retrieval.task import RetrievalTask

        cfg, task = load_run(run_dir)
        if not isinstance(task, RetrievalTask):
            raise MedmmError(f"{run_dir}: model.retrieval.run must be a retrieval run, got task {cfg.task!r}")
        m = cfg.model
        if m.get("clip_model"):
            raise MedmmError(f"{run_dir}: a clip_model retrieval run cannot serve as a report retrieval key (medmm encoders only)")
        spec = {
            "run_dir": str(Path(run_dir).resolve()),
            "image_encoder": m.get("image_encoder", "small_cnn"),
            "image_encoder_kwargs": dict(m.get("image_encoder_kwargs") or {}),
            "embed_dim": int(task.model.embed_dim),
            "projection": m.get("projection", "mlp"),
            "image_size": int(task.image_size),
            "channels": int(task.channels),
            "mean": list(task.mean),
            "std": list(task.std),
            "interpolation": task.input_spec.interpolation,
        }
        # a pretrained processor's resize rule and crop travel too (none for medmm's own encoders)
        spec.update({k: v for k, v in task.input_spec.to_dict().items() if k.startswith("resize")})
        key = cls(spec)
        key.encoder.load_state_dict(task.model.image_encoder.state_dict(), strict=True)
        key.proj.load_state_dict(task.model.image_proj.state_dict(), strict=True)
        return key

    def spec(self) -> dict[str, Any]:
        """JSON description to rebuild this module (its weights come with the state dict)."""
        return dict(self._spec)

    @property
    def dim(self) -> int:
        return int(self._spec["embed_dim"])

    def train(self, mode: bool = True) -> FrozenImageKey:
        """Stays in eval mode: a frozen key must give the same vector for the same image."""
        return super().train(False)

    def _tensor(self, arr: np.ndarray) -> torch.Tensor:
        """One image as the retrieval run saw it (the run's `build_transform(input_spec)`)."""
        return torch.from_numpy(self._transform(arr))

    @torch.no_grad()
    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        """L2-normalised embedding of a study: the mean of its views' embeddings (float32)."""
        if not images:
            raise MedmmError("a study needs at least one image to embed")
        dev = next(self.parameters()).device
        x = torch.stack([self._tensor(a) for a in images]).to(dev)
        g = F.normalize(self.proj(self.encoder(x).pooled), dim=-1).mean(0)
        return F.normalize(g, dim=0).float().cpu().numpy()


__all__ = ["FrozenImageKey"]
