"""Name -> constructor registries for image and text encoders.

`create_image_encoder("resnet18")`, `create_text_encoder("minilm")`; names starting with `hf:`
load a Hugging Face model by hub name or local directory. A new encoder is one decorated class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medmm.errors import MedmmError
from medmm.models.encoders.base import ImageEncoder, TextEncoder

_IMAGE: dict[str, Callable[..., ImageEncoder]] = {}
_TEXT: dict[str, Callable[..., TextEncoder]] = {}


def register_image_encoder(name: str):
    """Decorator registering an ImageEncoder constructor under `name`."""

    def wrap(fn):
        if name in _IMAGE:
            raise MedmmError(f"image encoder {name!r} registered twice")
        _IMAGE[name] = fn
        return fn

    return wrap


def register_text_encoder(name: str):
    """Decorator registering a TextEncoder constructor under `name`."""

    def wrap(fn):
        if name in _TEXT:
            raise MedmmError(f"text encoder {name!r} registered twice")
        _TEXT[name] = fn
        return fn

    return wrap


def list_image_encoders() -> list[str]:
    """Registered image encoder names (plus the `hf:<hub name>` family, not listed)."""
    return sorted(_IMAGE)


def list_text_encoders() -> list[str]:
    """Registered text encoder names (plus the `hf:<hub name>` family, not listed)."""
    return sorted(_TEXT)


def create_image_encoder(name: str, pretrained: bool | str = False, in_channels: int = 3, **kw: Any) -> ImageEncoder:
    """Build an image encoder by name.

    pretrained: False (random init), True (the encoder's own pretrained source; HF encoders always
    load their hub/local weights) or a path to a medmm weights file (checksum-verified, strict load).
    in_channels: channels of the stem; inputs with 1 or 3 channels are adapted either way.
    """
    if name.startswith("hf:"):
        from medmm.models.encoders.hf_image import HFImageEncoder

        return HFImageEncoder(name[3:], **kw)
    if name not in _IMAGE:
        raise MedmmError(f"unknown image encoder {name!r}; known: {', '.join(list_image_encoders())}, hf:<hub name or dir>")
    if pretrained is True:
        raise MedmmError(
            f"no pretrained weights are bundled for image encoder {name!r}; pass pretrained=<path to a "
            "medmm weights file> or use an hf:<hub name or local dir> encoder"
        )
    enc = _IMAGE[name](in_channels=in_channels, **kw)
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
    if name not in _TEXT:
        raise MedmmError(f"unknown text encoder {name!r}; known: {', '.join(list_text_encoders())}, hf:<hub name or dir>")
    enc = _TEXT[name](**kw)
    if isinstance(pretrained, str):
        from medmm.models.pretrained import load_into

        load_into(enc, pretrained)
    return enc
