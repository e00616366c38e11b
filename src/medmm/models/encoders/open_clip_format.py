"""Reading open_clip checkpoints (BiomedCLIP's format) without the open_clip package.

open_clip, timm and torchvision's PyPI wheels cannot be installed on medmm's CPU torch (the
torchvision extension links CUDA torch libraries), so a checkpoint made by open_clip with a timm ViT
image tower and a Hugging Face text tower (`microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224`)
is read here and its weights go into equivalent modules: medmm's TimmViT (timm's names), the
transformers AutoModel of the text config, and open_clip's projection heads. Loading is strict: a
key that is neither mapped nor a known buffer is an error, never dropped.

A folder holds open_clip_config.json and open_clip_model.safetensors (or open_clip_pytorch_model.bin,
read with `torch.load(weights_only=True)`), as on the Hub. A hub name (`hf-hub:org/name` or
`org/name`) is read from the Hugging Face cache when HF_HUB_OFFLINE=1, else downloaded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medmm.errors import MedmmError
from medmm.models.encoders.hf_loading import hf_offline

CONFIG_FILE = "open_clip_config.json"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)  # open_clip's defaults when preprocess_cfg is silent
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# timm ViT sizes: width, depth, heads (mlp ratio 4, class token, qkv bias, LayerNorm eps 1e-6)
_VIT_SIZES = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12), "large": (1024, 24, 16)}
_VIT_NAME = re.compile(r"^vit_(tiny|small|base|large)_patch(\d+)_(\d+)(\.[\w]+)?$")
_TEXT_POOLERS = ("cls_last_hidden_state_pooler", "cls_pooler")
_IGNORED = re.compile(r"^text\.transformer\.embeddings\.position_ids$")  # a buffer older checkpoints saved


@dataclass(frozen=True)
class OpenClipSpec:
    """What medmm needs from open_clip_config.json (everything else there is checked, not ignored)."""

    embed_dim: int
    vit_width: int
    vit_depth: int
    vit_heads: int
    patch_size: int
    image_size: int
    image_proj_bias: bool
    text_name: str  # hf_model_name: where the text tower's config.json comes from
    tokenizer_name: str
    text_proj: str | None  # "mlp", "linear" or None
    text_proj_bias: bool
    text_pooler: str
    context_length: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str


def _hub_name(name_or_dir: str) -> str | None:
    """The repo id of a hub name (`hf-hub:org/name` or `org/name`), None for a local path."""
    if name_or_dir.startswith("hf-hub:"):
        return name_or_dir.removeprefix("hf-hub:")
    path = Path(name_or_dir).expanduser()
    if path.exists() or name_or_dir.startswith((".", "/", "~")) or name_or_dir.count("/") != 1:
        return None
    return name_or_dir


def resolve_files(name_or_dir: str) -> tuple[Path, Path]:
    """(open_clip_config.json, weights file) of a local folder or a hub model, or one clear error."""
    repo = _hub_name(name_or_dir)
    if repo is None:
        folder = Path(name_or_dir).expanduser()
        if not (folder / CONFIG_FILE).is_file():
            raise MedmmError(f"{folder}: not an open_clip model folder ({CONFIG_FILE} missing)")
        weights = [folder / w for w in WEIGHT_FILES if (folder / w).is_file()]
        if not weights:
            raise MedmmError(f"{folder}: no open_clip weights ({' or '.join(WEIGHT_FILES)})")
        return folder / CONFIG_FILE, weights[0]
    from huggingface_hub import constants, hf_hub_download

    offline = hf_offline()
    found: dict[str, Path] = {}
    for fname in (CONFIG_FILE, *WEIGHT_FILES):
        try:
            found[fname] = Path(hf_hub_download(repo, fname, local_files_only=offline))
        except Exception:  # noqa: BLE001 - a missing file is reported below with where it was looked for
            continue
        if fname != CONFIG_FILE:
            break
    if CONFIG_FILE not in found or len(found) < 2:
        why = "HF_HUB_OFFLINE=1 is set" if offline else "the download failed (no network?)"
        raise MedmmError(
            f"open_clip model {repo!r} not found: not a local folder, not in the Hugging Face cache "
            f"{constants.HF_HUB_CACHE} ({CONFIG_FILE} + {' or '.join(WEIGHT_FILES)}) and {why}; fetch it once "
            f"with `huggingface-cli download {repo}` or pass a local folder"
        )
    return found[CONFIG_FILE], next(p for f, p in found.items() if f != CONFIG_FILE)


def read_spec(config_path: Path) -> OpenClipSpec:
    """Parse open_clip_config.json; architectures other than timm ViT + HF text tower are an error."""
    raw = json.loads(config_path.read_text())
    cfg, pre = raw.get("model_cfg", raw), raw.get("preprocess_cfg", {})
    v, t = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    where = f"{config_path}: "
    m = _VIT_NAME.match(str(v.get("timm_model_name", "")))
    if not m:
        raise MedmmError(where + f"vision tower {v.get('timm_model_name')!r} unsupported: medmm reads timm ViTs "
                         "(vit_{tiny,small,base,large}_patchP_S) only; install open_clip elsewhere for other towers")
    if v.get("timm_pool", "") not in ("", "token") or v.get("timm_proj", "linear") != "linear":
        raise MedmmError(where + f"timm_pool={v.get('timm_pool')!r}, timm_proj={v.get('timm_proj')!r} unsupported "
                         "(medmm reads the class token + linear projection, as BiomedCLIP has)")
    if "hf_model_name" not in t:
        raise MedmmError(where + "text_cfg has no hf_model_name: only Hugging Face text towers are supported")
    pooler = t.get("hf_pooler_type", "mean_pooler")
    if pooler not in _TEXT_POOLERS:
        raise MedmmError(where + f"hf_pooler_type {pooler!r} unsupported (supported: {', '.join(_TEXT_POOLERS)})")
    proj = t.get("hf_proj_type", "mlp")
    if proj not in ("mlp", "linear", None):
        raise MedmmError(where + f"hf_proj_type {proj!r} unsupported (mlp, linear or null)")
    width, depth, heads = _VIT_SIZES[m.group(1)]
    if int(v.get("image_size", m.group(3))) != int(m.group(3)):
        # open_clip builds the timm trunk at the name's size (it passes no img_size), and timm's ViT
        # refuses other input sizes: such a checkpoint does not run in open_clip either
        raise MedmmError(where + f"image_size {v['image_size']} differs from {v['timm_model_name']}'s {m.group(3)}")
    return OpenClipSpec(
        embed_dim=int(cfg["embed_dim"]), vit_width=width, vit_depth=depth, vit_heads=heads,
        patch_size=int(m.group(2)), image_size=int(v.get("image_size", m.group(3))),
        image_proj_bias=bool(v.get("timm_proj_bias", False)),
        text_name=str(t["hf_model_name"]), tokenizer_name=str(t.get("hf_tokenizer_name", t["hf_model_name"])),
        text_proj=proj, text_proj_bias=bool(t.get("proj_bias", False)), text_pooler=pooler,
        context_length=int(t.get("context_length", 77)),
        mean=tuple(pre.get("mean", OPENAI_MEAN)), std=tuple(pre.get("std", OPENAI_STD)),
        interpolation=str(pre.get("interpolation", "bicubic")),
    )


def convert_state_dict(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """open_clip keys -> {"vision": timm ViT keys, "image_proj", "text": text model keys, "text_proj",
    "logit_scale"}; an unmapped key raises a MedmmError listing it."""
    out: dict[str, dict[str, Any]] = {k: {} for k in ("vision", "image_proj", "text", "text_proj", "logit_scale")}
    unknown = []
    for key, value in state.items():
        if key.startswith("visual.trunk."):
            out["vision"][key.removeprefix("visual.trunk.")] = value  # medmm's TimmViT keeps timm's names
        elif key.startswith("visual.head.proj."):
            out["image_proj"][key.removeprefix("visual.head.proj.")] = value
        elif key.startswith("text.transformer."):
            if not _IGNORED.match(key):
                out["text"][key.removeprefix("text.transformer.")] = value
        elif key.startswith("text.proj."):
            out["text_proj"][key.removeprefix("text.proj.")] = value
        elif key == "logit_scale":
            out["logit_scale"][""] = value
        else:
            unknown.append(key)
    if unknown:
        raise MedmmError(f"open_clip weights have keys medmm cannot map (not a timm ViT + HF text tower model?): "
                         f"{', '.join(unknown[:8])}{' ...' if len(unknown) > 8 else ''}")
    return out


def to_open_clip_state_dict(vision: dict, image_proj: dict, text: dict, text_proj: dict, logit_scale) -> dict:
    """The inverse of `convert_state_dict` (for `medmm models tiny biomedclip`): open_clip key names."""
    out: dict[str, Any] = {"logit_scale": logit_scale}
    for prefix, part in (("visual.trunk.", vision), ("visual.head.proj.", image_proj),
                         ("text.transformer.", text), ("text.proj.", text_proj)):
        out.update({prefix + k: v for k, v in part.items()})
    return out
