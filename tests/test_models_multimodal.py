"""Every image encoder x text encoder x fusion through MultimodalClassifier: shapes, backward,
finite gradients, no NaN; unused encoders are not run. The default run covers every encoder and
every fusion with tiny configs; the full cross product is `slow`."""

from __future__ import annotations

import functools

import pytest
import torch

from medmm.errors import MedmmError
from medmm.models import (
    MultimodalClassifier,
    build_classifier,
    create_fusion,
    create_image_encoder,
    create_text_encoder,
)
from medmm.models.encoders import list_image_encoders
from medmm.models.fusion import list_fusions

TINY_IMAGE = {"vit_small": {"image_size": 32}, "vit_base": {"image_size": 32}, "small_cnn": {"image_size": 32}}
TEXTS = ["small left pleural effusion", "no acute cardiopulmonary process", "right lower lobe opacity"]


@functools.cache
def image_encoder(name: str):
    torch.manual_seed(0)
    return create_image_encoder(name, in_channels=1, **TINY_IMAGE.get(name, {}))


@functools.cache
def text_encoder(name: str):
    if name == "scratch":
        enc = create_text_encoder("scratch", dim=32, num_layers=1, num_heads=2, max_length=16)
        enc.fit_tokenizer(TEXTS * 3)
        return enc
    return create_text_encoder(name)


def run_combo(image_name: str, text_name: str, fusion_name: str):
    img_enc, txt_enc = image_encoder(image_name), text_encoder(text_name)
    fusion = create_fusion(fusion_name, img_enc.out_dim, txt_enc.out_dim, dim=32)
    model = MultimodalClassifier(img_enc, txt_enc, fusion, num_outputs=4).train()
    model.zero_grad(set_to_none=True)
    batch = txt_enc.tokenize(TEXTS)
    out = model(torch.randn(3, 1, 32, 32), batch["input_ids"], batch["attention_mask"])
    assert out.logits.shape == (3, 4)
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.aux_loss)
    loss = torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 2])) + out.aux_loss
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in (p.grad for p in fusion.parameters()) if g is not None)
    if fusion.uses_image:
        assert any(p.grad is not None for p in img_enc.parameters()), "image encoder got no gradient"
    if fusion.uses_text:
        assert any(p.grad is not None for p in txt_enc.parameters()), "text encoder got no gradient"
    return model, out


# Default: every fusion with small_cnn + scratch and with resnet18 + MiniLM, plus the ViT; the
# large encoders' forward/backward is covered by test_encoders.py, their combinations are slow.
DEFAULT = [("small_cnn", "scratch", f) for f in list_fusions()]
DEFAULT += [("resnet18", "minilm", f) for f in list_fusions()]
DEFAULT += [("vit_small", "scratch", "cross_attention")]


@pytest.mark.parametrize("image_name,text_name,fusion_name", DEFAULT)
def test_combination(image_name, text_name, fusion_name):
    run_combo(image_name, text_name, fusion_name)


@pytest.mark.slow
@pytest.mark.parametrize("fusion_name", list_fusions())
@pytest.mark.parametrize("text_name", ["scratch", "minilm"])
@pytest.mark.parametrize("image_name", list_image_encoders())
def test_full_cross_product(image_name, text_name, fusion_name):
    run_combo(image_name, text_name, fusion_name)


class _Exploding(torch.nn.Module):
    out_dim = 8

    def forward(self, *args):
        raise AssertionError("this encoder must not run")


def test_single_modality_fusions_do_not_run_the_unused_encoder():
    img = image_encoder("small_cnn")
    model = MultimodalClassifier(img, _Exploding(), create_fusion("image_only", img.out_dim, 8, 16), num_outputs=2)
    assert model.text_encoder is None
    assert model(torch.randn(2, 1, 32, 32), torch.ones(2, 4, dtype=torch.long)).logits.shape == (2, 2)
    txt = text_encoder("scratch")
    model = MultimodalClassifier(_Exploding(), txt, create_fusion("text_only", 8, txt.out_dim, 16), num_outputs=2)
    assert model.image_encoder is None
    out = model(torch.randn(2, 1, 32, 32), **txt.tokenize(TEXTS[:2]))
    assert out.logits.shape == (2, 2) and out.image is None


def test_build_classifier_by_name_skips_the_unused_encoder():
    model = build_classifier("small_cnn", "minilm", "image_only", 3, dim=16, image_kw={"image_size": 32})
    assert model.text_encoder is None
    model = build_classifier("small_cnn", "scratch", "early", 3, dim=16, text_kw={"dim": 32, "num_layers": 1, "num_heads": 2})
    assert model.image_encoder is not None and model.text_encoder is not None
    with pytest.raises(MedmmError, match="no text encoder"):
        MultimodalClassifier(image_encoder("small_cnn"), None, create_fusion("early", 256, 8, 16), 2)
