"""Bilinear attention networks (BAN; Kim, Jun and Zhang, NeurIPS 2018): the fusion of MEVF + BAN,
the published VQA-RAD baseline (Nguyen et al., MICCAI 2019).

Every (image token, question token) pair gets an attention logit from a low-rank bilinear form,
one map per glimpse, softmax-normalised over all pairs; each glimpse then pools the low-rank
bilinear products of the pairs with its map into one joint vector, which is added back to every
question token (BAN's residual learning of attention). The pooled output is the masked sum of
the updated question tokens, as BAN's classifier reads it, through the projection every fusion
uses. Written from the paper's equations; as in the authors' release, the attention maps use k = 3
low-rank pooling and each glimpse's joint vector k = 1; ReLU projections, dropout on the image side.
"""

from __future__ import annotations

import torch
from torch import nn

from medmm.models.encoders.base import ImageFeatures, TextFeatures
from medmm.models.fusion.base import Fusion, FusionOutput, need, register_fusion, zero_loss
from medmm.models.fusion.simple import mlp


class LowRankBilinear(nn.Module):
    """ReLU projections of image tokens (B, K, dv) and question tokens (B, L, dq) to width
    `rank` * k: the two factors of a low-rank bilinear form."""

    def __init__(self, image_dim: int, text_dim: int, rank: int, k: int, dropout: float):
        super().__init__()
        self.v = nn.Sequential(nn.Linear(image_dim, rank * k), nn.ReLU(), nn.Dropout(dropout))
        self.q = nn.Sequential(nn.Linear(text_dim, rank * k), nn.ReLU())
        self.rank, self.k = rank, k

    def forward(self, v: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.v(v), self.q(q)

    def pool(self, v: torch.Tensor, q: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        """The joint vector (B, rank) of one glimpse: sum over pairs of att[k, l] * (v_k o q_l),
        then sum-pooling of each group of k features (BAN's low-rank pooling)."""
        fv, fq = self(v, q)
        joint = torch.einsum("bkd,bkl,bld->bd", fv, att, fq)
        return joint.view(joint.shape[0], self.rank, self.k).sum(-1)


@register_fusion("ban")
class BilinearAttentionFusion(Fusion):
    """BAN: `glimpses` bilinear attention maps over (image token, question token) pairs, each
    pooled into a joint vector added to every question token (residual learning of attention);
    `k`: the low-rank pooling width of the attention maps.

    pooled = MLP(masked sum of the updated question tokens); tokens = the updated question tokens
    (mask: the text's). extras: "bilinear_attention" (B, glimpses, N image tokens, L text tokens),
    each glimpse's map summing to 1 over the real pairs."""

    def __init__(self, image_dim: int, text_dim: int, dim: int = 256, glimpses: int = 2, k: int = 3, dropout: float = 0.2):
        super().__init__()
        if glimpses < 1 or k < 1:
            raise ValueError(f"ban fusion: glimpses and k must be >= 1, got {glimpses}, {k}")
        self.txt_proj = nn.Linear(text_dim, dim)
        self.att = LowRankBilinear(image_dim, dim, dim, k, dropout)
        # no bias: a constant per glimpse cancels in the softmax over all pairs
        self.att_weight = nn.Parameter(torch.randn(glimpses, dim * k) * (dim * k) ** -0.5)
        self.pairs = nn.ModuleList([LowRankBilinear(image_dim, dim, dim, 1, dropout) for _ in range(glimpses)])
        self.residual = nn.ModuleList([nn.Linear(dim, dim) for _ in range(glimpses)])
        self.out = mlp(dim, dim, dropout)
        self.out_dim = dim

    def forward(self, image: ImageFeatures | None, text: TextFeatures | None) -> FusionOutput:
        image, text = need(image, "image", "ban"), need(text, "text", "ban")
        v, q, mask = image.tokens, self.txt_proj(text.tokens), text.mask.bool()
        fv, fq = self.att(v, q)
        logits = torch.einsum("bkd,gd,bld->bgkl", fv, self.att_weight, fq)
        logits = logits.masked_fill(~mask[:, None, None, :], float("-inf"))  # padding takes no attention
        b, g, n, length = logits.shape
        att = torch.softmax(logits.reshape(b, g, n * length), dim=-1).view(b, g, n, length)
        for i, (pair, residual) in enumerate(zip(self.pairs, self.residual, strict=True)):
            q = q + residual(pair.pool(v, q, att[:, i])).unsqueeze(1)
        m = mask.to(q.dtype).unsqueeze(-1)
        pooled = self.out((q * m).sum(1))
        return FusionOutput(pooled, q, zero_loss(pooled), extras={"bilinear_attention": att}, tokens_mask=mask)
