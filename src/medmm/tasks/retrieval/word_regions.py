"""Word-to-region maps of a retrieval dual encoder (`RetrievalTask.explainable`).

Cosine similarity of every word token to every image region in the shared embedding space. With
`local_loss_weight > 0` the model has GLoRIA-style local projections (`image_local`,
`text_local`) trained for exactly this; without them the global projection heads are applied to
each token (an approximation: they were trained on pooled features only, so the map says where
token and region features agree, nothing more).
"""

from __future__ import annotations

from typing import Any

import torch

from medmm.errors import MedmmError
from medmm.interpret.word_region import square_grid, word_region_similarity


@torch.no_grad()
def retrieval_word_regions(task: Any, batch: dict[str, Any]) -> list[dict[str, Any]]:
    """Per sample: tokens and their similarity maps (L, h, w) to the image regions (retrieval task)."""
    model = task.model
    if not hasattr(model, "image_proj") or not hasattr(model, "text_encoder"):
        raise MedmmError("word-region maps need a medmm dual encoder (token features); a CLIP model exposes none")
    img = model.image_encoder(batch["images"])
    txt = model.text_encoder(batch["input_ids"], batch["attention_mask"])
    if model.image_local is not None and model.text_local is not None:
        regions, words, how = model.image_local(img.tokens), model.text_local(txt.tokens), "local projections (trained)"
    else:
        regions, words, how = model.image_proj(img.tokens), model.text_proj(txt.tokens), "global projection heads applied per token"
    g = square_grid(regions.shape[1])
    out = []
    for i in range(len(batch["ids"])):
        n = int(batch["attention_mask"][i].sum())
        sim = word_region_similarity(words[i, :n], regions[i]).reshape(n, *g)
        out.append({"input_ids": batch["input_ids"][i, :n].tolist(), "maps": sim, "method": how})
    return out
