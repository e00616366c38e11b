"""The report generator's attribute / findings heads (medmm.tasks.report.attributes)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from medmm.errors import MedmmError  # noqa: E402
from medmm.tasks.report.attributes import (  # noqa: E402
    AttributeHeads,
    FindingsHeads,
    module_key,
    rename_legacy_keys,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_attribute_heads_tokens_are_probability_weighted_embeddings():
    torch.manual_seed(0)
    heads = AttributeHeads(6, 4, {"plane": ["Axial", "Coronal", "<other>"], "modality.detail": ["CT", "MR"]})
    assert module_key("modality.detail") == "t_modality_detail"
    pooled = torch.randn(5, 6)
    tokens, logits = heads(pooled)
    assert tokens.shape == (5, 2, 4) and [lg.shape for lg in logits] == [(5, 3), (5, 2)]
    p = torch.softmax(logits[0], -1)
    want = p @ heads.embed["t_plane"] + heads.type_embed[0]
    assert torch.allclose(tokens[:, 0], want, atol=1e-6)
    # the tokens carry no gradient into the heads (detached probabilities)
    tokens.sum().backward()
    assert heads.heads["t_plane"][2].weight.grad is None and heads.embed["t_plane"].grad is not None
    with pytest.raises(MedmmError):
        AttributeHeads(6, 4, {})


def test_findings_heads_interpolate_present_and_absent():
    torch.manual_seed(0)
    f = FindingsHeads(6, 4, 3)
    tokens, logits = f(torch.randn(2, 6))
    p = torch.sigmoid(logits)[..., None]
    assert torch.allclose(tokens, p * f.present + (1 - p) * f.absent, atol=1e-6)
    with pytest.raises(MedmmError):
        FindingsHeads(6, 4, 0)


def test_legacy_parameter_names_are_renamed():
    sd = {"task.findings_head.0.weight": 1, "task.findings_present": 2, "task.attribute_heads.t_plane.2.bias": 3,
          "task.attribute_embed.t_plane": 4, "task.attribute_type": 5, "task.decoder.x": 6, "findings_head.0.weight": 7}
    rename_legacy_keys(sd, "task.")
    assert sd == {"task.findings.head.0.weight": 1, "task.findings.present": 2, "task.attribute_model.heads.t_plane.2.bias": 3,
                  "task.attribute_model.embed.t_plane": 4, "task.attribute_model.type_embed": 5, "task.decoder.x": 6,
                  "findings_head.0.weight": 7}  # outside the prefix: untouched
