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
from medmm.models.peft_utils import apply_lora, count_parameters, freeze, freeze_except, unfreeze
from medmm.models.pretrained import load_weights, save_weights
from medmm.models.registry import create_model, list_models, load_model, register_model, save_model

__all__ = [
    "apply_lora",
    "count_parameters",
    "create_model",
    "freeze",
    "freeze_except",
    "list_models",
    "load_model",
    "load_weights",
    "register_model",
    "save_model",
    "save_weights",
    "unfreeze",
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
