"""`medmm models tiny biomedclip`: a tiny randomly initialised open_clip checkpoint in BiomedCLIP's format.

The folder is what the Hub's BiomedCLIP folder holds (open_clip_config.json, open_clip_model.safetensors
with open_clip's key names, the tokenizer files) plus `text_tower/config.json`, a tiny BERT config that
stands in for PubMedBERT's (BiomedCLIP's config names the hub model `hf_model_name` it is read from;
here a relative folder, which medmm reads beside the config and open_clip reads from the working
directory). The image tower is timm's vit_tiny_patch16_224 (192 wide, 12 blocks, ~5.5M parameters,
224 px): the smallest class-token ViT that open_clip can build from a timm name, so real open_clip
loads the same folder (tests/test_open_clip_dual.py compares the two where open_clip is installed).
"""

from __future__ import annotations

import json
from pathlib import Path

from medmm.errors import require
from medmm.models.encoders.open_clip_dual import OpenClipTowers
from medmm.models.encoders.open_clip_format import (
    CONFIG_FILE,
    OPENAI_MEAN,
    OPENAI_STD,
    read_spec,
    to_open_clip_state_dict,
)

TINY_SIZE = 224  # open_clip builds timm's ViT at its name's size (224): no smaller input runs there
TEXT_DIR = "text_tower"


def open_clip_config(text_name: str = TEXT_DIR, image_size: int = TINY_SIZE, embed_dim: int = 16) -> dict:
    """BiomedCLIP's open_clip_config.json with a tiny image size and a stand-in text tower name."""
    return {
        "model_cfg": {
            "embed_dim": embed_dim,
            "vision_cfg": {"timm_model_name": "vit_tiny_patch16_224", "timm_model_pretrained": False,
                           "timm_pool": "", "timm_proj": "linear", "image_size": image_size},
            "text_cfg": {"hf_model_name": text_name, "hf_tokenizer_name": text_name, "hf_proj_type": "mlp",
                         "hf_pooler_type": "cls_last_hidden_state_pooler", "context_length": 64},
        },
        "preprocess_cfg": {"mean": list(OPENAI_MEAN), "std": list(OPENAI_STD)},
    }


def write_tiny_open_clip(out: Path, seed: int = 0) -> Path:
    """Write the tiny BiomedCLIP-format folder to `out` (which exists and is empty); returns `out`."""
    torch = require("torch", "train", "tiny models")
    tf = require("transformers", "train", "tiny models")
    from safetensors.torch import save_file

    from medmm.models.families import _TEXT, _tokenizer  # the tiny WordPiece tokenizer every text family uses

    text_dir = out / TEXT_DIR
    tok = _tokenizer(text_dir)
    tok.save_pretrained(text_dir)
    tok.save_pretrained(out)  # the Hub folder carries the tokenizer files too
    text_config = tf.BertConfig(vocab_size=len(tok), **_TEXT)
    text_config.save_pretrained(text_dir)
    (out / CONFIG_FILE).write_text(json.dumps(open_clip_config(), indent=2) + "\n")
    spec = read_spec(out / CONFIG_FILE)
    torch.manual_seed(seed)
    towers = OpenClipTowers(spec, text_config)
    state = to_open_clip_state_dict(
        towers.vision_model.state_dict(), towers.image_proj.state_dict(), towers.text_model.state_dict(),
        towers.text_proj.state_dict(), towers.logit_scale.detach().clone(),
    )
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "open_clip_model.safetensors"))
    return out
