"""Tiny randomly initialised causal LMs (report decoders) written offline in Hugging Face format.

Each folder holds what the public checkpoint's does and loads through the same classes
(`AutoModelForCausalLM`, `AutoTokenizer`): config.json + model.safetensors of the real model
class and a tokenizer of the real tokenizer class (byte-level BPE for GPT-2 and Qwen2, byte-
fallback BPE for Llama) with the family's special tokens, its vocabulary trained here on a fixed
medical word list (`medmm.models.vlm.tiny.train_tokenizer`). Only the sizes are tiny.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from medmm.errors import MedmmError, require
from medmm.models.vlm.tiny import train_tokenizer

_SIZE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=256)


def _gpt2() -> tuple[Any, Any]:
    """openai-community/gpt2, distilgpt2 (and healthcare GPT-2 fine-tunes): byte-level BPE, <|endoftext|> as bos/eos."""
    tf = require("transformers", "train", "causal LM report decoders")
    tok = train_tokenizer("GPT2Tokenizer", [], bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                          unk_token="<|endoftext|>")
    cfg = tf.GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=256,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return tf.GPT2LMHeadModel(cfg), tok


def _llama() -> tuple[Any, Any]:
    """meta-llama/Llama-3.2-1B, TinyLlama/TinyLlama-1.1B-Chat-v1.0 (Llama architecture; byte-fallback BPE, <s> </s>)."""
    tf = require("transformers", "train", "causal LM report decoders")
    tok = train_tokenizer("LlamaTokenizer", [])
    cfg = tf.LlamaConfig(vocab_size=len(tok), **_SIZE, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return tf.LlamaForCausalLM(cfg), tok


def _qwen2() -> tuple[Any, Any]:
    """Qwen/Qwen2.5-0.5B (Qwen2 architecture; byte-level BPE, <|endoftext|> eos, no bos)."""
    tf = require("transformers", "train", "causal LM report decoders")
    tok = train_tokenizer("Qwen2Tokenizer", [])
    cfg = tf.Qwen2Config(vocab_size=len(tok), **_SIZE, eos_token_id=tok.eos_token_id)
    return tf.Qwen2ForCausalLM(cfg), tok


BUILDERS: dict[str, Callable[[], tuple[Any, Any]]] = {"gpt2": _gpt2, "llama": _llama, "qwen2": _qwen2}


def write_tiny_causal_lm(family: str, out: str | Path, seed: int = 0) -> Path:
    """Write the tiny causal LM of `family` (gpt2, llama, qwen2) to the empty or new folder `out`."""
    torch = require("torch", "train", "tiny models")
    if family not in BUILDERS:
        raise MedmmError(f"unknown causal LM family {family!r}; known: {', '.join(BUILDERS)}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise MedmmError(f"{out}: exists and is not empty; choose a new folder")
    torch.manual_seed(seed)
    model, tok = BUILDERS[family]()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
