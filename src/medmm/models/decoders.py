"""Text decoders for report generation: a word tokenizer fitted on training text, a Transformer
decoder trained from scratch, and generation (greedy, beam search with length penalty,
no-repeat-n-gram blocking, CTRL repetition penalty, no immediate token repeat, minimum and
maximum length).

The decoder cross-attends to any "memory" (image tokens, retrieved-report tokens, findings
embeddings): the caller builds the memory, so this module knows no task.

    tok = WordTokenizer.fit(train_texts, min_freq=2)
    dec = TransformerReportDecoder(len(tok), dim=256)
    logits = dec(tokens[:, :-1], memory, memory_pad)             # teacher forcing
    ids = generate(dec, memory, memory_pad, GenerationConfig(beam_size=3, no_repeat_ngram_size=3))
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medmm.errors import MedmmError
from medmm.generation_config import GenerationConfig  # torch-free: the CLI builds its decoding flags from it

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
# Words (with inner hyphens/apostrophes/dots of decimals) and single punctuation marks; the
# sentence-final "." is its own token so generated text splits into sentences for provenance.
_TOKEN_RE = re.compile(r"[a-z0-9]+(?:[-'/.][a-z0-9]+)*|[^\sa-z0-9]")
_NO_SPACE_BEFORE = {".", ",", ";", ":", "?", "!", ")", "%"}
_NO_SPACE_AFTER = {"("}


def word_tokenize(text: str) -> list[str]:
    """Lower-cased words and punctuation marks of `text`."""
    return _TOKEN_RE.findall(text.lower())


class WordTokenizer:
    """Word-level vocabulary fitted on training text; ids 0-3 are pad, bos, eos, unk.

    Serialised with `to_dict()` / `from_dict()` (JSON), so it travels in the task state.
    """

    def __init__(self, words: Sequence[str]):
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise MedmmError(f"a WordTokenizer vocabulary must start with {SPECIALS}")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def fit(cls, texts: Iterable[str], min_freq: int = 1, max_size: int | None = None) -> WordTokenizer:
        """Vocabulary of the words seen at least `min_freq` times (most frequent first)."""
        counts = Counter(w for t in texts for w in word_tokenize(t))
        kept = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        if max_size is not None:
            kept = kept[: max(0, max_size - len(SPECIALS))]
        return cls(list(SPECIALS) + kept)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str, max_length: int | None = None, *, bos: bool = True, eos: bool = True) -> list[int]:
        """Token ids (with BOS/EOS); the words are cut so the whole fits in `max_length`."""
        ids = [self.index.get(w, UNK) for w in word_tokenize(text)]
        if max_length is not None:
            ids = ids[: max(0, max_length - int(bos) - int(eos))]
        return ([BOS] if bos else []) + ids + ([EOS] if eos else [])

    def decode_tokens(self, ids: Iterable[int]) -> list[str]:
        """Words of `ids`, stopping at EOS and skipping pad/bos."""
        out = []
        for i in ids:
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            out.append(self.words[i] if 0 <= i < len(self.words) else SPECIALS[UNK])
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Readable text of `ids` (punctuation attached to the previous word)."""
        return join_tokens(self.decode_tokens(ids))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "word", "words": self.words}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WordTokenizer:
        if d.get("kind") != "word" or not isinstance(d.get("words"), list):
            raise MedmmError("not a serialised WordTokenizer (expected {'kind': 'word', 'words': [...]})")
        return cls(d["words"])


def join_tokens(tokens: Sequence[str]) -> str:
    """Tokens back to text with conventional spacing around punctuation."""
    out = ""
    for t in tokens:
        if not out or t in _NO_SPACE_BEFORE or out[-1] in _NO_SPACE_AFTER:
            out += t
        else:
            out += " " + t
    return out


def pad_batch(rows: Sequence[Sequence[int]], pad: int = PAD) -> torch.Tensor:
    """(B, max_len) long tensor of the rows, right-padded."""
    width = max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), max(1, width)), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            out[i, : len(r)] = torch.as_tensor(list(r), dtype=torch.long)
    return out


class TransformerReportDecoder(nn.Module):
    """Pre-norm Transformer decoder over word ids, cross-attending to a memory (B, M, dim)."""

    def __init__(self, vocab_size: int, dim: int = 256, layers: int = 3, heads: int = 4, max_length: int = 128,
                 dropout: float = 0.1, ffn_mult: int = 4):
        super().__init__()
        if dim % heads:
            raise MedmmError(f"decoder dim {dim} must be divisible by heads {heads}")
        self.vocab_size, self.dim, self.max_length = vocab_size, dim, max_length
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        # std dim**-0.5: inputs are scaled by sqrt(dim) to unit size, and the tied output layer
        # then starts with logits of order 1 (N(0, 1) init would give a loss in the hundreds)
        nn.init.normal_(self.embed.weight, std=dim**-0.5)
        with torch.no_grad():
            self.embed.weight[PAD].zero_()
        self.pos = nn.Parameter(torch.zeros(1, max_length, dim))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerDecoderLayer(dim, heads, ffn_mult * dim, dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, vocab_size, bias=False)
        self.out.weight = self.embed.weight  # tied: fewer parameters for small training sets

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor | None = None,
                last_only: bool = False) -> torch.Tensor:
        """Logits (B, T, V) predicting the next token at each position of `tokens` (B, T);
        (B, 1, V) for the last position only when `last_only` (generation)."""
        t = tokens.shape[1]
        if t > self.max_length:
            raise MedmmError(f"decoder input of {t} tokens exceeds max_length {self.max_length}")
        x = self.embed(tokens) * math.sqrt(self.dim) + self.pos[:, :t]
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=tokens.device), diagonal=1)
        h = self.decoder(x, memory, tgt_mask=causal, tgt_key_padding_mask=tokens.eq(PAD), memory_key_padding_mask=memory_pad)
        if last_only:
            h = h[:, -1:]
        return self.out(self.norm(h))

    def step(self, tokens: torch.Tensor, position: int, memory: torch.Tensor, memory_pad: torch.Tensor | None,
             cache: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] | None) -> tuple[torch.Tensor, dict]:
        """Incremental decoding: logits (B, V) after feeding `tokens` (B,) at `position`, given the
        cache of the earlier positions (None at position 0); returns the extended cache.

        The cache holds each layer's projected self-attention keys/values of the earlier
        positions (they never change in a causal decoder) and the projected memory keys/values
        (computed once), so a step costs O(position) instead of re-running and re-projecting the
        whole prefix. Same result as `forward` on the whole prefix (tested); in train mode,
        dropout is applied as in `forward`.
        """
        if position >= self.max_length:
            raise MedmmError(f"decoder position {position} exceeds max_length {self.max_length}")
        x = self.embed(tokens[:, None]) * math.sqrt(self.dim) + self.pos[:, position : position + 1]
        first = cache is None
        cache = {"self": [], "cross": []} if first else cache
        new_self = []
        # SDPA's boolean mask: True = may attend
        keep = None if memory_pad is None else ~memory_pad[:, None, None, :]
        for i, layer in enumerate(self.decoder.layers):
            sa, ca = layer.self_attn, layer.multihead_attn
            h = layer.norm1(x)
            q, k, v = F.linear(h, sa.in_proj_weight, sa.in_proj_bias).chunk(3, dim=-1)
            if not first:
                k0, v0 = cache["self"][i]
                k, v = torch.cat([k0, k], dim=1), torch.cat([v0, v], dim=1)
            new_self.append((k, v))
            x = x + layer.dropout1(self._attend(sa, q, k, v, None))
            h = layer.norm2(x)
            if first:
                w_k, w_v = ca.in_proj_weight.chunk(3)[1:]
                b_k, b_v = ca.in_proj_bias.chunk(3)[1:]
                cache["cross"].append((F.linear(memory, w_k, b_k), F.linear(memory, w_v, b_v)))
            q = F.linear(h, ca.in_proj_weight.chunk(3)[0], ca.in_proj_bias.chunk(3)[0])
            mk, mv = cache["cross"][i]
            x = x + layer.dropout2(self._attend(ca, q, mk, mv, keep))
            x = x + layer._ff_block(layer.norm3(x))
        if self.decoder.norm is not None:
            x = self.decoder.norm(x)
        return self.out(self.norm(x))[:, 0], {"self": new_self, "cross": cache["cross"]}

    @staticmethod
    def reorder_cache(cache: dict[str, list[tuple[torch.Tensor, torch.Tensor]]], rows: torch.Tensor) -> dict:
        """`step`'s cache with row r taken from the old row rows[r] (beam search)."""
        return {name: [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in kvs] for name, kvs in cache.items()}

    def _attend(self, mha: nn.MultiheadAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                keep: torch.Tensor | None) -> torch.Tensor:
        """Multi-head attention of already-projected q (B, 1, d), k, v (B, L, d), then out_proj."""
        b, h = q.shape[0], mha.num_heads
        split = lambda t: t.view(b, t.shape[1], h, -1).transpose(1, 2)  # noqa: E731
        o = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=keep,
                                           dropout_p=mha.dropout if self.training else 0.0)
        return mha.out_proj(o.transpose(1, 2).reshape(b, -1, self.dim))


def banned_next_tokens(seq: Sequence[int], n: int) -> list[int]:
    """Tokens that would repeat an n-gram already in `seq` if appended (no-repeat-n-gram rule)."""
    if n <= 0 or len(seq) < n - 1:
        return []
    if n == 1:
        return list(set(seq))
    prefix = tuple(seq[len(seq) - n + 1 :])
    return [seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i : i + n - 1]) == prefix]


def _penalise_repeats(logits: torch.Tensor, seqs: list[list[int]], penalty: float) -> torch.Tensor:
    """CTRL repetition penalty on (N, V) raw logits: tokens already in row r's `seqs[r]` get
    logit / penalty when positive, logit * penalty when negative (each token once, however
    often it occurred). A new tensor; penalty 1 returns `logits` itself."""
    if penalty == 1.0 or not any(seqs):
        return logits
    seen = torch.zeros_like(logits, dtype=torch.bool)
    seen.scatter_(1, pad_batch(seqs).to(logits.device), True)
    seen[:, PAD] = False  # the padding of short rows, never a generated token
    return torch.where(seen, torch.where(logits > 0, logits / penalty, logits * penalty), logits)


def _next_logprobs(logits: torch.Tensor, seqs: list[list[int]], step: int, cfg: GenerationConfig,
                   temperature: float = 1.0) -> torch.Tensor:
    """Log-probabilities (N, V) of the next token from the decoder's raw logits: the repetition
    penalty acts on the logits, then temperature and softmax, then the bans (`_mask_logprobs`)."""
    logits = _penalise_repeats(logits.float(), seqs, cfg.repetition_penalty)
    if temperature != 1.0:
        logits = logits / temperature
    return _mask_logprobs(torch.log_softmax(logits, dim=-1), seqs, step, cfg)


def _mask_logprobs(logp: torch.Tensor, seqs: list[list[int]], step: int, cfg: GenerationConfig) -> torch.Tensor:
    """Apply min-length, no-immediate-repeat and no-repeat-n-gram bans to (N, V)
    log-probabilities in place.

    PAD, BOS and UNK are never generated (an "<unk>" in a report helps no reader).
    """
    logp[:, PAD] = -math.inf
    logp[:, BOS] = -math.inf
    logp[:, UNK] = -math.inf
    if step < cfg.min_length:
        logp[:, EOS] = -math.inf
    if cfg.no_immediate_repeat:
        rows = [r for r, seq in enumerate(seqs) if seq]
        if rows:
            logp[rows, [seqs[r][-1] for r in rows]] = -math.inf
    if cfg.no_repeat_ngram_size > 0:
        for r, seq in enumerate(seqs):
            banned = banned_next_tokens(seq, cfg.no_repeat_ngram_size)
            if banned:
                logp[r, banned] = -math.inf
    return logp


def _next_logits(decoder: nn.Module, seq: torch.Tensor, memory: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
    if isinstance(decoder, TransformerReportDecoder):  # project only the last position
        return decoder(seq, memory, pad, last_only=True)[:, -1]
    return decoder(seq, memory, pad)[:, -1]


class _Stepper:
    """Next-token raw logits, one position per call: KV-cached for a decoder with the incremental
    interface (`step(tokens, position, memory, pad, cache)` and `reorder_cache(cache, rows)`: the
    TransformerReportDecoder and the causal-LM prefix decoder), a full re-run of the prefix for any
    other decoder module."""

    def __init__(self, decoder: nn.Module, memory: torch.Tensor, pad: torch.Tensor | None):
        self.decoder, self.memory, self.pad = decoder, memory, pad
        self.incremental = callable(getattr(decoder, "step", None)) and callable(getattr(decoder, "reorder_cache", None))
        self.cache: Any = None

    def __call__(self, seq: torch.Tensor) -> torch.Tensor:
        """Logits (N, V) of the token after `seq` (N, t); the cache covers seq[:, :-1]."""
        if not self.incremental:
            return _next_logits(self.decoder, seq, self.memory, self.pad).float()
        logits, self.cache = self.decoder.step(seq[:, -1], seq.shape[1] - 1, self.memory, self.pad, self.cache)
        return logits.float()

    def reorder(self, rows: torch.Tensor) -> None:
        """Row r of the cache becomes the old row rows[r] (beam search keeps other beams)."""
        if self.cache is not None:
            self.cache = self.decoder.reorder_cache(self.cache, rows)


@torch.no_grad()
def greedy_decode(decoder: nn.Module, memory: torch.Tensor, memory_pad: torch.Tensor | None,
                  cfg: GenerationConfig | None = None) -> list[list[int]]:
    """Greedy decoding: per sample the generated ids (no BOS, no EOS)."""
    cfg = (cfg or GenerationConfig()).check()
    b = memory.shape[0]
    seq = torch.full((b, 1), BOS, dtype=torch.long, device=memory.device)
    gen: list[list[int]] = [[] for _ in range(b)]
    done = [False] * b
    stepper = _Stepper(decoder, memory, memory_pad)
    for step in range(cfg.max_length):
        logp = _next_logprobs(stepper(seq), gen, step, cfg)
        nxt = logp.argmax(-1)
        for i in range(b):
            if done[i]:
                nxt[i] = PAD
            elif int(nxt[i]) == EOS:
                done[i] = True
            else:
                gen[i].append(int(nxt[i]))
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        if all(done):
            break
    return gen


@torch.no_grad()
def beam_search_nbest(decoder: nn.Module, memory: torch.Tensor, memory_pad: torch.Tensor | None,
                      cfg: GenerationConfig) -> list[list[tuple[float, list[int]]]]:
    """Beam search returning, per sample, every finished hypothesis as (score, ids), best first.

    score = sum(log p) / length ** length_penalty (log p after the repetition penalty, when one
    is set). Each step keeps `beam_size` unfinished beams
    per sample; a candidate ending in EOS is moved to that sample's finished list. A sample
    stops once it holds `beam_size` finished hypotheses (HF's early_stopping=True); at
    max_length the unfinished beams are finished as they are. Ties keep the order found (the
    higher-ranked candidate first). Used by `beam_search` (the best one) and by consensus
    re-ranking (the whole list).
    """
    cfg.check()
    k = cfg.beam_size
    b = memory.shape[0]
    dev = memory.device
    mem = memory.repeat_interleave(k, dim=0)
    pad = memory_pad.repeat_interleave(k, dim=0) if memory_pad is not None else None
    beams: list[list[list[int]]] = [[[] for _ in range(k)] for _ in range(b)]
    scores = torch.full((b, k), -math.inf, device=dev)
    scores[:, 0] = 0.0  # identical initial beams: only the first may expand
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    active = [True] * b
    stepper = _Stepper(decoder, mem, pad)

    def norm(score: float, length: int) -> float:
        return score / (max(length, 1) ** cfg.length_penalty)

    for step in range(cfg.max_length):
        flat = [beams[i][j] for i in range(b) for j in range(k)]
        # dead (empty) beams are padded to the step's length: their scores are -inf, never kept
        seq = pad_batch([[BOS] + s + [PAD] * (step - len(s)) for s in flat]).to(dev)
        logp = _next_logprobs(stepper(seq), flat, step, cfg)
        v = logp.shape[-1]
        cand = (scores[:, :, None] + logp.view(b, k, v)).view(b, k * v)
        top_s, top_i = cand.topk(min(2 * k, k * v), dim=-1)
        new_scores = torch.full((b, k), -math.inf, device=dev)
        rows = list(range(b * k))  # cache row of each new beam (dead beams keep their own)
        for i in range(b):
            if not active[i]:
                continue
            kept: list[list[int]] = []
            for s, idx in zip(top_s[i].tolist(), top_i[i].tolist(), strict=True):
                if s == -math.inf:
                    break
                src, tok = divmod(idx, v)
                if tok == EOS:
                    finished[i].append((norm(s, len(beams[i][src]) + 1), beams[i][src]))
                    if len(finished[i]) >= k:
                        break
                    continue
                new_scores[i, len(kept)] = s
                rows[i * k + len(kept)] = i * k + src
                kept.append(beams[i][src] + [tok])
                if len(kept) == k:
                    break
            if len(finished[i]) >= k or not kept:
                active[i] = False
            beams[i] = kept + [[] for _ in range(k - len(kept))]
        scores = new_scores
        stepper.reorder(torch.tensor(rows, device=dev))
        if not any(active):
            break
    out = []
    for i in range(b):
        if active[i] or not finished[i]:  # reached max_length: unfinished beams count as they are
            for j in range(k):
                if scores[i, j] > -math.inf:
                    finished[i].append((norm(float(scores[i, j]), len(beams[i][j]) + 1), beams[i][j]))
        # stable sort: among equal scores the first found (higher-ranked) stays first
        out.append(sorted(finished[i], key=lambda t: -t[0]))
    return out


@torch.no_grad()
def beam_search(decoder: nn.Module, memory: torch.Tensor, memory_pad: torch.Tensor | None,
                cfg: GenerationConfig) -> list[list[int]]:
    """Beam search: per sample the best finished hypothesis by length-normalised log-probability
    (`beam_search_nbest`'s first). With beam_size 1 this is exactly greedy decoding."""
    return [hyps[0][1] if hyps else [] for hyps in beam_search_nbest(decoder, memory, memory_pad, cfg)]


@torch.no_grad()
def sample_decode(decoder: nn.Module, memory: torch.Tensor, memory_pad: torch.Tensor | None,
                  cfg: GenerationConfig | None = None, n_samples: int = 1, temperature: float = 1.0,
                  generator: torch.Generator | None = None) -> list[list[int]]:
    """Multinomial sampling, `n_samples` texts per memory row, rows in order (sample i's texts
    at i * n_samples ...). The min-length / no-repeat / repetition-penalty / never-<unk> rules of
    `cfg` apply (the penalty before the temperature).
    Used for self-critical training (several samples per image, rewarded by CIDEr-D)."""
    cfg = (cfg or GenerationConfig()).check()
    if n_samples < 1 or temperature <= 0:
        raise MedmmError(f"need n_samples >= 1 and temperature > 0, got {n_samples}, {temperature}")
    mem = memory.repeat_interleave(n_samples, dim=0)
    pad = memory_pad.repeat_interleave(n_samples, dim=0) if memory_pad is not None else None
    n = mem.shape[0]
    seq = torch.full((n, 1), BOS, dtype=torch.long, device=mem.device)
    gen: list[list[int]] = [[] for _ in range(n)]
    done = torch.zeros(n, dtype=torch.bool, device=mem.device)
    stepper = _Stepper(decoder, mem, pad)
    for step in range(cfg.max_length):
        logp = _next_logprobs(stepper(seq), gen, step, cfg, temperature)
        nxt = torch.multinomial(torch.softmax(logp, -1), 1, generator=generator)[:, 0]
        nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
        for i in torch.nonzero(~done).flatten().tolist():
            if int(nxt[i]) != EOS:
                gen[i].append(int(nxt[i]))
        done |= nxt.eq(EOS)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        if bool(done.all()):
            break
    return gen


def sequence_logprobs(decoder: nn.Module, memory: torch.Tensor, memory_pad: torch.Tensor | None,
                      texts: list[list[int]], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of log p (with gradients) of each generated text given its memory row, EOS included
    when the text ended before `max_length` tokens, and the number of tokens scored."""
    rows = [[BOS] + t + ([EOS] if len(t) < max_length else []) for t in texts]
    seq = pad_batch(rows).to(memory.device)
    logits = decoder(seq[:, :-1], memory, memory_pad)
    logp = torch.log_softmax(logits.float(), -1).gather(-1, seq[:, 1:, None])[..., 0]
    mask = seq[:, 1:].ne(PAD)
    return (logp * mask).sum(1), mask.sum(1)


def generate(decoder: nn.Module, memory: torch.Tensor, memory_pad: torch.Tensor | None,
             cfg: GenerationConfig | None = None) -> list[list[int]]:
    """Generated ids per sample: greedy when beam_size == 1, else beam search."""
    cfg = (cfg or GenerationConfig()).check()
    if cfg.beam_size == 1:
        return greedy_decode(decoder, memory, memory_pad, cfg)
    return beam_search(decoder, memory, memory_pad, cfg)
