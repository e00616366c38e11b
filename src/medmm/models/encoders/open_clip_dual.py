"""An open_clip dual encoder (BiomedCLIP) as transformers modules, usable where HFClipDualEncoder is.

The image tower is medmm's copy of timm's ViT with timm's parameter names (class token after the
final LayerNorm, then open_clip's linear projection); the text tower is the transformers model of
the checkpoint's `hf_model_name` config (PubMedBERT for BiomedCLIP) pooled at [CLS], then open_clip's
projection (an MLP for BiomedCLIP). Outputs match open_clip's `encode_image` / `encode_text`
(checked against open_clip in tests/test_open_clip_dual.py where open_clip is installed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medmm.data.transforms import ImageInputSpec
from medmm.errors import BadInputError, MedmmError, require
from medmm.fileio import sha256_file
from medmm.models.encoders.hf_loading import load_hf
from medmm.models.encoders.open_clip_format import OpenClipSpec, convert_state_dict, read_spec, resolve_files
from medmm.models.encoders.open_clip_vit import TimmViT


def _text_source(name: str, folder: Path) -> str:
    # a relative hf_model_name that exists beside the config (a self-contained folder) is read from there
    local = folder / name
    return str(local) if not Path(name).is_absolute() and (local / "config.json").is_file() else name


def _text_projection(spec: OpenClipSpec, width: int) -> nn.Module:
    if spec.text_proj == "mlp":  # open_clip: hidden = (d_model + embed_dim) // 2, GELU between
        hidden = (width + spec.embed_dim) // 2
        return nn.Sequential(nn.Linear(width, hidden, bias=spec.text_proj_bias), nn.GELU(),
                             nn.Linear(hidden, spec.embed_dim, bias=spec.text_proj_bias))
    if spec.text_proj == "linear":
        return nn.Linear(width, spec.embed_dim, bias=spec.text_proj_bias)
    if width != spec.embed_dim:
        raise MedmmError(f"text width {width} != embed_dim {spec.embed_dim} and hf_proj_type is null")
    return nn.Identity()


class OpenClipTowers(nn.Module):
    """The two towers and projections, randomly initialised from an OpenClipSpec and a text config."""

    def __init__(self, spec: OpenClipSpec, text_config: Any):
        super().__init__()
        tf = require("transformers", "train", "open_clip checkpoints")
        self.vision_model = TimmViT(spec.image_size, spec.patch_size, spec.vit_width, spec.vit_depth, spec.vit_heads)
        self.image_proj = nn.Linear(spec.vit_width, spec.embed_dim, bias=spec.image_proj_bias)
        # as open_clip's HFTextEncoder: the model's own pooler exists only when it is the one used
        self.text_model = tf.AutoModel.from_config(text_config, add_pooling_layer=spec.text_pooler == "cls_pooler")
        self.text_proj = _text_projection(spec, int(text_config.hidden_size))
        self.logit_scale = nn.Parameter(torch.tensor(float(torch.log(torch.tensor(1 / 0.07)))))

    def load_open_clip(self, state: dict[str, Any]) -> None:
        """Load open_clip-named weights strictly (every tensor mapped, every parameter filled)."""
        parts = convert_state_dict(state)
        for name, module in (("vision", self.vision_model), ("image_proj", self.image_proj),
                             ("text", self.text_model), ("text_proj", self.text_proj)):
            try:
                module.load_state_dict(parts[name], strict=True)
            except RuntimeError as exc:
                raise MedmmError(f"open_clip weights do not fit the {name} tower: {str(exc).splitlines()[0]} "
                                 f"{' '.join(str(exc).split()[-40:])}") from exc
        if "" not in parts["logit_scale"]:
            raise MedmmError("open_clip weights have no logit_scale")
        with torch.no_grad():
            self.logit_scale.copy_(parts["logit_scale"][""].reshape(()))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """safetensors, or a pickle read with weights_only=True (no code runs from the file)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


class OpenClipDualEncoder(nn.Module):
    """`encode_image` / `encode_text` -> L2-normalised embeddings in the checkpoint's joint space.

    name_or_dir: `hf-hub:org/name`, `org/name` or a folder with open_clip_config.json + weights.
    """

    def __init__(self, name_or_dir: str, learn_temperature: bool = True):
        super().__init__()
        try:
            config_path, weights = resolve_files(name_or_dir)
            spec = read_spec(config_path)
            text_name = _text_source(spec.text_name, config_path.parent)
            text_config = load_hf("AutoConfig", text_name)
            self.model = OpenClipTowers(spec, text_config)
            self.model.load_open_clip(load_weights(weights))
            tok_dir = config_path.parent
            has_tok = (tok_dir / "tokenizer_config.json").is_file() or (tok_dir / "vocab.txt").is_file()
            tok_name = str(tok_dir) if has_tok else _text_source(spec.tokenizer_name, config_path.parent)
            self.tokenizer = load_hf("AutoTokenizer", tok_name)
        except MedmmError as exc:
            raise BadInputError(name_or_dir, f"cannot load an open_clip model: {exc}") from exc
        self.spec = spec
        self.model.logit_scale.requires_grad_(learn_temperature)
        self.image_size, self.in_channels, self.embed_dim = spec.image_size, 3, spec.embed_dim
        interp = spec.interpolation if spec.interpolation in ("bilinear", "bicubic") else "bicubic"
        self.input_spec = ImageInputSpec(size=spec.image_size, in_channels=3, mean=spec.mean, std=spec.std,
                                         interpolation=interp)
        self.max_length = spec.context_length
        self.image_local = self.text_local = None
        self.hf_source = {"source": name_or_dir, "path": str(config_path.parent.resolve()),
                          "format": "open_clip", "text_config": text_name,
                          "weights_sha256": {weights.name: sha256_file(weights.resolve())}}

    @property
    def logit_scale(self) -> nn.Parameter:
        return self.model.logit_scale

    def temperature_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp().clamp(max=100.0)

    def encode_image(self, images: torch.Tensor) -> tuple[torch.Tensor, None]:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        cls = self.model.vision_model(images)[:, 0]
        return F.normalize(self.model.image_proj(cls), dim=-1), None

    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, texts: Sequence[str] | None = None
    ) -> tuple[torch.Tensor, None, torch.Tensor]:
        out = self.model.text_model(input_ids=input_ids, attention_mask=attention_mask)
        pooled = out.pooler_output if self.spec.text_pooler == "cls_pooler" else out.last_hidden_state[:, 0]
        return F.normalize(self.model.text_proj(pooled), dim=-1), None, attention_mask.bool()
