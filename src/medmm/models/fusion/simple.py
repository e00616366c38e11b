"""Single-modality, early (concatenation) and late (per-modality heads) fusion."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from medmm.models.encoders.base import ImageFeatures, TextFeatures
from medmm.models.fusion.base import Fusion, FusionOutput, need, register_fusion, zero_loss


def mlp(in_dim: int, dim: int, dropout: float = 0.1) -> nn.Sequential:
    """Linear -> GELU -> dropout -> Linear -> LayerNorm: the projection every fusion uses."""
    return nn.Sequential(nn.Linear(in_dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim), nn.LayerNorm(dim))


@register_fusion("image_only", uses_image=True, uses_text=False)
class ImageOnly(Fusion):
    """Ignores text (the text encoder is not even run by MultimodalClassifier)."""

    def __init__(self, image_dim: int, text_dim: int, dim: int = 256, dropout: float = 0.1):
        super().__init__()
        self.proj, self.tok = mlp(image_dim, dim, dropout), nn.Linear(image_dim, dim)
        self.out_dim = dim

    def forward(self, image: ImageFeatures | None, text: TextFeatures | None = None) -> FusionOutput:
        image = need(image, "image", "image_only")
        pooled = self.proj(image.pooled)
        return FusionOutput(pooled, self.tok(image.tokens), zero_loss(pooled))


@register_fusion("text_only", uses_image=False, uses_text=True)
class TextOnly(Fusion):
    """Ignores images (the image encoder is not run)."""

    def __init__(self, image_dim: int, text_dim: int, dim: int = 256, dropout: float = 0.1):
        super().__init__()
        self.proj, self.tok = mlp(text_dim, dim, dropout), nn.Linear(text_dim, dim)
        self.out_dim = dim

    def forward(self, image: ImageFeatures | None, text: TextFeatures | None) -> FusionOutput:
        text = need(text, "text", "text_only")
        pooled = self.proj(text.pooled)
        return FusionOutput(pooled, self.tok(text.tokens), zero_loss(pooled), tokens_mask=text.mask)


@register_fusion("early")
class EarlyFusion(Fusion):
    """Concatenate pooled image and text features, then an MLP. A missing modality is zero-filled
    (the usual modality-dropout convention), so the block also runs on one modality."""

    def __init__(self, image_dim: int, text_dim: int, dim: int = 256, dropout: float = 0.1):
        super().__init__()
        self.image_dim, self.text_dim = image_dim, text_dim
        self.proj = mlp(image_dim + text_dim, dim, dropout)
        self.img_tok, self.txt_tok = nn.Linear(image_dim, dim), nn.Linear(text_dim, dim)
        self.out_dim = dim

    def forward(self, image: ImageFeatures | None, text: TextFeatures | None) -> FusionOutput:
        ref = need(image if image is not None else text, "image or text", "early").pooled
        b = ref.shape[0]
        img = image.pooled if image is not None else ref.new_zeros(b, self.image_dim)
        txt = text.pooled if text is not None else ref.new_zeros(b, self.text_dim)
        pooled = self.proj(torch.cat([img, txt], dim=-1))
        toks, masks = [], []
        if image is not None:
            toks.append(self.img_tok(image.tokens))
            masks.append(torch.ones(image.tokens.shape[:2], dtype=torch.bool, device=ref.device))
        if text is not None:
            toks.append(self.txt_tok(text.tokens))
            masks.append(text.mask)
        return FusionOutput(pooled, torch.cat(toks, 1), zero_loss(pooled), tokens_mask=torch.cat(masks, 1))


def late_fusion_logits(heads: Mapping[str, Callable[[torch.Tensor], torch.Tensor]], out: FusionOutput,
                       stacker: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Late fusion's class scores from a LateFusion output: each present modality's features
    through its own head (`heads[name]`), combined by the fusion's modality weights, or by
    `stacker` (a Linear over the concatenated per-modality logits) when both are present.
    Returns (logits (B, C), per-modality logits (B, M, C))."""
    names = out.extras["modalities"]
    per = torch.stack([heads[m](out.modality_features[:, i]) for i, m in enumerate(names)], dim=1)
    if stacker is not None and per.shape[1] == 2:
        return stacker(per.flatten(1)), per
    w = out.extras["modality_weights"].to(per)
    return (per * w.view(1, -1, 1)).sum(dim=1), per


@register_fusion("late")
class LateFusion(Fusion):
    """One branch per modality; MultimodalClassifier puts a head on each branch and averages the
    per-modality logits (`combine="mean"`), weights them with learned softmax weights
    (`combine="weighted"`) or stacks them: a learned linear layer over the concatenated
    per-modality logits, initialised to the mean (`combine="stack"`). Missing modalities are
    left out of the average; with "stack", the present modality's logits are used alone.
    `pooled` (for non-classifier users) is the mean of the available branch features."""

    late = True

    def __init__(self, image_dim: int, text_dim: int, dim: int = 256, dropout: float = 0.1, combine: str = "mean"):
        super().__init__()
        if combine not in ("mean", "weighted", "stack"):
            raise ValueError(f"combine must be 'mean', 'weighted' or 'stack', got {combine!r}")
        self.image_branch, self.text_branch = mlp(image_dim, dim, dropout), mlp(text_dim, dim, dropout)
        self.combine = combine
        self.modality_logit_weights = nn.Parameter(torch.zeros(2)) if combine == "weighted" else None
        self.out_dim = dim

    def modality_weights(self, present: list[bool]) -> torch.Tensor:
        """(M,) weights over the present modalities, summing to 1."""
        idx = [i for i, p in enumerate(present) if p]
        if self.modality_logit_weights is None:
            return torch.full((len(idx),), 1.0 / len(idx))
        return torch.softmax(self.modality_logit_weights[idx], dim=0)

    def forward(self, image: ImageFeatures | None, text: TextFeatures | None) -> FusionOutput:
        need(image if image is not None else text, "image or text", "late")
        feats = []
        if image is not None:
            feats.append(self.image_branch(image.pooled))
        if text is not None:
            feats.append(self.text_branch(text.pooled))
        stacked = torch.stack(feats, dim=1)
        names = [m for m, f in (("image", image), ("text", text)) if f is not None]
        w = self.modality_weights([image is not None, text is not None]).to(stacked)
        pooled = (stacked * w.view(1, -1, 1)).sum(dim=1)
        return FusionOutput(
            pooled, None, zero_loss(pooled), extras={"modality_weights": w, "modalities": names}, modality_features=stacked
        )
