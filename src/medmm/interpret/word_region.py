"""Word-to-region maps.

* Retrieval (dual encoder): cosine similarity of every word token to every image region in
  the shared embedding space. With `local_loss_weight > 0` the model has GLoRIA-style local
  projections (`image_local`, `text_local`) trained for exactly this; without them the global
  projection heads are applied to each token (an approximation: they were trained on pooled
  features only, so the map says where token and region features agree, nothing more).
* Report generation: for each sentence of the generated report, the decoder's cross-attention
  from that sentence's tokens to the image tokens (averaged over heads, layers and tokens).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
import torch.nn.functional as F

from medmm.errors import MedmmError


def word_region_similarity(words: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Cosine similarity (L, N) of word embeddings (L, E) and region embeddings (N, E)."""
    return F.normalize(words.float(), dim=-1) @ F.normalize(regions.float(), dim=-1).T


def _grid(n: int) -> tuple[int, int]:
    g = int(round(math.sqrt(n)))
    if g * g != n:
        raise MedmmError(f"{n} image tokens do not form a square grid")
    return g, g


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
    g = _grid(regions.shape[1])
    out = []
    for i in range(len(batch["ids"])):
        n = int(batch["attention_mask"][i].sum())
        sim = word_region_similarity(words[i, :n], regions[i]).reshape(n, *g)
        out.append({"input_ids": batch["input_ids"][i, :n].tolist(), "maps": sim, "method": how})
    return out


class _CrossAttentionRecorder:
    """Makes every decoder layer's cross-attention return its weights and records them."""

    def __init__(self, decoder: torch.nn.Module):
        self.weights: list[torch.Tensor] = []
        self.handles = []
        for layer in decoder.layers:
            mha = layer.multihead_attn
            self.handles.append(mha.register_forward_pre_hook(self._pre, with_kwargs=True))
            self.handles.append(mha.register_forward_hook(self._post))

    @staticmethod
    def _pre(module, args, kwargs):
        kwargs = dict(kwargs)
        kwargs["need_weights"] = True
        kwargs["average_attn_weights"] = True
        return args, kwargs

    def _post(self, module, args, output):
        self.weights.append(output[1].detach())

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def sentence_spans(words: list[str]) -> list[tuple[int, int]]:
    """(start, end) word index spans of sentences ending at '.', '!' or '?' (the last may be open)."""
    spans, start = [], 0
    for k, w in enumerate(words):
        if re.fullmatch(r"[.!?]", w):
            spans.append((start, k + 1))
            start = k + 1
    if start < len(words):
        spans.append((start, len(words)))
    return spans


@torch.no_grad()
def report_sentence_regions(task: Any, batch: dict[str, Any]) -> list[dict[str, Any]]:
    """Per study: the generated report and, per sentence, a (h, w) map of the decoder's
    cross-attention to the first view's image tokens (report_generation task)."""
    from medmm.models.decoders import BOS

    ids_list, _ = task.generate_ids(batch)
    memory, pad, _ = task.encode(batch)
    n_img = task.image_encoder(batch["images"][:1]).tokens.shape[1]
    g = _grid(n_img)
    out = []
    for i, ids in enumerate(ids_list):
        words = task.tokenizer.decode_tokens(ids)
        seq = torch.tensor([[BOS] + list(ids)[: len(words)]], device=memory.device)
        rec = _CrossAttentionRecorder(task.decoder.decoder)
        try:
            task.decoder(seq, memory[i : i + 1], pad[i : i + 1])
        finally:
            rec.close()
        att = torch.stack(rec.weights).mean(0)[0]  # (T, M): query t generates word t
        sentences = []
        for a, b in sentence_spans(words):
            m = att[a:b, :n_img].mean(0)
            m = m / m.sum().clamp_min(1e-12)
            sentences.append({"text": " ".join(words[a:b]), "map": m.reshape(*g)})
        out.append({"report": " ".join(words), "sentences": sentences})
    return out
