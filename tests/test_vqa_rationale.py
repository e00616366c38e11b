"""VQA rationale: top image cells (grid rows/cols) and input tokens read from a fusion's attention maps."""

from __future__ import annotations

import torch

from medmm.tasks.vqa.rationale import attention_evidence, token_string


class _Tok:
    def convert_ids_to_tokens(self, i: int) -> str:
        return f"w{i}"


def test_cross_attention_maps_give_regions_on_the_grid_and_tokens():
    att = torch.zeros(1, 3, 4)  # (B, L, N): 3 text tokens over a 2x2 grid
    att[0, 0, 3] = 1.0
    att[0, 1, 3] = 1.0
    att[0, 2, 0] = 5.0  # a padding token: must not count
    img_to_txt = torch.tensor([[[0.1, 0.7, 0.2]] * 4])  # (B, N, L)
    ids, mask = torch.tensor([[7, 8, 0]]), torch.tensor([[1, 1, 0]])
    ev = attention_evidence({"text_to_image_attention": att, "image_to_text_attention": img_to_txt}, ids, mask, 2, _Tok())
    assert ev[0]["image_regions"][0] == {"row": 1, "col": 1, "grid": [2, 2], "weight": 1.0}
    assert [t["token"] for t in ev[0]["text_tokens"]] == ["w8", "w7"]  # the padding token is never listed


def test_spatial_attention_and_non_square_maps():
    ev = attention_evidence({"spatial_attention": torch.tensor([[0.1, 0.6, 0.3]])}, torch.tensor([[1]]), torch.tensor([[1]]), 1)
    assert ev == [{"image_regions": [{"token": 1, "weight": 0.6}]}]
    assert attention_evidence({}, torch.tensor([[1]]), torch.tensor([[1]]), 3) == [{}]


def test_token_string_without_tokenizer_is_the_id():
    assert token_string(None, 5) == "5" and token_string(_Tok(), 5) == "w5"


def test_ban_bilinear_maps_give_regions_and_words():
    att = torch.zeros(1, 2, 4, 3)  # (B, glimpses, N, L): 2 glimpses over a 2x2 grid x 3 tokens
    att[0, 0, 2, 1] = 1.0  # glimpse 0: region 2 with word 1
    att[0, 1, 2, 0] = 0.75  # glimpse 1: region 2 with word 0, region 3 with word 1
    att[0, 1, 3, 1] = 0.25
    ids, mask = torch.tensor([[7, 8, 0]]), torch.tensor([[1, 1, 0]])
    ev = attention_evidence({"bilinear_attention": att}, ids, mask, 2, _Tok())
    assert ev[0]["image_regions"] == [{"row": 1, "col": 0, "grid": [2, 2], "weight": 0.875},
                                      {"row": 1, "col": 1, "grid": [2, 2], "weight": 0.125}]
    assert ev[0]["text_tokens"] == [{"token": "w8", "weight": 0.625}, {"token": "w7", "weight": 0.375}]


def test_ban_fusion_rationale_is_a_distribution_without_padding():
    from medmm.models.encoders.base import ImageFeatures, TextFeatures
    from medmm.models.fusion import create_fusion

    torch.manual_seed(0)
    fusion = create_fusion("ban", image_dim=8, text_dim=6, dim=16).eval()
    image = ImageFeatures(pooled=torch.randn(2, 8), tokens=torch.randn(2, 9, 8))  # a 3x3 grid
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    text = TextFeatures(pooled=torch.randn(2, 6), tokens=torch.randn(2, 4, 6), mask=mask)
    extras = fusion(image, text).extras
    ev = attention_evidence(extras, torch.tensor([[1, 2, 3, 0], [4, 5, 6, 7]]), mask, 9, _Tok())
    for rec in ev:
        assert len(rec["image_regions"]) == 9 and rec["image_regions"][0]["grid"] == [3, 3]
        assert abs(sum(r["weight"] for r in rec["image_regions"]) - 1.0) < 1e-3
    assert {t["token"] for t in ev[0]["text_tokens"]} == {"w1", "w2", "w3"}  # the padded word never appears
    assert len(ev[1]["text_tokens"]) == 4
