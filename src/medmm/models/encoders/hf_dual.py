"""A pretrained CLIP-family dual encoder from transformers (CLIPModel, SiglipModel) as both towers.

The checkpoint supplies its image and text towers, its own projection heads and its logit scale;
preprocessing (resize rule, filter, centre crop, mean, std) comes from its preprocessor_config.json.
SigLIP's logit_bias is kept in the model but unused: medmm trains every dual encoder with the
symmetric InfoNCE loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medmm.errors import BadInputError, MedmmError
from medmm.models.encoders.hf_image import processor_spec
from medmm.models.encoders.hf_loading import load_hf, source_record


class HFClipDualEncoder(nn.Module):
    """`encode_image` / `encode_text` -> L2-normalised embeddings in the checkpoint's joint space."""

    def __init__(self, name_or_dir: str, learn_temperature: bool = True):
        super().__init__()
        try:
            self.model = load_hf("AutoModel", name_or_dir)
            self.tokenizer = load_hf("AutoTokenizer", name_or_dir)
            if not hasattr(self.model, "get_image_features") or not hasattr(self.model, "logit_scale"):
                raise MedmmError(f"{type(self.model).__name__} is not a CLIP-family dual encoder (CLIPModel, SiglipModel)")
            vc = self.model.config.vision_config
            self.in_channels = int(getattr(vc, "num_channels", 3))
            # the image tower's declared input: medmm's transform is built from it (no HF processor call)
            self.input_spec = processor_spec(name_or_dir, self.in_channels)
        except MedmmError as exc:
            raise BadInputError(name_or_dir, f"cannot load a CLIP-family model: {exc}") from exc
        self.model.logit_scale.requires_grad_(learn_temperature)
        self.image_size = self.input_spec.size
        self.max_length = int(self.model.config.text_config.max_position_embeddings)
        self.image_local = self.text_local = None
        # SigLIP has no projection_dim: its heads keep the vision hidden size
        self.embed_dim = int(getattr(self.model.config, "projection_dim", None) or vc.hidden_size)
        self.hf_source = source_record(name_or_dir)

    @property
    def logit_scale(self) -> nn.Parameter:
        return self.model.logit_scale

    def temperature_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp().clamp(max=100.0)

    @staticmethod
    def _tensor(out: Any) -> torch.Tensor:
        # transformers 5 may return a model output object instead of a bare tensor
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def encode_image(self, images: torch.Tensor) -> tuple[torch.Tensor, None]:
        if images.shape[1] == 1 and self.in_channels == 3:
            images = images.expand(-1, 3, -1, -1)
        return F.normalize(self._tensor(self.model.get_image_features(pixel_values=images)), dim=-1), None

    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, texts: Sequence[str] | None = None
    ) -> tuple[torch.Tensor, None, torch.Tensor]:
        out = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        return F.normalize(self._tensor(out), dim=-1), None, attention_mask.bool()
