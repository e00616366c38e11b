"""Sentence-to-region maps of a generated report (`ReportGenerationTask.explainable`): for each
sentence, the decoder's cross-attention from that sentence's tokens to the image tokens
(averaged over heads, layers and tokens).
"""

from __future__ import annotations

from typing import Any

import torch

from medmm.interpret.word_region import CrossAttentionRecorder, sentence_spans, square_grid


@torch.no_grad()
def report_sentence_regions(task: Any, batch: dict[str, Any]) -> list[dict[str, Any]]:
    """Per study: the generated report and, per sentence, a (h, w) map of the decoder's
    cross-attention to the first view's image tokens (report_generation task)."""
    from medmm.models.decoders import BOS

    ids_list, _ = task.generate_ids(batch)
    memory, pad, _ = task.encode(batch)
    n_img = task.image_encoder(batch["images"][:1]).tokens.shape[1]
    g = square_grid(n_img)
    out = []
    for i, ids in enumerate(ids_list):
        words = task.tokenizer.decode_tokens(ids)
        seq = torch.tensor([[BOS] + list(ids)[: len(words)]], device=memory.device)
        rec = CrossAttentionRecorder(task.decoder.decoder)
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
