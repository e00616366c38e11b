"""Zero-shot classification with a trained dual encoder: classes described by text prompts.

Each class gets one or several prompts ("CT of the head", "axial CT image of the brain");
every prompt is embedded, the L2-normalised prompt embeddings of a class are averaged and
re-normalised (CLIP's prompt ensembling), and an image is assigned the class whose embedding
is most similar. Probabilities are a softmax of the similarities at the model's learned
temperature.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from medmm.data.schema import Sample
from medmm.errors import MedmmError
from medmm.tasks.retrieval.task import RetrievalTask

Prompts = Mapping[str, str | Sequence[str]]


@dataclass
class ZeroShotResult:
    """classes (C), probabilities (N, C) rows summing to 1, predictions (N) class names."""

    classes: list[str]
    probabilities: np.ndarray
    predictions: list[str]


@torch.no_grad()
def class_embeddings(task: RetrievalTask, prompts: Prompts) -> tuple[list[str], torch.Tensor]:
    """Class names and their (C, E) L2-normalised embeddings, averaged over each class's prompts."""
    if not prompts:
        raise MedmmError("zero-shot classification needs at least one class with prompts")
    classes = list(prompts)
    flat, owner = [], []
    for ci, name in enumerate(classes):
        texts = [prompts[name]] if isinstance(prompts[name], str) else list(prompts[name])
        texts = [t for t in texts if t and t.strip()]
        if not texts:
            raise MedmmError(f"class {name!r} has no non-empty prompt")
        flat.extend(texts)
        owner.extend([ci] * len(texts))
    was_training = task.training
    task.eval()
    emb = task.encode_texts(flat)  # already L2-normalised
    task.train(was_training)
    owner_t = torch.tensor(owner, device=emb.device)
    means = torch.stack([emb[owner_t == ci].mean(0) for ci in range(len(classes))])
    return classes, F.normalize(means, dim=-1)


@torch.no_grad()
def zero_shot_classify(task: RetrievalTask, images: torch.Tensor | Sequence[Sample], prompts: Prompts, batch_size: int = 32) -> ZeroShotResult:
    """Classify images ((N, C, H, W) preprocessed tensors, or Samples read with the task's
    preprocessing) into the classes of `prompts` (class name -> prompt or list of prompts)."""
    classes, cls_emb = class_embeddings(task, prompts)
    was_training = task.training
    task.eval()
    device = cls_emb.device
    img_emb = []
    n = len(images)
    for i in range(0, n, batch_size):
        chunk = images[i : i + batch_size]
        batch = chunk if isinstance(chunk, torch.Tensor) else torch.stack([task.image_tensor(s) for s in chunk])
        img_emb.append(task.encode_images(batch.to(device)))
    task.train(was_training)
    if not img_emb:
        return ZeroShotResult(classes, np.zeros((0, len(classes)), np.float32), [])
    sims = torch.cat(img_emb) @ cls_emb.t()
    probs = (task.model.temperature_scale() * sims).softmax(dim=-1).float().cpu().numpy()
    return ZeroShotResult(classes, probs, [classes[j] for j in probs.argmax(axis=1)])
