"""CLIP-style zero-shot classification with a dual encoder: classes described by text prompts.

Each class has one or several prompts ("a chest x-ray showing pneumonia", "pneumonia on a chest
radiograph"). Every prompt is embedded and L2-normalised, the embeddings of a class are averaged and
re-normalised: CLIP's prompt ensembling (Radford et al. 2021, section 3.1.4). An image's score for a
class is the cosine of its embedding with the class embedding, times the model's logit scale; a
softmax over the classes gives probabilities. Knows no task: the retrieval and diagnosis tasks use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from medmm.errors import MedmmError

Prompts = Mapping[str, str | Sequence[str]]


def prompt_lists(prompts: Prompts) -> dict[str, list[str]]:
    """class -> its non-empty prompts (a single string is one prompt); an error for a class without any."""
    if not prompts:
        raise MedmmError("zero-shot classification needs at least one class with prompts")
    out = {}
    for name, value in prompts.items():
        texts = [value] if isinstance(value, str) else list(value)
        out[str(name)] = [t for t in texts if isinstance(t, str) and t.strip()]
        if not out[str(name)]:
            raise MedmmError(f"class {name!r} has no non-empty prompt")
    return out


@torch.no_grad()
def ensemble_class_embeddings(encode_texts: Callable[[list[str]], torch.Tensor], prompts: Prompts) -> tuple[list[str], torch.Tensor]:
    """Class names and their (C, E) L2-normalised embeddings: the mean of each class's prompt
    embeddings, re-normalised. `encode_texts` maps a list of strings to their (N, E) embeddings,
    already L2-normalised (as every medmm dual encoder's text side returns them)."""
    lists = prompt_lists(prompts)
    classes = list(lists)
    flat = [t for name in classes for t in lists[name]]
    owner = torch.tensor([ci for ci, name in enumerate(classes) for _ in lists[name]])
    emb = encode_texts(flat)
    owner = owner.to(emb.device)
    means = torch.stack([emb[owner == ci].mean(0) for ci in range(len(classes))])
    return classes, F.normalize(means, dim=-1)
