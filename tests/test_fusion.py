"""Fusion blocks: shapes and gradients for every registered fusion, the MoE load-balancing loss,
late fusion really averaging per-modality logits, and padding invariance of cross-attention."""

from __future__ import annotations

import pytest
import torch

from medmm.errors import MedmmError
from medmm.models.encoders.base import ImageFeatures, TextFeatures
from medmm.models.fusion import create_fusion, list_fusions, switch_load_balancing_loss
from medmm.models.multimodal import MultimodalClassifier

IMG_DIM, TXT_DIM, DIM = 24, 20, 16


def feats(b: int = 3, n: int = 5, length: int = 6, grad: bool = True):
    torch.manual_seed(0)
    img = ImageFeatures(pooled=torch.randn(b, IMG_DIM, requires_grad=grad), tokens=torch.randn(b, n, IMG_DIM, requires_grad=grad))
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[0, 3:] = False  # padded text
    txt = TextFeatures(pooled=torch.randn(b, TXT_DIM, requires_grad=grad), tokens=torch.randn(b, length, TXT_DIM, requires_grad=grad), mask=mask)
    return img, txt


def test_all_required_fusions_are_registered():
    assert {"image_only", "text_only", "early", "late", "cross_attention", "film", "gated", "moe"} <= set(list_fusions())
    with pytest.raises(MedmmError, match="known"):
        create_fusion("concat", IMG_DIM, TXT_DIM, DIM)


@pytest.mark.parametrize("name", list_fusions())
def test_fusion_shapes_and_gradients(name):
    img, txt = feats()
    fusion = create_fusion(name, IMG_DIM, TXT_DIM, DIM)
    out = fusion(img, txt)
    assert out.pooled.shape == (3, DIM) and fusion.out_dim == DIM
    assert out.aux_loss.ndim == 0 and torch.isfinite(out.aux_loss)
    if out.tokens is not None:
        assert out.tokens.shape[0] == 3 and out.tokens.shape[2] == DIM
        if out.tokens_mask is not None:
            assert out.tokens_mask.shape == out.tokens.shape[:2]
    (out.pooled.square().mean() + out.aux_loss).backward()
    used = [t for t, u in ((img.pooled, fusion.uses_image), (txt.pooled, fusion.uses_text)) if u]
    used += [t for t, u in ((img.tokens, fusion.uses_image), (txt.tokens, fusion.uses_text)) if u]
    assert any(t.grad is not None and t.grad.abs().sum() > 0 for t in used)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in fusion.parameters())


def test_fusions_needing_both_modalities_say_so():
    img, _ = feats()
    for name in ("cross_attention", "film", "gated"):
        with pytest.raises(MedmmError, match="needs text"):
            create_fusion(name, IMG_DIM, TXT_DIM, DIM)(img, None)


@pytest.mark.parametrize("name", ["early", "late", "moe"])
def test_fusions_tolerating_a_missing_modality(name):
    img, txt = feats()
    fusion = create_fusion(name, IMG_DIM, TXT_DIM, DIM)
    assert fusion(img, None).pooled.shape == (3, DIM)
    assert fusion(None, txt).pooled.shape == (3, DIM)


def test_switch_loss_is_minimal_for_balanced_and_maximal_for_collapsed_routing():
    e, t = 4, 64
    uniform = torch.full((t, e), 1 / e)
    balanced_index = torch.arange(t) % e
    assert switch_load_balancing_loss(uniform, balanced_index).item() == pytest.approx(1.0)
    confident_balanced = torch.nn.functional.one_hot(balanced_index, e).float() * 0.96 + 0.01  # rows sum to 1
    assert switch_load_balancing_loss(confident_balanced, balanced_index).item() == pytest.approx(1.0)
    collapsed = torch.zeros(t, e)
    collapsed[:, 0] = 1.0
    assert switch_load_balancing_loss(collapsed, torch.zeros(t, dtype=torch.long)).item() == pytest.approx(e)


def test_moe_aux_loss_grows_when_the_router_collapses():
    img, txt = feats(grad=False)
    moe = create_fusion("moe", IMG_DIM, TXT_DIM, DIM, num_experts=4, load_balance_weight=1.0).eval()
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.bias.zero_()
        uniform = moe(img, txt)
        moe.router.bias.copy_(torch.tensor([20.0, 0.0, 0.0, 0.0]))
        collapsed = moe(img, txt)
    assert uniform.extras["load_balancing_loss"].item() == pytest.approx(1.0, abs=1e-4)
    assert collapsed.extras["load_balancing_loss"].item() == pytest.approx(4.0, abs=1e-3)
    assert collapsed.extras["expert_fraction"][0].item() == 1.0
    assert collapsed.aux_loss.item() > uniform.aux_loss.item()
    assert uniform.extras["router_probs"].shape == (3, 5 + 6, 4)


def test_moe_top2_routing_runs_and_rejects_bad_k():
    img, txt = feats()
    out = create_fusion("moe", IMG_DIM, TXT_DIM, DIM, num_experts=3, top_k=2)(img, txt)
    out.pooled.sum().backward()
    with pytest.raises(ValueError):
        create_fusion("moe", IMG_DIM, TXT_DIM, DIM, num_experts=3, top_k=4)


class _Fixed(torch.nn.Module):
    """A stand-in encoder returning fixed features, so the test checks only fusion + heads."""

    def __init__(self, f):
        super().__init__()
        self.f, self.out_dim = f, (f.pooled.shape[1])

    def forward(self, *args):
        return self.f


@pytest.mark.parametrize("combine", ["mean", "weighted"])
def test_late_fusion_classifier_averages_per_modality_logits(combine):
    img, txt = feats(grad=False)
    fusion = create_fusion("late", IMG_DIM, TXT_DIM, DIM, combine=combine)
    model = MultimodalClassifier(_Fixed(img), _Fixed(txt), fusion, num_outputs=5).eval()
    if combine == "weighted":
        with torch.no_grad():
            fusion.modality_logit_weights.copy_(torch.tensor([1.0, -1.0]))
    out = model(torch.zeros(3, 1, 8, 8), torch.zeros(3, 6, dtype=torch.long), torch.ones(3, 6))
    image_logits = model.heads["image"](fusion.image_branch(img.pooled))
    text_logits = model.heads["text"](fusion.text_branch(txt.pooled))
    w = torch.softmax(torch.tensor([1.0, -1.0]), 0) if combine == "weighted" else torch.tensor([0.5, 0.5])
    assert torch.allclose(out.logits, w[0] * image_logits + w[1] * text_logits, atol=1e-6)
    assert out.extras["modality_logits"].shape == (3, 2, 5)
    # Without text, the prediction is the image head's alone.
    only_image = model(torch.zeros(3, 1, 8, 8))
    assert torch.allclose(only_image.logits, image_logits, atol=1e-6)


def test_late_fusion_stacking_starts_as_the_mean_and_is_learnable():
    img, txt = feats(grad=False)
    model = MultimodalClassifier(_Fixed(img), _Fixed(txt), create_fusion("late", IMG_DIM, TXT_DIM, DIM, combine="stack"), 4).eval()
    out = model(torch.zeros(3, 1, 8, 8), torch.zeros(3, 6, dtype=torch.long))
    per = out.extras["modality_logits"]
    assert torch.allclose(out.logits, per.mean(dim=1), atol=1e-6)
    out.logits.sum().backward()
    assert model.stacker.weight.grad is not None
    alone = model(torch.zeros(3, 1, 8, 8))
    assert torch.allclose(alone.logits, alone.extras["modality_logits"][:, 0], atol=1e-6)


def test_cross_attention_ignores_padding_tokens():
    img, txt = feats(grad=False)
    fusion = create_fusion("cross_attention", IMG_DIM, TXT_DIM, DIM, layers=2).eval()
    with torch.no_grad():
        a = fusion(img, txt)
        noisy = TextFeatures(pooled=txt.pooled, tokens=txt.tokens.clone(), mask=txt.mask)
        noisy.tokens[0, 3:] = 1e3  # garbage in padded positions of sample 0
        b = fusion(img, noisy)
    assert torch.allclose(a.pooled, b.pooled, atol=1e-5)
    att = a.extras["image_to_text_attention"]
    assert att.shape == (3, 5, 6) and torch.all(att[0, :, 3:] == 0)


def test_film_starts_as_identity_modulation():
    img, txt = feats(grad=False)
    out = create_fusion("film", IMG_DIM, TXT_DIM, DIM)(img, txt)
    assert torch.allclose(out.extras["film_gamma"], torch.ones(3, DIM)) and torch.allclose(out.extras["film_beta"], torch.zeros(3, DIM))


def test_gated_fusion_exposes_its_gates():
    img, txt = feats(grad=False)
    out = create_fusion("gated", IMG_DIM, TXT_DIM, DIM)(img, txt)
    assert out.extras["spatial_attention"].shape == (3, 5)
    assert torch.allclose(out.extras["spatial_attention"].sum(-1), torch.ones(3))
    g = out.extras["channel_gate"]
    assert g.shape == (3, DIM) and bool(((g > 0) & (g < 1)).all())


def test_registry_entries_declare_the_modalities_their_fusion_uses():
    from medmm.models.fusion import fusion_info

    for name in list_fusions():
        info = fusion_info(name)
        block = create_fusion(name, 8, 8, 16)
        assert (info.uses_image, info.uses_text) == (block.uses_image, block.uses_text), name
    assert [f for f in list_fusions() if fusion_info(f).unimodal] == ["image_only", "text_only"]


def test_the_default_ablation_covers_every_registered_fusion():
    from medmm.ablation import default_fusions, unimodal_fusions

    assert sorted(default_fusions()) == list_fusions() and "film" in default_fusions()
    assert default_fusions()[:2] == unimodal_fusions() == ["image_only", "text_only"]


@pytest.mark.parametrize("name", list_fusions(spatial=True))
def test_spatial_fusions_keep_the_feature_map_shape_and_pass_gradients(name):
    from medmm.models.fusion import fusion_info

    info = fusion_info(name, spatial=True)
    assert info.spatial and info.uses_image and info.uses_text
    assert info.meta["placement"] in ("every_level", "deepest_levels")
    _, txt = feats()
    kw = {"heads": 2} if "heads" in info.meta.get("options", ()) else {}
    block = create_fusion(name, 8, TXT_DIM, 8, spatial=True, **kw)
    x = torch.randn(3, 8, 4, 4, requires_grad=True)
    out = block(x, txt)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().mean().backward()
    assert txt.pooled.grad is not None or txt.tokens.grad is not None
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_vector_and_spatial_fusions_are_not_mixed_up():
    assert {"spatial_film", "spatial_attention"} <= set(list_fusions(spatial=True))
    assert not set(list_fusions()) & set(list_fusions(spatial=True))
    with pytest.raises(MedmmError, match="'spatial_film' is not a vector fusion; known: .*early"):
        create_fusion("spatial_film", IMG_DIM, TXT_DIM, DIM)
    with pytest.raises(MedmmError, match="'film' is not a spatial conditioning block.*known: spatial_attention"):
        create_fusion("film", 8, TXT_DIM, 8, spatial=True)


def test_the_unet_takes_its_text_conditioning_from_the_fusion_registry(monkeypatch):
    from medmm.models import segmentation
    from medmm.models.fusion import base, register_fusion

    monkeypatch.setattr(base, "_FUSIONS", base._FUSIONS.copy())  # a throw-away registration

    @register_fusion("spatial_gate", spatial=True, placement="deepest_levels")
    class Gate(torch.nn.Module):
        def __init__(self, image_dim, text_dim, dim=None):
            super().__init__()
            self.proj = torch.nn.Linear(text_dim, image_dim)

        def forward(self, x, text):
            return x * torch.sigmoid(self.proj(text.pooled))[:, :, None, None]

    assert segmentation.conditionings() == ["attention", "film", "gate"]
    unet = segmentation.TextGuidedUNet(1, 1, (4, 8, 16), text_dim=TXT_DIM, conditioning="film+gate", attention_levels=1)
    assert sorted(unet.film) == ["0", "1", "2"] and sorted(unet.gate) == ["2"]  # placement from the metadata
    _, txt = feats()
    assert unet(torch.randn(3, 1, 16, 16), txt).shape == (3, 1, 16, 16)
    with pytest.raises(ValueError, match=r"spatial fusions joined by '\+' \(attention, film, gate\), got 'film\+cross'"):
        segmentation.TextGuidedUNet(1, 1, (4, 8), text_dim=TXT_DIM, conditioning="film+cross")
