"""LoRA injection, freezing helpers and parameter counting."""

from __future__ import annotations

import pytest
import torch

from medmm.errors import MedmmError
from medmm.models import build_classifier, create_image_encoder
from medmm.models.peft_utils import apply_lora, count_parameters, default_lora_targets, freeze, freeze_except, unfreeze


def test_lora_on_monai_vit_trains_only_adapters():
    enc = create_image_encoder("vit_small", image_size=32, num_layers=2)
    _, total_before = count_parameters(enc)
    assert default_lora_targets(enc) == ["qkv"]
    apply_lora(enc, r=4, alpha=8)
    trainable, total = count_parameters(enc)
    assert 0 < trainable < 0.05 * total and total > total_before
    enc.train()
    enc(torch.randn(2, 3, 32, 32)).pooled.sum().backward()
    for name, p in enc.named_parameters():
        assert (p.grad is not None) == ("lora_" in name), name


def test_lora_on_hf_text_encoder(tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertModel

    from medmm.models import create_text_encoder
    from medmm.models.encoders.hf_text import minilm_dir

    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)).save_pretrained(tmp_path / "b")
    tok.save_pretrained(tmp_path / "b")
    enc = create_text_encoder(f"hf:{tmp_path / 'b'}")
    assert default_lora_targets(enc) == ["query", "value"]
    apply_lora(enc, r=2)
    assert all("lora_" in n for n, p in enc.named_parameters() if p.requires_grad)
    assert enc(**enc.tokenize(["a small effusion"])).pooled.shape == (1, 32)


def test_unknown_targets_are_an_error():
    with pytest.raises(MedmmError, match="target modules"):
        apply_lora(create_image_encoder("small_cnn", widths=(4,), image_size=32))


def test_freeze_helpers_and_counts():
    model = build_classifier("small_cnn", "scratch", "early", 2, dim=8, image_kw={"widths": (4, 8)}, text_kw={"dim": 16, "num_layers": 1, "num_heads": 2})
    trainable, total = count_parameters(model)
    assert trainable == total > 0
    freeze_except(model, ["fusion", "head"])
    trainable, _ = count_parameters(model)
    expected = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("fusion", "head")))
    assert trainable == expected
    freeze(model)
    assert count_parameters(model)[0] == 0
    unfreeze(model.image_encoder)
    assert count_parameters(model)[0] == sum(p.numel() for p in model.image_encoder.parameters())
    with pytest.raises(MedmmError):
        freeze_except(model, ["nonexistent"])
