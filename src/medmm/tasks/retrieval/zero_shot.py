"""Zero-shot classification with a trained dual encoder: classes described by text prompts.

Each class gets one or several prompts ("CT of the head", "axial CT image of the brain");
every prompt is embedded, the L2-normalised prompt embeddings of a class are averaged and
re-normalised (CLIP's prompt ensembling), and an image is assigned the class whose embedding
is most similar. Probabilities are a softmax of the similarities at the model's learned
temperature.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medmm.data.schema import Sample
from medmm.models.zero_shot import Prompts, ensemble_class_embeddings
from medmm.tasks.retrieval.task import RetrievalTask


@dataclass
class ZeroShotResult:
    """classes (C), probabilities (N, C) rows summing to 1, predictions (N) class names."""

    classes: list[str]
    probabilities: np.ndarray
    predictions: list[str]


@torch.no_grad()
def class_embeddings(task: RetrievalTask, prompts: Prompts) -> tuple[list[str], torch.Tensor]:
    """Class names and their (C, E) L2-normalised embeddings, averaged over each class's prompts
    (`medmm.models.zero_shot.ensemble_class_embeddings`)."""
    was_training = task.training
    task.eval()
    try:
        return ensemble_class_embeddings(task.encode_texts, prompts)  # encode_texts: already L2-normalised
    finally:
        task.train(was_training)


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
