"""A Hugging Face causal LM (GPT-2, Llama, Qwen2, ...) as a report decoder conditioned on image
tokens as a prefix (ClipCap, Mokady et al. 2021): the memory tokens, projected to the LM's width,
are prepended to the text embeddings and the LM predicts the text after them.

Both classes speak medmm's decoder interface (`medmm.models.decoders`), so the report task's
teacher forcing, greedy and beam search, sampling and sequence scoring work unchanged:
- `HFTokenizer` has WordTokenizer's methods. Its ids are the LM's token ids shifted by
  `OFFSET` = 4, below which sit medmm's PAD, BOS, EOS and UNK (`decoders`). BOS is fed to the LM
  as its own bos token (eos where it has none, as GPT-2 does), EOS is the LM's eos token.
  Decoded text is lower-cased words and punctuation (`decoders.word_tokenize`), as the word
  decoder's is, so scores compare like with like.
- `HFPrefixDecoder(tokens, memory, memory_pad)` -> logits (B, T, OFFSET + LM vocabulary): the
  EOS column is the LM's eos logit; PAD, BOS, UNK and the LM's own eos column get `MASKED` (a
  finite stand-in for -inf, so label smoothing stays finite). Without LoRA every LM weight
  trains; with `lora` only the adapters (peft) and the prefix projection do, and the module's
  state_dict then leaves the frozen LM weights out (they come from `source`, whose sha256 the
  run records), as `medmm.models.vlm.VisionLanguageModel` does.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import torch
from torch import nn

from medmm.errors import MedmmError
from medmm.models.decoders import BOS, EOS, PAD, UNK, WordTokenizer, join_tokens, word_tokenize
from medmm.models.encoders.hf_loading import load_hf, source_record

OFFSET = 4  # medmm's PAD, BOS, EOS, UNK come first
MASKED = -1.0e4


class HFTokenizer:
    """The tokenizer of a Hugging Face folder or hub name behind WordTokenizer's interface."""

    def __init__(self, source: str):
        self.source = source
        self.hf = load_hf("AutoTokenizer", source)
        if self.hf.eos_token_id is None:
            raise MedmmError(f"{source}: its tokenizer has no eos token; a report decoder needs one to end reports")
        self.eos_id = int(self.hf.eos_token_id)
        self.bos_id = int(self.hf.bos_token_id) if self.hf.bos_token_id is not None else self.eos_id
        self.pad_id = int(self.hf.pad_token_id) if self.hf.pad_token_id is not None else self.eos_id
        self.unk_id = int(self.hf.unk_token_id) if self.hf.unk_token_id is not None else self.eos_id

    def __len__(self) -> int:
        return OFFSET + len(self.hf)

    def encode(self, text: str, max_length: int | None = None, *, bos: bool = True, eos: bool = True) -> list[int]:
        """medmm ids (LM ids + OFFSET) with BOS/EOS; cut so the whole fits in `max_length`."""
        ids = [i + OFFSET for i in self.hf(text, add_special_tokens=False)["input_ids"]]
        if max_length is not None:
            ids = ids[: max(0, max_length - int(bos) - int(eos))]
        return ([BOS] if bos else []) + ids + ([EOS] if eos else [])

    def decode_tokens(self, ids: Any) -> list[str]:
        """The words of `ids` (up to EOS; PAD, BOS, UNK skipped), lower-cased as word_tokenize gives them."""
        kept = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i >= OFFSET:
                kept.append(i - OFFSET)
        return word_tokenize(self.hf.decode(kept, skip_special_tokens=True))

    def decode(self, ids: Any) -> str:
        return join_tokens(self.decode_tokens(ids))

    def to_hf(self, tokens: torch.Tensor) -> torch.Tensor:
        """medmm ids -> the LM's ids (PAD -> its pad id; masked out by the attention mask anyway)."""
        out = tokens - OFFSET
        for medmm_id, hf_id in ((PAD, self.pad_id), (BOS, self.bos_id), (EOS, self.eos_id), (UNK, self.unk_id)):
            out = torch.where(tokens == medmm_id, torch.full_like(tokens, hf_id), out)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "hf", "source": self.source}


def tokenizer_from_dict(d: dict[str, Any]) -> WordTokenizer | HFTokenizer:
    """A serialised report tokenizer: medmm's word vocabulary or a Hugging Face model's tokenizer."""
    if d.get("kind") == "hf":
        return HFTokenizer(str(d["source"]))
    return WordTokenizer.from_dict(d)


def _max_positions(config: Any) -> int:
    for key in ("n_positions", "max_position_embeddings"):
        if getattr(config, key, None):
            return int(getattr(config, key))
    raise MedmmError(f"{type(config).__name__}: no n_positions / max_position_embeddings to bound the text length")


class HFPrefixDecoder(nn.Module):
    """An `AutoModelForCausalLM` reading projected memory tokens as a prefix; medmm's decoder interface.

    source: hub name or folder (config.json, weights, tokenizer). memory_dim: width of the
    memory the caller builds. tokenizer: its `HFTokenizer`. lora: None (full fine-tuning) or
    {r, alpha, dropout, target_modules} (peft; default targets: GPT-2's c_attn, else the
    family's attention projections, `medmm.models.peft_utils.default_lora_targets`).
    """

    def __init__(self, source: str, memory_dim: int, tokenizer: HFTokenizer, lora: dict[str, Any] | None = None):
        super().__init__()
        self.lm = load_hf("AutoModelForCausalLM", source, dtype=torch.float32)
        # from_pretrained leaves the LM in eval mode; a new module trains (dropout on) until told
        # otherwise, so a fresh run and a resumed one (built at another moment) train alike.
        self.lm.train()
        self.hf_source = source_record(source)
        self.tokenizer = tokenizer
        if len(tokenizer.hf) > self.lm.config.vocab_size:
            raise MedmmError(f"{source}: tokenizer has {len(tokenizer.hf)} tokens but the model's vocabulary {self.lm.config.vocab_size}")
        width = self.lm.get_input_embeddings().embedding_dim
        self.prefix = nn.Linear(memory_dim, width)  # ClipCap's mapping network, linear
        self.max_length = _max_positions(self.lm.config)
        self.vocab_size = len(tokenizer)
        self.lora = dict(lora) if lora is not None else None
        if self.lora is not None:
            self._add_lora(self.lora)
        # transformers renamed the LM's past_key_values argument and output to `cache` (the old name
        # is deprecated, to go in 5.40): `step` uses the name this version's model class takes
        # (LoRA is injected in place, so the class is the LM's own)
        self._cache_kw = "cache" if "cache" in inspect.signature(type(self.lm).forward).parameters else "past_key_values"
        own = nn.Module.state_dict(self, keep_vars=True)
        self._frozen = {k for k, v in own.items() if not (isinstance(v, nn.Parameter) and v.requires_grad)}
        if self._frozen:
            from medmm.models.vlm.model import _drop_frozen, _forgive_frozen

            self.register_state_dict_post_hook(_drop_frozen)
            self.register_load_state_dict_post_hook(_forgive_frozen)

    def _add_lora(self, lora: dict[str, Any]) -> None:
        from medmm.models.peft_utils import apply_lora

        unknown = set(lora) - {"r", "alpha", "dropout", "target_modules"}
        if unknown:
            raise MedmmError(f"model.decoder.lora: unknown key(s) {sorted(unknown)}; known: r, alpha, dropout, target_modules")
        targets = lora.get("target_modules")
        if not targets and self.lm.config.model_type == "gpt2":
            targets = ["c_attn"]  # GPT-2's fused qkv projection is a Conv1D, which default_lora_targets does not list
        with warnings.catch_warnings():  # peft notes that it transposes GPT-2's Conv1D weights, as it should
            warnings.filterwarnings("ignore", "fan_in_fan_out is set to False", UserWarning)
            apply_lora(self.lm, r=int(lora.get("r", 8)), alpha=int(lora.get("alpha", 16)), target_modules=targets,
                       dropout=float(lora.get("dropout", 0.05)))

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor | None = None,
                last_only: bool = False) -> torch.Tensor:
        """Logits (B, T, vocab_size) of the token after each position of `tokens` (B, T), given
        `memory` (B, M, memory_dim) with padding mask `memory_pad` (True = pad); (B, 1, ...) when last_only."""
        b, m = memory.shape[:2]
        if m + tokens.shape[1] > self.max_length:
            raise MedmmError(f"{m} memory tokens + {tokens.shape[1]} text tokens exceed the LM's {self.max_length} positions")
        text = self.lm.get_input_embeddings()(self.tokenizer.to_hf(tokens))
        x = torch.cat([self.prefix(memory).to(text.dtype), text], 1)
        keep_mem = torch.ones(b, m, dtype=torch.long, device=tokens.device) if memory_pad is None else (~memory_pad).long()
        mask = torch.cat([keep_mem, tokens.ne(PAD).long()], 1)
        positions = (mask.cumsum(1) - 1).clamp_min(0)  # padded memory slots take no position
        kw = {"logits_to_keep": 1} if last_only else {}
        logits = self.lm(inputs_embeds=x, attention_mask=mask, position_ids=positions, use_cache=False, **kw).logits
        logits = logits[:, -1:] if last_only else logits[:, m:]
        return self._to_medmm(logits.float())

    def step(self, tokens: torch.Tensor, position: int, memory: torch.Tensor, memory_pad: torch.Tensor | None,
             cache: dict[str, Any] | None) -> tuple[torch.Tensor, dict[str, Any]]:
        """Incremental decoding with the LM's own key/value cache: logits (B, V) after feeding
        `tokens` (B,) at text position `position`, given the cache of the earlier positions (None
        at position 0, when the memory prefix is fed with the first token). Same positions and
        attention mask as `forward` on the whole prefix (tested), at O(1) new tokens a step
        instead of re-running memory + text. The LM's cache object is extended in place: the
        returned cache replaces the one passed in."""
        first = cache is None
        if first:
            b, m = memory.shape[:2]
            keep_mem = torch.ones(b, m, dtype=torch.long, device=tokens.device) if memory_pad is None else (~memory_pad).long()
            cache = {"past": None, "keep_mem": keep_mem}
        keep_mem = cache["keep_mem"]
        if keep_mem.shape[1] + position + 1 > self.max_length:
            raise MedmmError(f"{keep_mem.shape[1]} memory tokens + {position + 1} text tokens exceed the LM's {self.max_length} positions")
        x = self.lm.get_input_embeddings()(self.tokenizer.to_hf(tokens[:, None]))
        ones = torch.ones(tokens.shape[0], position + 1, dtype=torch.long, device=tokens.device)
        mask = torch.cat([keep_mem, ones], 1)
        if first:
            x = torch.cat([self.prefix(memory).to(x.dtype), x], 1)
            positions = (mask.cumsum(1) - 1).clamp_min(0)  # padded memory slots take no position
        else:
            positions = (keep_mem.sum(1) + position)[:, None]
        kw = self._cache_kw
        out = self.lm(inputs_embeds=x, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                      **{kw: cache["past"]})
        return self._to_medmm(out.logits[:, -1].float()), {"past": out[kw], "keep_mem": keep_mem}

    @staticmethod
    def reorder_cache(cache: dict[str, Any], rows: torch.Tensor) -> dict[str, Any]:
        """`step`'s cache with row r taken from the old row rows[r] (beam search); the LM's cache
        object is reordered in place."""
        cache["past"].reorder_cache(rows)
        return {"past": cache["past"], "keep_mem": cache["keep_mem"].index_select(0, rows)}

    def _to_medmm(self, logits: torch.Tensor) -> torch.Tensor:
        eos = logits[..., self.tokenizer.eos_id : self.tokenizer.eos_id + 1]
        fill = torch.full_like(eos, MASKED)
        lm = logits[..., : len(self.tokenizer.hf)]  # a padded embedding matrix's extra rows are no tokens
        lm = lm.index_fill(-1, torch.tensor([self.tokenizer.eos_id], device=lm.device), MASKED)  # eos only as EOS
        return torch.cat([fill, fill, eos, fill, lm], -1)
