"""Image and text encoders behind one interface (see base.py), created by name (see factory.py)."""

from medmm.models.encoders import cnn, hf_text, scratch_text, vit  # noqa: F401  (register encoders)
from medmm.models.encoders.base import ImageEncoder, ImageFeatures, ImageInputSpec, TextEncoder, TextFeatures
from medmm.models.encoders.factory import (
    create_image_encoder,
    create_text_encoder,
    list_image_encoders,
    list_text_encoders,
    register_image_encoder,
    register_text_encoder,
)

__all__ = [
    "ImageEncoder",
    "ImageFeatures",
    "ImageInputSpec",
    "TextEncoder",
    "TextFeatures",
    "create_image_encoder",
    "create_text_encoder",
    "list_image_encoders",
    "list_text_encoders",
    "register_image_encoder",
    "register_text_encoder",
]
