"""Name -> constructor registries for image and text encoders.

`create_image_encoder("resnet18")`, `create_text_encoder("minilm")`; names starting with `hf:`
load a Hugging Face model by hub name or local directory. A new encoder is one decorated class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medmm.errors import MedmmError
from medmm.models.encoders.base import ImageEncoder, TextEncoder
from medmm.registry import Registry

_HF = ", hf:<hub name or dir>"
# Importing medmm.models.encoders registers the built-in encoders (cnn, vit, scratch_text, hf_text).
_IMAGE: Registry[Callable[..., ImageEncoder]] = Registry("image encoder", discover=("medmm.models.encoders",), hint=_HF)
_TEXT: Registry[Callable[..., TextEncoder]] = Registry("text encoder", discover=("medmm.models.encoders",), hint=_HF)


def register_image_encoder(name: str, **meta: Any):
    """Decorator registering an ImageEncoder constructor under `name` (with optional metadata)."""
    return _IMAGE.register(name, **meta)


def register_text_encoder(name: str, **meta: Any):
    """Decorator registering a TextEncoder constructor under `name` (with optional metadata)."""
    return _TEXT.register(name, **meta)


def list_image_encoders() -> list[str]:
    """Registered image encoder names (plus the `hf:<hub name>` family, not listed)."""
    return _IMAGE.names()


def list_text_encoders() -> list[str]:
    """Registered text encoder names (plus the `hf:<hub name>` family, not listed)."""
    return _TEXT.names()


def create_image_encoder(name: str, pretrained: bool | str = False, in_channels: int = 3, **kw: Any) -> ImageEncoder:
    """Build an image encoder by name.

    pretrained: False (random init), True (the encoder's own pretrained source; HF encoders always
    load their hub/local weights) or a path to a medmm weights file (checksum-verified, strict load).
    in_channels: channels of the stem; inputs with 1 or 3 channels are adapted either way.
    """
    if name.startswith("hf:"):
        from medmm.models.encoders.hf_image import HFImageEncoder

        return HFImageEncoder(name[3:], **kw)
    build = _IMAGE[name]  # unknown name -> "unknown image encoder ...; known: ..., hf:<hub name or dir>"
    if pretrained is True:
        raise MedmmError(
            f"no pretrained weights are bundled for image encoder {name!r}; pass pretrained=<path to a "
            "medmm weights file> or use an hf:<hub name or local dir> encoder"
        )
    enc = build(in_channels=in_channels, **kw)
    if isinstance(pretrained, str):
        from medmm.models.pretrained import load_into

        load_into(enc, pretrained)
    return enc


def create_text_encoder(name: str, pretrained: bool | str = False, **kw: Any) -> TextEncoder:
    """Build a text encoder by name (`minilm`, `scratch`, `hf:<hub name or dir>`).

    pretrained: a path to a medmm weights file loads it strictly after construction.
    """
    if name.startswith("hf:"):
        from medmm.models.encoders.hf_text import HFTextEncoder

        return HFTextEncoder(name[3:], **kw)
    enc = _TEXT[name](**kw)  # unknown name -> "unknown text encoder ...; known: ..., hf:<hub name or dir>"
    if isinstance(pretrained, str):
        from medmm.models.pretrained import load_into

        load_into(enc, pretrained)
    return enc
