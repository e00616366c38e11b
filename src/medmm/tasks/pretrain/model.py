"""The pretraining model: an image encoder with one linear head per label, a caption projection
and, for the denoising loss, a decoder (`Pretrainer`); and the loss (`pretrain_loss`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Pretrainer(nn.Module):
    """The encoder plus one linear head per label, a caption projection and, for the denoising
    loss, a decoder from the last feature map back to the input image."""

    def __init__(self, encoder: nn.Module, n_classes: dict[str, int], text_dim: int, reconstruct: bool = False):
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict({k: nn.Linear(encoder.out_dim, n) for k, n in n_classes.items()})
        self.caption = nn.Linear(encoder.out_dim, text_dim)
        self.decoder = _decoder(encoder.out_dim) if reconstruct else None

    def forward(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor | None]:
        """(label logits, normalised caption embedding, reconstruction of x or None)."""
        feats = self.encoder(x)
        pooled = feats.pooled
        recon = None
        if self.decoder is not None:
            b, n, d = feats.tokens.shape
            side = round(n**0.5)
            grid = feats.tokens.transpose(1, 2).reshape(b, d, side, side)
            recon = F.interpolate(self.decoder(grid), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {k: h(pooled) for k, h in self.heads.items()}, F.normalize(self.caption(pooled), dim=-1), recon


def _decoder(in_dim: int, stages: int = 4) -> nn.Sequential:
    """Transposed convolutions, each doubling the side and halving the width, then a 3x3 to one
    channel (a 6x6 map of a 96 px input comes back at 96 px; other sizes are resized to fit)."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(stages):
        nxt = max(width // 2, 8)
        layers += [nn.ConvTranspose2d(width, nxt, 4, stride=2, padding=1), nn.BatchNorm2d(nxt), nn.ReLU(inplace=True)]
        width = nxt
    layers.append(nn.Conv2d(width, 1, 3, padding=1))
    return nn.Sequential(*layers)


def pretrain_loss(
    logits: dict[str, torch.Tensor], emb: torch.Tensor, labels: dict[str, torch.Tensor], captions: torch.Tensor,
    has_caption: torch.Tensor, caption_weight: float, temperature: float = 0.07,
) -> torch.Tensor | None:
    """Sum of per-head cross-entropies (unknown labels = -100 ignored) + caption_weight x symmetric
    InfoNCE over the batch's captioned images; None when the batch has nothing to learn from."""
    terms = [F.cross_entropy(logits[k], labels[k], ignore_index=-100) for k in logits if bool((labels[k] >= 0).any())]
    if caption_weight > 0 and int(has_caption.sum()) > 1:
        sim = emb[has_caption] @ captions[has_caption].T / temperature
        tgt = torch.arange(sim.shape[0], device=sim.device)
        terms.append(caption_weight * 0.5 * (F.cross_entropy(sim, tgt) + F.cross_entropy(sim.T, tgt)))
    return torch.stack(terms).sum() if terms else None
