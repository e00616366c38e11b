"""Hugging Face vision backbones (ViT, Swin, DeiT, CLIP/SigLIP vision towers, DINOv2/RAD-DINO)."""

from __future__ import annotations

import torch

from medmm.models.encoders.base import ImageEncoder, ImageFeatures, ImageInputSpec, match_channels
from medmm.models.encoders.hf_loading import load_hf


class HFImageEncoder(ImageEncoder):
    """Any transformers vision model whose forward takes `pixel_values`.

    Full CLIP/SigLIP models are reduced to their `vision_model`. pooled = the model's pooler output
    when it has one, else the token mean. Attentions are returned when `output_attentions=True`
    (the model is then loaded with eager attention, which returns probabilities).
    """

    def __init__(self, name_or_dir: str, output_attentions: bool = False):
        super().__init__()
        kw = {"attn_implementation": "eager"} if output_attentions else {}
        model = load_hf("AutoModel", name_or_dir, **kw)
        if hasattr(model, "vision_model") and not hasattr(model, "embeddings"):
            model = model.vision_model
        self.model = model
        self.name = name_or_dir
        cfg = getattr(model.config, "vision_config", model.config)
        self.in_channels = int(getattr(cfg, "num_channels", 3))
        size = getattr(cfg, "image_size", 224)
        size = int(size[0] if isinstance(size, (list, tuple)) else size)
        patch = getattr(cfg, "patch_size", None)
        self.patch = int(patch[0] if isinstance(patch, (list, tuple)) else patch) if patch else None
        self.output_attentions = output_attentions
        # ViT/Swin/DINOv2/CLIP configs carry hidden_size; ConvNeXt/ResNet carry hidden_sizes.
        self.out_dim = int(getattr(cfg, "hidden_size", None) or cfg.hidden_sizes[-1])
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        try:
            proc = load_hf("AutoImageProcessor", name_or_dir)
            mean, std = tuple(proc.image_mean), tuple(proc.image_std)
        except Exception:  # noqa: BLE001 - no usable preprocessor_config.json: ImageNet statistics, stated in input_spec
            pass
        self.input_spec = ImageInputSpec(size=size, in_channels=self.in_channels, mean=mean, std=std)

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
