"""Models: encoders, fusion blocks, heads and the model registry. Knows no task or training loop.

    from medmm.models import create_image_encoder, create_text_encoder, create_fusion, MultimodalClassifier
"""

from medmm.models.encoders import (
    ImageEncoder,
    ImageFeatures,
    ImageInputSpec,
    TextEncoder,
    TextFeatures,
    create_image_encoder,
    create_text_encoder,
    list_image_encoders,
    list_text_encoders,
)
from medmm.models.fusion import Fusion, FusionOutput, create_fusion, list_fusions
from medmm.models.multimodal import ClassifierOutput, MultimodalClassifier, build_classifier

__all__ = [
    "ClassifierOutput",
    "Fusion",
    "FusionOutput",
    "ImageEncoder",
    "ImageFeatures",
    "ImageInputSpec",
    "MultimodalClassifier",
    "TextEncoder",
    "TextFeatures",
    "build_classifier",
    "create_fusion",
    "create_image_encoder",
    "create_text_encoder",
    "list_fusions",
    "list_image_encoders",
    "list_text_encoders",
]
