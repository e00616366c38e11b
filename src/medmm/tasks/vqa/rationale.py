"""VQA answer rationale: which image grid cells and which input words the fusion attended to.

Read from the attention maps a fusion exposes in ``FusionOutput.extras`` (cross-attention:
text-to-image and image-to-text; gated: its question-guided spatial attention; BAN: its bilinear
maps over (region, word) pairs), through `medmm.interpret.attention`, so a record
can show a clinician the evidence behind an answer next to the retrieved facts.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from medmm.interpret import attention


def attention_evidence(extras: dict[str, torch.Tensor], input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       top_k: int, tokenizer: Any = None) -> list[dict[str, Any]]:
    """Per sample: the `top_k` image regions (row/col on a square grid, else token index) and
    input tokens by attention weight; a key is absent when the fusion gives no such map."""
    mask = attention_mask.bool()
    region = attention.cross_attention_regions(extras, attention_mask)
    token_w = attention.token_attention_to_text(extras, attention_mask)
    if token_w is not None:
        token_w = token_w.masked_fill(~mask, -1.0)  # padding never ranks among the words
    out = []
    for i in range(input_ids.shape[0]):
        rec: dict[str, Any] = {}
        if region is not None:
            n = region.shape[1]
            g = int(round(math.sqrt(n)))
            w, j = region[i].topk(min(top_k, n))
            rec["image_regions"] = [
                {"row": int(jj) // g, "col": int(jj) % g, "grid": [g, g], "weight": round(float(ww), 4)}
                for ww, jj in zip(w.tolist(), j.tolist(), strict=True)
            ] if g * g == n else [{"token": int(jj), "weight": round(float(ww), 4)} for ww, jj in zip(w.tolist(), j.tolist(), strict=True)]
        if token_w is not None:
            w, j = token_w[i].topk(min(top_k, int(mask[i].sum())))
            ids = input_ids[i].tolist()
            rec["text_tokens"] = [{"token": token_string(tokenizer, ids[jj]), "weight": round(float(ww), 4)}
                                  for ww, jj in zip(w.tolist(), j.tolist(), strict=True)]
        out.append(rec)
    return out


def token_string(tokenizer: Any, token_id: int) -> str:
    """A token id as text (Hugging Face or `tokenizers` tokenizer; the id itself without one)."""
    if tokenizer is None:
        return str(token_id)
    if hasattr(tokenizer, "convert_ids_to_tokens"):
        return str(tokenizer.convert_ids_to_tokens(token_id))
    if hasattr(tokenizer, "id_to_token"):
        return str(tokenizer.id_to_token(token_id))
    return str(token_id)
