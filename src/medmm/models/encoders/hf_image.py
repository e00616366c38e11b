"""Hugging Face vision backbones (ViT, Swin, DeiT, CLIP/SigLIP vision towers, DINOv2/RAD-DINO)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from medmm.errors import MedmmError
from medmm.models.encoders.base import ImageEncoder, ImageFeatures, ImageInputSpec, match_channels
from medmm.models.encoders.hf_loading import load_hf, source_record
from medmm.models.encoders.hf_processor import spec_from_processor


def processor_spec(name_or_dir: str, in_channels: int) -> ImageInputSpec:
    """The input spec the model's image processor declares (preprocessor_config.json, read
    through transformers' AutoImageProcessor so its class defaults apply): resize rule, filter,
    centre crop, statistics (`medmm.models.encoders.hf_processor`).

    No silent ImageNet fallback: a folder without a processor config is an error naming the
    kwargs (image_mean, image_std, image_size) that state a plain resize instead.
    """
    folder = Path(name_or_dir).expanduser()  # a hub model's processor file is fetched by load_hf below
    if folder.is_dir() and not (folder / "preprocessor_config.json").is_file():
        raise MedmmError(
            f"{name_or_dir}: no preprocessor_config.json, so the model's input normalisation is unknown; "
            "add the checkpoint's preprocessor_config.json or pass image_mean and image_std (and image_size) "
            "in the encoder kwargs (e.g. image_encoder_kwargs: {image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5]})"
        )
    proc = load_hf("AutoImageProcessor", name_or_dir)
    return spec_from_processor(proc.to_dict(), in_channels, where=f"{name_or_dir}: preprocessor_config.json")


def declared_input(name_or_dir: str, in_channels: int, mean, std, size, model_size: int) -> ImageInputSpec:
    """The encoder's input spec: its processor's, with explicit values winning.

    mean and std both given: the processor is not read; a plain bilinear resize to `size` (else
    the size the model was built for, `model_size`) with those statistics. Otherwise the
    processor's spec, with any given mean, std or size replacing its own (`with_size` keeps a
    crop's resize-to-crop ratio).
    """
    if mean is not None and std is not None:
        return ImageInputSpec(size=size or model_size, in_channels=in_channels, mean=tuple(mean), std=tuple(std))
    spec = processor_spec(name_or_dir, in_channels)
    if mean is not None or std is not None:
        spec = replace(spec, mean=tuple(mean or spec.mean), std=tuple(std or spec.std))
    return spec.with_size(size)


class HFImageEncoder(ImageEncoder):
    """Any transformers vision model whose forward takes `pixel_values`.

    Full CLIP/SigLIP models are reduced to their `vision_model`. pooled = the model's pooler output
    when it has one, else the token mean. Attentions are returned when `output_attentions=True`
    (the model is then loaded with eager attention, which returns probabilities).
    """

    def __init__(
        self,
        name_or_dir: str,
        output_attentions: bool = False,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        image_size: int | None = None,
    ):
        """image_mean / image_std / image_size override the model's preprocessor_config.json
        (required when the folder has none; mean and std together replace the processor by a
        plain bilinear resize)."""
        super().__init__()
        kw = {"attn_implementation": "eager"} if output_attentions else {}
        model = load_hf("AutoModel", name_or_dir, **kw)
        if hasattr(model, "vision_model") and not hasattr(model, "embeddings"):
            model = model.vision_model
        self.model = model
        self.name = name_or_dir
        cfg = getattr(model.config, "vision_config", model.config)
        self.in_channels = int(getattr(cfg, "num_channels", 3))
        patch = getattr(cfg, "patch_size", None)
        self.patch = int(patch[0] if isinstance(patch, (list, tuple)) else patch) if patch else None
        self.output_attentions = output_attentions
        # ViT/Swin/DINOv2/CLIP configs carry hidden_size; ConvNeXt/ResNet carry hidden_sizes.
        self.out_dim = int(getattr(cfg, "hidden_size", None) or cfg.hidden_sizes[-1])
        built = getattr(cfg, "image_size", 224)  # the size the model was built for
        built = int(built[0] if isinstance(built, (list, tuple)) else built)
        self.hf_source = source_record(name_or_dir)
        self.input_spec = declared_input(name_or_dir, self.in_channels, image_mean, image_std, image_size, built)

    def _to_grid(self, t: torch.Tensor, h: int, w: int) -> torch.Tensor | None:
        n = (h // self.patch) * (w // self.patch) if self.patch else 0
        if t.ndim == 4:
            return t
        if not n or t.shape[1] < n:
            return None
        patches = t[:, t.shape[1] - n :]  # prefix tokens (CLS, registers) come first
        return patches.transpose(1, 2).reshape(t.shape[0], t.shape[2], h // self.patch, w // self.patch)

    def forward(self, images: torch.Tensor) -> ImageFeatures:
        x = match_channels(images, self.in_channels)
        kw = {"output_attentions": True} if self.output_attentions else {}  # ConvNets reject the flag
        out = self.model(pixel_values=x, output_hidden_states=True, **kw)
        last = out.last_hidden_state
        hidden = getattr(out, "reshaped_hidden_states", None) or out.hidden_states or ()
        if last.ndim == 4:  # convolutional backbones return (B, C, H, W)
            tokens = last.flatten(2).transpose(1, 2)
        else:
            tokens = last
        pooled = getattr(out, "pooler_output", None)
        if pooled is None or pooled.ndim != 2:
            pooled = tokens.mean(dim=1)
        h, w = x.shape[-2:]
        maps: list[torch.Tensor] = []
        if hidden:
            step = max(1, (len(hidden) - 1) // 4)
            for i in range(step, len(hidden), step):
                g = self._to_grid(hidden[i], h, w)
                if g is not None:
                    maps.append(g)
            maps = maps[-4:]
        atts = list(out.attentions) if self.output_attentions and getattr(out, "attentions", None) else []
        return ImageFeatures(pooled=pooled, tokens=tokens, maps=maps, attentions=atts)
