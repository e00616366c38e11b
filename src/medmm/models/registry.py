"""The model registry (open_clip/timm habit): `create_model(name, pretrained=...)`, `list_models()`.

It covers every registered image and text encoder, plus whatever other modules register a
constructor with `register_model` (task models). Weights are medmm weights files (see
pretrained.py): checksum-verified, strictly loaded, metadata attached as `model.weights_metadata`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from medmm.errors import MedmmError
from medmm.models.pretrained import load_into, save_weights
from medmm.registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    """A registered constructor, its kind and the default weights (path + sha256), if any."""

    name: str
    factory: Callable[..., nn.Module]
    kind: str
    weights: str | None = None
    sha256: str | None = None


# factory -> metadata (kind, default weights and their sha256)
_MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def register_model(name: str, factory: Callable[..., nn.Module], kind: str = "model", weights: str | None = None, sha256: str | None = None) -> None:
    """Register a model constructor under `name` (kind: "image_encoder", "text_encoder", "task", ...)."""
    _MODELS.register(name, factory, kind=kind, weights=weights, sha256=sha256)


def _ensure_builtin() -> None:
    from medmm.models.encoders.factory import (
        create_image_encoder,
        create_text_encoder,
        list_image_encoders,
        list_text_encoders,
    )

    for kind, names, create in (("image_encoder", list_image_encoders(), create_image_encoder),
                                ("text_encoder", list_text_encoders(), create_text_encoder)):
        for name in names:
            if name not in _MODELS:
                _MODELS.register(name, lambda _n=name, _c=create, **kw: _c(_n, **kw), kind=kind, weights=None, sha256=None)


def _entry(name: str) -> ModelEntry:
    _ensure_builtin()
    e = _MODELS.entry(name)
    return ModelEntry(e.name, e.obj, e.meta["kind"], e.meta["weights"], e.meta["sha256"])


def list_models(kind: str | None = None) -> list[str]:
    """Registered model names, optionally of one kind ("image_encoder", "text_encoder", ...)."""
    _ensure_builtin()
    return _MODELS.names() if kind is None else _MODELS.names(kind=kind)


def model_kind(name: str) -> str:
    """The kind a registered model was registered with."""
    return _entry(name).kind


def create_model(name: str, pretrained: bool | str | Path = False, sha256: str | None = None, **kw: Any) -> nn.Module:
    """Build model `name` with constructor kwargs `kw`.

    pretrained: False (random init); True (the registered default weights; an error if none);
    or a path to a medmm weights file. The weights' metadata must name this architecture (when
    it names one), the state_dict must match exactly, and the sha256 is verified.
    """
    entry = _entry(name)
    if pretrained is True:
        if entry.weights is None:
            raise MedmmError(f"no default pretrained weights are registered for {name!r}; pass pretrained=<weights file>")
        pretrained, sha256 = entry.weights, sha256 or entry.sha256
    model = entry.factory(**kw)
    if pretrained:
        load_into(model, pretrained, sha256=sha256, architecture=name)
    return model


def save_model(model: nn.Module, path: str | Path, name: str, config: dict[str, Any] | None = None, **metadata: Any) -> str:
    """Save `model` (registered as `name`, built with kwargs `config`) with metadata; returns sha256.

    The input spec of an image encoder is recorded automatically."""
    from medmm.models.pretrained import input_spec_metadata

    meta: dict[str, Any] = {"architecture": name, "config": config or {}}
    if getattr(model, "input_spec", None) is not None:
        meta["input_spec"] = input_spec_metadata(model.input_spec)
    meta.update(metadata)
    return save_weights(model, path, meta)


def load_model(path: str | Path, sha256: str | None = None) -> nn.Module:
    """Rebuild a model from a weights file alone (architecture + config from its metadata)."""
    from medmm.models.pretrained import load_weights

    _, meta = load_weights(path, sha256)
    if "architecture" not in meta:
        raise MedmmError(f"{path}: metadata has no 'architecture'; use create_model(name, pretrained=path)")
    return create_model(meta["architecture"], pretrained=path, sha256=sha256, **meta.get("config", {}))
