"""The model registry: every encoder listed and creatable, pretrained loading by file."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medmm.errors import MedmmError
from medmm.models.registry import create_model, list_models, load_model, model_kind, register_model, save_model


def test_registry_lists_encoders_by_kind():
    assert {"small_cnn", "resnet18", "resnet50", "densenet121", "vit_small", "vit_base"} <= set(list_models("image_encoder"))
    assert {"minilm", "scratch"} <= set(list_models("text_encoder"))
    assert model_kind("resnet18") == "image_encoder"
    with pytest.raises(MedmmError, match="known"):
        create_model("resnet1000")


def test_create_save_and_reload_by_metadata(tmp_path):
    model = create_model("small_cnn", in_channels=1, widths=(4, 8), image_size=32)
    digest = save_model(model, tmp_path / "m.pt", "small_cnn", config={"in_channels": 1, "widths": [4, 8], "image_size": 32}, licence="Apache-2.0")
    again = load_model(tmp_path / "m.pt", sha256=digest)
    assert again.weights_metadata["input_spec"] == {"size": 32, "in_channels": 1, "mean": [0.5], "std": [0.25], "interpolation": "bilinear"}
    x = torch.randn(2, 1, 32, 32)
    model.eval(), again.eval()
    assert torch.allclose(model(x).pooled, again(x).pooled)
    with pytest.raises(MedmmError, match="weights are for 'small_cnn', not 'resnet18'"):
        create_model("resnet18", pretrained=tmp_path / "m.pt")
    with pytest.raises(MedmmError, match="no default pretrained weights"):
        create_model("small_cnn", pretrained=True)


class _Toy(nn.Module):
    def __init__(self, width: int = 3):
        super().__init__()
        self.lin = nn.Linear(width, 2)


def test_registered_task_model_with_default_weights(tmp_path):
    save_model(_Toy(4), tmp_path / "toy.pt", "toy_for_test", config={"width": 4})
    register_model("toy_for_test", _Toy, kind="task", weights=str(tmp_path / "toy.pt"))
    assert "toy_for_test" in list_models("task")
    model = create_model("toy_for_test", pretrained=True, width=4)
    assert model.weights_metadata["architecture"] == "toy_for_test"
    with pytest.raises(MedmmError, match="registered twice"):
        register_model("toy_for_test", _Toy)
