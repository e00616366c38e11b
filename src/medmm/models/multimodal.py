"""MultimodalClassifier: image encoder + text encoder + fusion + head, used by diagnosis and
VQA-as-classification. Encoders a fusion does not use are never run (nor required)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from medmm.errors import MedmmError
from medmm.models.encoders.base import ImageEncoder, ImageFeatures, TextEncoder, TextFeatures
from medmm.models.fusion.base import Fusion
from medmm.models.fusion.simple import late_fusion_logits
from medmm.models.heads.classification import ClassificationHead


@dataclass
class ClassifierOutput:
    """logits (B, C); aux_loss scalar (add it to the task loss); extras from the fusion (plus
    "modality_logits" (B, M, C) for late fusion); pooled fused feature (B, dim); the encoder
    features (None for an encoder that was not run), for explanations."""

    logits: torch.Tensor
    aux_loss: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)
    pooled: torch.Tensor | None = None
    image: ImageFeatures | None = None
    text: TextFeatures | None = None


class MultimodalClassifier(nn.Module):
    """`forward(images, input_ids, attention_mask) -> ClassifierOutput`.

    With a late fusion there is one head per modality and the logits are the (weighted) average
    of the per-modality logits. Pass None for an encoder the fusion does not use. A caller that
    holds a frozen image encoder's features already (`medmm.models.frozen_features`) passes them
    as `image_features`; the image encoder then does not run."""

    def __init__(
        self,
        image_encoder: ImageEncoder | None,
        text_encoder: TextEncoder | None,
        fusion: Fusion,
        num_outputs: int,
        dropout: float = 0.1,
        hidden: int | None = None,
    ):
        super().__init__()
        if fusion.uses_image and image_encoder is None:
            raise MedmmError(f"fusion {type(fusion).__name__} uses images but no image encoder was given")
        if fusion.uses_text and text_encoder is None:
            raise MedmmError(f"fusion {type(fusion).__name__} uses text but no text encoder was given")
        self.image_encoder = image_encoder if fusion.uses_image else None
        self.text_encoder = text_encoder if fusion.uses_text else None
        self.fusion = fusion
        self.num_outputs = num_outputs
        if fusion.late:
            self.heads = nn.ModuleDict(
                {m: ClassificationHead(fusion.out_dim, num_outputs, hidden, dropout) for m in ("image", "text")}
            )
            if getattr(fusion, "combine", "mean") == "stack":
                # Stacking meta-classifier over [image logits, text logits], starting as their mean.
                self.stacker = nn.Linear(2 * num_outputs, num_outputs)
                with torch.no_grad():
                    eye = torch.eye(num_outputs) * 0.5
                    self.stacker.weight.copy_(torch.cat([eye, eye], dim=1))
                    self.stacker.bias.zero_()
        else:
            self.head = ClassificationHead(fusion.out_dim, num_outputs, hidden, dropout)

    def encode(
        self, images: torch.Tensor | None = None, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
        image_features: ImageFeatures | None = None,
    ) -> tuple[ImageFeatures | None, TextFeatures | None]:
        """Run the encoders the fusion needs (and only those) on the inputs given; `image_features`
        given stand for the image encoder's output on `images`."""
        img = None
        if self.image_encoder is not None:
            img = image_features if image_features is not None else self.image_encoder(images) if images is not None else None
        txt = None
        if self.text_encoder is not None and input_ids is not None:
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            txt = self.text_encoder(input_ids, attention_mask)
        return img, txt

    def forward(
        self, images: torch.Tensor | None = None, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
        image_features: ImageFeatures | None = None,
    ) -> ClassifierOutput:
        img, txt = self.encode(images, input_ids, attention_mask, image_features)
        out = self.fusion(img, txt)
        extras = dict(out.extras)
        if self.fusion.late:
            logits, extras["modality_logits"] = late_fusion_logits(self.heads, out, getattr(self, "stacker", None))
        else:
            logits = self.head(out.pooled)
        return ClassifierOutput(logits=logits, aux_loss=out.aux_loss, extras=extras, pooled=out.pooled, image=img, text=txt)


def build_classifier(
    image: str | None,
    text: str | None,
    fusion: str,
    num_outputs: int,
    dim: int = 256,
    image_kw: dict[str, Any] | None = None,
    text_kw: dict[str, Any] | None = None,
    fusion_kw: dict[str, Any] | None = None,
    **head_kw: Any,
) -> MultimodalClassifier:
    """Build a MultimodalClassifier from names, e.g. ("resnet18", "minilm", "cross_attention", 14).

    The encoder a fusion does not use is not built (so `image_only` never loads MiniLM)."""
    from medmm.models.encoders import create_image_encoder, create_text_encoder
    from medmm.models.fusion import create_fusion, fusion_info

    info = fusion_info(fusion, spatial=False)  # unknown name -> the error listing the known ones
    uses_image, uses_text = info.uses_image, info.uses_text
    img_enc = create_image_encoder(image, **(image_kw or {})) if uses_image and image else None
    txt_enc = create_text_encoder(text, **(text_kw or {})) if uses_text and text else None
    fus = create_fusion(
        fusion, img_enc.out_dim if img_enc else 1, txt_enc.out_dim if txt_enc else 1, dim, **(fusion_kw or {})
    )
    return MultimodalClassifier(img_enc, txt_enc, fus, num_outputs, **head_kw)
