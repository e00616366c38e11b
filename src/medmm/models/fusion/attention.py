"""Attention-based fusion: bidirectional cross-attention, FiLM and text-gated image features."""

from __future__ import annotations

import torch
from torch import nn

from medmm.models.encoders.base import ImageFeatures, TextFeatures
from medmm.models.fusion.base import Fusion, FusionOutput, need, register_fusion, zero_loss
from medmm.models.fusion.simple import mlp


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over tokens where mask is true (all tokens when mask is None)."""
    if mask is None:
        return tokens.mean(dim=1)
    m = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * m).sum(1) / m.sum(1).clamp_min(1.0)


class CrossAttentionLayer(nn.Module):
    """Text tokens attend to image tokens and image tokens attend to text tokens (pre-norm),
    each followed by a feed-forward block. Returns the head-averaged attention probabilities."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm_t, self.norm_i = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.t2i = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.i2t = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ff_t = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))
        self.ff_i = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))

    def forward(self, img: torch.Tensor, txt: torch.Tensor, txt_mask: torch.Tensor):
        ni, nt = self.norm_i(img), self.norm_t(txt)
        t_upd, t2i_att = self.t2i(nt, ni, ni, need_weights=True)
        # A text of only padding would give NaN softmax rows; every text has >= 1 real token.
        i_upd, i2t_att = self.i2t(ni, nt, nt, key_padding_mask=~txt_mask, need_weights=True)
        txt = txt + t_upd
        img = img + i_upd
        return img + self.ff_i(img), txt + self.ff_t(txt), t2i_att, i2t_att


@register_fusion("cross_attention")
class CrossAttentionFusion(Fusion):
    """`layers` bidirectional cross-attention layers over projected image and text tokens.

    pooled = MLP([mean image tokens, masked-mean text tokens]); tokens = [image; text].
    extras: "text_to_image_attention" (B, L, N) and "image_to_text_attention" (B, N, L) of the
    last layer, head-averaged (for explanation maps of which region each word looked at)."""

    def __init__(self, image_dim: int, text_dim: int, dim: int = 256, heads: int = 4, layers: int = 1, dropout: float = 0.1):
        super().__init__()
        self.img_proj, self.txt_proj = nn.Linear(image_dim, dim), nn.Linear(text_dim, dim)
        self.layers = nn.ModuleList([CrossAttentionLayer(dim, heads, dropout) for _ in range(layers)])
        self.out = mlp(2 * dim, dim, dropout)
        self.out_dim = dim

    def forward(self, image: ImageFeatures | None, text: TextFeatures | None) -> FusionOutput:
        image, text = need(image, "image", "cross_attention"), need(text, "text", "cross_attention")
        img, txt, mask = self.img_proj(image.tokens), self.txt_proj(text.tokens), text.mask.bool()
        for layer in self.layers:
            img, txt, t2i, i2t = layer(img, txt, mask)
        pooled = self.out(torch.cat([img.mean(1), masked_mean(txt, mask)], dim=-1))
        img_mask = torch.ones(img.shape[:2], dtype=torch.bool, device=img.device)
        return FusionOutput(
            pooled,
            torch.cat([img, txt], dim=1),
            zero_loss(pooled),
            extras={"text_to_image_attention": t2i, "image_to_text_attention": i2t},
            tokens_mask=torch.cat([img_mask, mask], dim=1),
        )


@register_fusion("film")
class FiLMFusion(Fusion):
    """Feature-wise linear modulation (Perez et al. 2018): the text predicts a per-channel scale
    and shift for every image token. gamma starts at 1 and beta at 0 (identity) for stable training."""

    def __init__(self, image_dim: int, text_dim: int, dim: int = 256, dropout: float = 0.1):
        super().__init__()
        self.img_proj = nn.Linear(image_dim, dim)
        self.film = nn.Linear(text_dim, 2 * dim)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.out = mlp(dim + text_dim, dim, dropout)
        self.out_dim = dim

    def forward(self, image: ImageFeatures | None, text: TextFeatures | None) -> FusionOutput:
        image, text = need(image, "image", "film"), need(text, "text", "film")
        delta_gamma, beta = self.film(text.pooled).chunk(2, dim=-1)
        gamma = 1.0 + delta_gamma
        tokens = torch.relu(gamma.unsqueeze(1) * self.img_proj(image.tokens) + beta.unsqueeze(1))
        pooled = self.out(torch.cat([tokens.mean(1), text.pooled], dim=-1))
        return FusionOutput(pooled, tokens, zero_loss(pooled), extras={"film_gamma": gamma, "film_beta": beta})


@register_fusion("gated")
class GatedFusion(Fusion):
    """Text-conditioned gating of image features: a sigmoid channel gate from the text multiplies
    every image token, then a text query attention-pools the gated tokens (spatial gate), and a
    gated multimodal unit (Arevalo et al. 2017) mixes the image summary with the text.
    extras: "channel_gate" (B, dim), "spatial_attention" (B, N), "modality_gate" (B, dim)."""

    def __init__(self, image_dim: int, text_dim: int, dim: int = 256, dropout: float = 0.1):
        super().__init__()
        self.img_proj, self.txt_proj = nn.Linear(image_dim, dim), nn.Linear(text_dim, dim)
        self.channel_gate = nn.Linear(text_dim, dim)
        self.query = nn.Linear(text_dim, dim)
        self.mix_gate = nn.Linear(2 * dim, dim)
        self.out = mlp(dim, dim, dropout)
        self.scale = dim**-0.5
        self.out_dim = dim

    def forward(self, image: ImageFeatures | None, text: TextFeatures | None) -> FusionOutput:
        image, text = need(image, "image", "gated"), need(text, "text", "gated")
        g = torch.sigmoid(self.channel_gate(text.pooled))
        tokens = self.img_proj(image.tokens) * g.unsqueeze(1)
        attn = torch.softmax(torch.einsum("bnd,bd->bn", tokens, self.query(text.pooled)) * self.scale, dim=-1)
        img_sum = torch.einsum("bn,bnd->bd", attn, tokens)
        txt = self.txt_proj(text.pooled)
        z = torch.sigmoid(self.mix_gate(torch.cat([img_sum, txt], dim=-1)))
        pooled = self.out(z * torch.tanh(img_sum) + (1 - z) * torch.tanh(txt))
        return FusionOutput(
            pooled, tokens, zero_loss(pooled), extras={"channel_gate": g, "spatial_attention": attn, "modality_gate": z}
        )
