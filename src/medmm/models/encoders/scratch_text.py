"""A small Transformer text encoder trained from scratch, with a WordPiece tokenizer fitted on the
task's own text. The tokenizer travels inside the state_dict (as module extra state), so a saved
checkpoint is self-contained: no separate vocabulary file to lose.
"""

from __future__ import annotations

import heapq
import json
from itertools import pairwise
from pathlib import Path

import torch
from torch import nn

from medmm.errors import BadInputError, MedmmError
from medmm.models.encoders.base import TextEncoder, TextFeatures
from medmm.models.encoders.factory import register_text_encoder
from medmm.models.encoders.hf_text import masked_mean

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def wordpiece_vocab(words: dict[str, int], vocab_size: int, min_frequency: int = 1) -> list[str]:
    """A WordPiece vocabulary learnt by BPE merges on `words` (word -> count), deterministically.

    The `tokenizers` library's WordPieceTrainer breaks ties between equally frequent pairs by
    hash-map order, which differs in every process: the same texts gave ~900 of 1,538 tokens
    different ids (and a different token set) in two processes. Here ties break by the pair's
    text and ids follow a fixed order: specials, the alphabet (sorted), then merges in order.
    Non-initial pieces carry the "##" prefix, as in BERT.
    """
    alphabet = sorted({ch for w in words for ch in w})
    vocab = list(SPECIALS) + [c for c in alphabet if c not in SPECIALS]
    vocab += [f"##{c}" for c in alphabet]
    seen = set(vocab)
    # Each word as a list of symbols; continuation symbols carry "##".
    split = {w: [w[0], *(f"##{c}" for c in w[1:])] for w in sorted(words)}
    pairs: dict[tuple[str, str], int] = {}
    where: dict[tuple[str, str], set[str]] = {}
    for w, syms in split.items():
        for pair in pairwise(syms):
            pairs[pair] = pairs.get(pair, 0) + words[w]
            where.setdefault(pair, set()).add(w)
    # Max-heap of (-count, pair); entries whose count changed since are skipped when popped.
    heap = [(-n, pair) for pair, n in pairs.items()]
    heapq.heapify(heap)
    changed: set[tuple[str, str]] = set()
    while len(vocab) < vocab_size and heap:
        neg, best = heapq.heappop(heap)
        if pairs.get(best) != -neg:
            continue
        if -neg < min_frequency:
            break
        a, b = best
        merged = a + b.removeprefix("##")
        for w in sorted(where.pop(best, ())):
            syms, count = split[w], words[w]
            for pair in pairwise(syms):  # drop this word's old pairs
                pairs[pair] -= count
                changed.add(pair)
                if pairs[pair] <= 0:
                    del pairs[pair]
                if pair != best and pair in where:
                    where[pair].discard(w)
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(merged)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            split[w] = out
            for pair in pairwise(out):
                pairs[pair] = pairs.get(pair, 0) + count
                where.setdefault(pair, set()).add(w)
                changed.add(pair)
        pairs.pop(best, None)
        for pair in sorted(changed):
            if pair in pairs:
                heapq.heappush(heap, (-pairs[pair], pair))
        changed.clear()
        if merged not in seen:
            seen.add(merged)
            vocab.append(merged)
    return vocab[:vocab_size]


def train_wordpiece(texts: list[str], vocab_size: int = 8000, min_frequency: int = 1):
    """A lower-casing BERT-style WordPiece `tokenizers.Tokenizer` fitted on `texts`.

    The vocabulary is learnt by `wordpiece_vocab` (identical in every process for the same
    texts); `tokenizers` does the normalising, pre-tokenising and greedy longest-match encoding.
    """
    from collections import Counter

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for t in texts:
        if t:
            words.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(t)))
    vocab = wordpiece_vocab(dict(words), vocab_size, min_frequency)
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok


class ScratchTextEncoder(TextEncoder):
    """Token + learned position embeddings -> pre-norm nn.TransformerEncoder; pooled = masked mean.

    Call `fit_tokenizer(train_texts)` before use (Task.setup does it). `vocab_size` fixes the
    embedding table; the fitted vocabulary may be smaller, never larger.
    """

    def __init__(
        self,
        vocab_size: int = 8000,
        dim: int = 256,
        num_layers: int = 4,
        num_heads: int = 4,
        max_length: int = 128,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.vocab_size = vocab_size
        self.max_length = max_length
        self.out_dim = dim
        self.tokenizer = None
        self.token_embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.pos_embed = nn.Parameter(torch.zeros(1, max_length, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, num_heads, 4 * dim, dropout, batch_first=True, norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def fit_tokenizer(self, texts: list[str]) -> None:
        """Train the WordPiece tokenizer on training text (only; never on test text)."""
        texts = [t for t in texts if t and t.strip()]
        if not texts:
            raise MedmmError("fit_tokenizer got no non-empty text")
        self.tokenizer = train_wordpiece(texts, vocab_size=self.vocab_size)

    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise MedmmError("the scratch text encoder has no tokenizer: call fit_tokenizer(train_texts) or load a checkpoint")
        return self.tokenizer

    def tokenize(self, texts: list[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Encode, truncate to max_length, pad to the longest in the batch ([PAD] = 0)."""
        tok = self._require_tokenizer()
        limit = min(max_length or self.max_length, self.max_length)
        encs = tok.encode_batch(list(texts))
        ids = [e.ids[: limit - 1] + [e.ids[-1]] if len(e.ids) > limit else e.ids for e in encs]
        width = max(1, *(len(i) for i in ids))
        input_ids = torch.zeros(len(ids), width, dtype=torch.long)
        mask = torch.zeros(len(ids), width, dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextFeatures:
        length = input_ids.shape[1]
        if length > self.max_length:
            raise ValueError(f"sequence length {length} exceeds max_length {self.max_length}")
        mask = attention_mask.bool()
        x = self.token_embed(input_ids) + self.pos_embed[:, :length]
        x = self.norm(self.encoder(x, src_key_padding_mask=~mask))
        return TextFeatures(pooled=masked_mean(x, mask), tokens=x, mask=mask)

    # The tokenizer is part of the state_dict, so torch.save(state_dict) is self-contained.
    def get_extra_state(self) -> dict:
        return {"tokenizer_json": self.tokenizer.to_str() if self.tokenizer is not None else None}

    def set_extra_state(self, state: dict) -> None:
        from tokenizers import Tokenizer

        raw = state.get("tokenizer_json") if isinstance(state, dict) else None
        self.tokenizer = Tokenizer.from_str(raw) if raw else None

    def save_tokenizer(self, path: str | Path) -> None:
        """Write tokenizer.json (for inspection; checkpoints already carry it)."""
        Path(path).write_text(self._require_tokenizer().to_str())

    def load_tokenizer(self, path: str | Path) -> None:
        """Read a tokenizer.json written by save_tokenizer."""
        from tokenizers import Tokenizer

        try:
            json.loads(Path(path).read_text())
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # OSError, JSON errors and the tokenizers library's own errors
            raise BadInputError(path, f"not a readable tokenizers JSON file ({exc})") from exc


@register_text_encoder("scratch")
def scratch(**kw) -> TextEncoder:
    """From-scratch Transformer text encoder (256-d, 4 layers) + fitted WordPiece tokenizer."""
    return ScratchTextEncoder(**kw)
