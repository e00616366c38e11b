"""Encoder features of a VQA batch: `VQAFeaturesMixin`, the feature methods of `VQATask`.

`forward_features` runs the encoders and the fusion and builds the decoder memory. A frozen
encoder in eval mode maps an input to the same features every epoch, so its features are
computed once per distinct text (``text.freeze``, `_frozen_text_features`) or image file
(``image.freeze``, `_frozen_image_features`) and cached: an epoch then costs only the fusion and
the heads. Image features go through `medmm.models.frozen_features` (shared with report
generation and diagnosis): in memory, or, where ``$MEDMM_FEATURE_CACHE`` names a folder, in the
bounded on-disk cache shared by loader workers and runs (`medmm.models.feature_cache`, keyed by
the encoder's weights and input spec and the image file's checksum), so memory stays flat.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from medmm.models.encoders.base import ImageFeatures, TextFeatures

if TYPE_CHECKING:
    from torch import nn

    from medmm.models.frozen_features import FrozenImageFeatures
    from medmm.tasks.vqa.config import VQAConfig


class VQAFeaturesMixin:
    """Feature methods of `VQATask` (see the module docstring); they use the task's config,
    encoders, fusion and its two feature caches."""

    config: VQAConfig
    image_encoder: nn.Module
    text_encoder: nn.Module
    fusion: nn.Module
    _text_cache: dict[str, tuple[torch.Tensor, torch.Tensor]]
    frozen_image_features: FrozenImageFeatures

    def forward_features(self, batch: dict[str, Any]):
        """Fused features of a batch (the FusionOutput) and the decoder memory + its padding mask."""
        if self.config.image.freeze and "image_paths" in batch:
            img = self._frozen_image_features(batch)
        else:
            img = self.image_encoder(batch["images"])
        if self.config.text.freeze and not self.config.text.lora and "texts" in batch:
            txt = self._frozen_text_features(batch)
        else:
            txt = self.text_encoder(batch["input_ids"], batch["attention_mask"])
        fused = self.fusion(img, txt)
        memory = fused.pooled[:, None]
        pad = torch.zeros(memory.shape[:2], dtype=torch.bool, device=memory.device)
        if fused.tokens is not None and fused.tokens.shape[-1] == fused.pooled.shape[-1]:
            memory = torch.cat([memory, fused.tokens], dim=1)
            tok_pad = ~fused.tokens_mask if fused.tokens_mask is not None else torch.zeros(fused.tokens.shape[:2], dtype=torch.bool, device=memory.device)
            pad = torch.cat([pad, tok_pad], dim=1)
        return fused, memory, pad

    @torch.no_grad()
    def _frozen_text_features(self, batch: dict[str, Any]) -> TextFeatures:
        """Features of a frozen text encoder, computed once per distinct text and cached.

        A frozen encoder in eval mode maps a text to the same features every epoch, so
        recomputing them is wasted work (the text tower is most of a step's cost on CPU).
        """
        ids, mask = batch["input_ids"], batch["attention_mask"]
        todo = [i for i, t in enumerate(batch["texts"]) if t not in self._text_cache]
        if todo:
            feats = self.text_encoder(ids[todo], mask[todo])
            for j, i in enumerate(todo):
                n = int(mask[i].sum())
                self._text_cache[batch["texts"][i]] = (feats.tokens[j, :n].detach().cpu(), feats.pooled[j].detach().cpu())
        rows = [self._text_cache[t] for t in batch["texts"]]
        dim = rows[0][0].shape[-1]
        tokens = torch.zeros(len(rows), ids.shape[1], dim)
        for i, (tok, _) in enumerate(rows):
            tokens[i, : len(tok)] = tok
        pooled = torch.stack([p for _, p in rows])
        dev = ids.device
        return TextFeatures(pooled=pooled.to(dev), tokens=tokens.to(dev), mask=mask.bool())

    def reset_feature_caches(self) -> None:
        """The image encoder's weights may have changed: its cached features are forgotten if they did."""
        self.frozen_image_features.reset()

    def _frozen_image_features(self, batch: dict[str, Any]) -> ImageFeatures:
        """Features of a frozen image encoder, computed once per image file and cached
        (`medmm.models.frozen_features`); a batch that training augmented is computed afresh."""
        return self.frozen_image_features(self.image_encoder, batch["images"], batch["image_paths"],
                                          {"input_spec": self.input_spec.to_dict()}, augmented=bool(batch.get("augmented")))
