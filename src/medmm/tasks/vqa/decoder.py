"""The VQA answer decoder: a small Transformer decoder over answer words for open answers the
classifier cannot express, and the word ids it is trained on."""

from __future__ import annotations

import torch
from torch import nn

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIAL = ["<pad>", "<bos>", "<eos>", "<unk>"]


class AnswerDecoder(nn.Module):
    """Transformer decoder over answer words, cross-attending to the fused tokens (greedy)."""

    def __init__(self, vocab_size: int, dim: int, layers: int = 2, heads: int = 4, max_length: int = 12, dropout: float = 0.1):
        super().__init__()
        self.max_length = max_length
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        self.pos = nn.Parameter(torch.zeros(1, max_length + 1, dim))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerDecoderLayer(dim, heads, 2 * dim, dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, vocab_size)

    def forward(self, inputs: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor | None) -> torch.Tensor:
        """Logits (B, T, V) for teacher-forced `inputs` (B, T) starting with BOS."""
        t = inputs.shape[1]
        x = self.embed(inputs) + self.pos[:, :t]
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=inputs.device), diagonal=1)
        h = self.decoder(x, memory, tgt_mask=causal, tgt_key_padding_mask=inputs.eq(PAD), memory_key_padding_mask=memory_pad)
        return self.out(self.norm(h))

    @torch.no_grad()
    def greedy(self, memory: torch.Tensor, memory_pad: torch.Tensor | None) -> list[list[int]]:
        """Greedy decoding: token ids per sample, EOS and everything after it removed."""
        b = memory.shape[0]
        seq = torch.full((b, 1), BOS, dtype=torch.long, device=memory.device)
        done = torch.zeros(b, dtype=torch.bool, device=memory.device)
        for _ in range(self.max_length):
            nxt = self.forward(seq, memory, memory_pad)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
            seq = torch.cat([seq, nxt[:, None]], dim=1)
            done |= nxt.eq(EOS)
            if bool(done.all()):
                break
        out = []
        for row in seq[:, 1:].tolist():
            ids = []
            for i in row:
                if i in (EOS, PAD):
                    break
                ids.append(i)
            out.append(ids)
        return out


def answer_token_ids(answers: list[str], word_index: dict[str, int], max_length: int) -> torch.Tensor:
    """Teacher-forcing targets (B, T): BOS + word ids (UNK when unknown, cut to fit) + EOS, PAD-padded."""
    rows = [[BOS] + [word_index.get(w, UNK) for w in a.split()][: max_length - 1] + [EOS] for a in answers]
    out = torch.full((len(rows), max(len(r) for r in rows)), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out
