"""Mixture-of-experts fusion: image-region and text tokens are routed to expert MLPs by a learned
router (Switch Transformer style, top-k), with the Switch load-balancing loss as aux_loss."""

from __future__ import annotations

import torch
from torch import nn

from medmm.models.encoders.base import ImageFeatures, TextFeatures
from medmm.models.fusion.attention import masked_mean
from medmm.models.fusion.base import Fusion, FusionOutput, need, register_fusion
from medmm.models.fusion.simple import mlp


def switch_load_balancing_loss(router_probs: torch.Tensor, expert_index: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Switch Transformer auxiliary loss: E * sum_e f_e * P_e.

    router_probs: (T, E) softmax over experts per token; expert_index: (T,) top-1 expert;
    mask: (T,) bool, tokens to count. f_e = fraction of tokens sent to expert e, P_e = mean router
    probability of e. Equals 1 for perfectly balanced routing and E when all tokens (and all
    probability) go to one expert.
    """
    num_experts = router_probs.shape[-1]
    if mask is not None:
        router_probs, expert_index = router_probs[mask], expert_index[mask]
    frac = torch.nn.functional.one_hot(expert_index, num_experts).to(router_probs.dtype).mean(dim=0)
    prob = router_probs.mean(dim=0)
    return num_experts * torch.sum(frac * prob)


@register_fusion("moe")
class MoEFusion(Fusion):
    """Tokens of both modalities (plus a learned modality embedding, so the router can specialise
    experts per modality or per region) go through `num_experts` expert MLPs; each token uses its
    top-k experts weighted by the renormalised router probabilities. Tolerates a missing modality.

    aux_loss = load_balance_weight * switch_load_balancing_loss. extras: "router_probs" (B, N, E),
    "expert_index" (B, N), "load_balancing_loss" (unweighted), "expert_fraction" (E,)."""

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        dim: int = 256,
        num_experts: int = 4,
        top_k: int = 1,
        load_balance_weight: float = 0.01,
        dropout: float = 0.1,
    ):
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be in [1, {num_experts}], got {top_k}")
        self.img_proj, self.txt_proj = nn.Linear(image_dim, dim), nn.Linear(text_dim, dim)
        self.modality_embed = nn.Parameter(torch.zeros(2, dim))
        self.norm = nn.LayerNorm(dim)
        self.router = nn.Linear(dim, num_experts)
        self.experts = nn.ModuleList(
            [nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim)) for _ in range(num_experts)]
        )
        self.out = mlp(dim, dim, dropout)
        self.num_experts, self.top_k, self.load_balance_weight = num_experts, top_k, load_balance_weight
        self.out_dim = dim

    def forward(self, image: ImageFeatures | None, text: TextFeatures | None) -> FusionOutput:
        need(image if image is not None else text, "image or text", "moe")
        toks, masks = [], []
        if image is not None:
            toks.append(self.img_proj(image.tokens) + self.modality_embed[0])
            masks.append(torch.ones(image.tokens.shape[:2], dtype=torch.bool, device=image.tokens.device))
        if text is not None:
            toks.append(self.txt_proj(text.tokens) + self.modality_embed[1])
            masks.append(text.mask.bool())
        x, mask = torch.cat(toks, 1), torch.cat(masks, 1)
        b, n, d = x.shape
        h = self.norm(x)
        probs = torch.softmax(self.router(h), dim=-1)  # (B, N, E)
        top_p, top_i = probs.topk(self.top_k, dim=-1)
        top_p = top_p / top_p.sum(-1, keepdim=True)
        flat_h = h.reshape(-1, d)
        out = torch.zeros_like(flat_h)
        flat_i, flat_p, flat_mask = top_i.reshape(-1, self.top_k), top_p.reshape(-1, self.top_k), mask.reshape(-1)
        for e, expert in enumerate(self.experts):
            # Only the tokens routed to expert e are computed by it (sparse dispatch).
            rows, slot = torch.nonzero((flat_i == e) & flat_mask.unsqueeze(-1), as_tuple=True)
            if rows.numel():
                out.index_add_(0, rows, expert(flat_h[rows]) * flat_p[rows, slot].unsqueeze(-1))
        fused = x + out.view(b, n, d)
        lb = switch_load_balancing_loss(probs.reshape(-1, self.num_experts), top_i[..., 0].reshape(-1), flat_mask)
        frac = torch.nn.functional.one_hot(top_i[..., 0][mask], self.num_experts).float().mean(0)
        pooled = self.out(masked_mean(fused, mask))
        return FusionOutput(
            pooled,
            fused,
            self.load_balance_weight * lb,
            extras={"router_probs": probs, "expert_index": top_i[..., 0], "load_balancing_loss": lb.detach(), "expert_fraction": frac},
            tokens_mask=mask,
        )
