"""Pretrained model families medmm loads from Hugging Face folders, and tiny random stand-ins.

Each family names the transformers config and model classes its real checkpoints use (so a tiny
folder written by `write_tiny` exercises exactly the loading code a real checkpoint goes through),
its role in medmm (image encoder, text encoder, dual encoder, generative VLM, causal LM as report
decoder) and public checkpoints of the field. Generative VLMs (processor, chat template, special
tokens) are written by `medmm.models.vlm.tiny`, causal LMs by `medmm.models.tiny_causal_lm`.
Tiny models are randomly initialised and only good for testing the plumbing offline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medmm.errors import MedmmError, require
from medmm.registry import Registry

IMAGE, TEXT, DUAL, VLM = "image encoder", "text encoder", "dual encoder", "generative VLM"
CAUSAL_LM = "causal LM (report decoder)"
TINY_IMAGE_SIZE = 32

# A small WordPiece vocabulary, built here so that no tokenizer is ever downloaded.
_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_WORDS = (
    "the a an of in on is are was there this that what which where how any no yes left right normal abnormal "
    "image images chest lung lungs heart brain head abdomen liver kidney bowel ct mri x ray xray scan film "
    "mass lesion fracture effusion pneumothorax opacity nodule edema enlarged contrast shown seen present "
    "organ plane axial coronal sagittal side size and or with without not"
).split()


@dataclass(frozen=True)
class Family:
    """One supported family: how medmm uses it and how its tiny stand-in is built."""

    name: str
    role: str
    model_class: str  # transformers class of the real checkpoints
    examples: str  # public checkpoints of this family
    config: Callable[[int], Any] | None  # vocab size -> transformers config of a tiny model
    image_processor: str | None  # transformers image processor class saved with the model
    text: bool  # a tokenizer is saved with the model
    writer: Callable[[Path, int], Path] | None = None  # (folder, seed) -> folder, for families built whole


def _tf():
    return require("transformers", "train", "Hugging Face model families")


_VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
_TEXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)


def _vision(**extra: Any) -> dict[str, Any]:
    return {**_VIT, "image_size": TINY_IMAGE_SIZE, "patch_size": 8, **extra}


def _clip_text(vocab: int) -> dict[str, Any]:
    # CLIP pools the text at the eos token: our WordPiece vocabulary ends texts with [SEP] (id 3).
    return {**_TEXT, "vocab_size": vocab, "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}


def _open_clip_writer(out: Path, seed: int) -> Path:
    from medmm.models.encoders.open_clip_tiny import write_tiny_open_clip

    return write_tiny_open_clip(out, seed)


def _vlm_writer(family: str) -> Callable[[Path, int], Path]:
    def write(out: Path, seed: int) -> Path:
        from medmm.models.vlm.tiny import write_tiny_vlm

        return write_tiny_vlm(family, out, seed)

    return write


def _causal_lm_writer(family: str) -> Callable[[Path, int], Path]:
    def write(out: Path, seed: int) -> Path:
        from medmm.models.tiny_causal_lm import write_tiny_causal_lm

        return write_tiny_causal_lm(family, out, seed)

    return write


# In registration order (image encoders, text encoders, dual encoders, VLMs, causal LMs); metadata: the role.
FAMILIES: Registry[Family] = Registry("model family", sort=False)
for _family in [
    Family("vit", IMAGE, "ViTModel", "google/vit-base-patch16-224-in21k",
           lambda v: _tf().ViTConfig(**_vision()), "ViTImageProcessor", False),
    Family("dinov2", IMAGE, "Dinov2Model", "microsoft/rad-dino, facebook/dinov2-small",
           lambda v: _tf().Dinov2Config(**_vision()), "BitImageProcessor", False),
    Family("siglip_vision", IMAGE, "SiglipVisionModel", "google/siglip-base-patch16-224 (vision tower)",
           lambda v: _tf().SiglipVisionConfig(**_vision()), "SiglipImageProcessor", False),
    Family("clip_vision", IMAGE, "CLIPVisionModel", "openai/clip-vit-base-patch32 (vision tower)",
           lambda v: _tf().CLIPVisionConfig(**_vision()), "CLIPImageProcessor", False),
    Family("convnext", IMAGE, "ConvNextModel", "facebook/convnext-tiny-224",
           lambda v: _tf().ConvNextConfig(num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], image_size=TINY_IMAGE_SIZE),
           "ConvNextImageProcessor", False),
    Family("bert", TEXT, "BertModel",
           "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext, emilyalsentzer/Bio_ClinicalBERT",
           lambda v: _tf().BertConfig(vocab_size=v, **_TEXT), None, True),
    Family("clip", DUAL, "CLIPModel", "openai/clip-vit-base-patch32, flaviagiammarino/pubmed-clip-vit-base-patch32",
           lambda v: _tf().CLIPConfig(text_config=_clip_text(v), vision_config=_vision(), projection_dim=16),
           "CLIPImageProcessor", True),
    Family("siglip", DUAL, "SiglipModel", "google/siglip-base-patch16-224",
           lambda v: _tf().SiglipConfig(text_config={**_TEXT, "vocab_size": v}, vision_config=_vision()),
           "SiglipImageProcessor", True),
    Family("biomedclip", DUAL, "open_clip (timm ViT + BERT)",
           "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", None, None, True, _open_clip_writer),
    Family("llava", VLM, "LlavaForConditionalGeneration",
           "llava-hf/llava-1.5-7b-hf; LLaVA-Med once converted to the llava-hf layout (docs/vlm.md)",
           None, "CLIPImageProcessor", True, _vlm_writer("llava")),
    Family("idefics3", VLM, "Idefics3ForConditionalGeneration",
           "HuggingFaceTB/SmolVLM-256M-Instruct, HuggingFaceTB/SmolVLM-Instruct, HuggingFaceM4/Idefics3-8B-Llama3",
           None, "Idefics3ImageProcessor", True, _vlm_writer("idefics3")),
    Family("gemma3", VLM, "Gemma3ForConditionalGeneration", "google/medgemma-4b-it, google/gemma-3-4b-it",
           None, "Gemma3ImageProcessor", True, _vlm_writer("gemma3")),
    Family("qwen2_vl", VLM, "Qwen2VLForConditionalGeneration",
           "Qwen/Qwen2-VL-2B-Instruct, Qwen/Qwen2-VL-7B-Instruct (needs torchvision)",
           None, "Qwen2VLImageProcessor", True, _vlm_writer("qwen2_vl")),
    Family("gpt2", CAUSAL_LM, "GPT2LMHeadModel", "openai-community/gpt2, distilbert/distilgpt2",
           None, None, True, _causal_lm_writer("gpt2")),
    Family("llama", CAUSAL_LM, "LlamaForCausalLM", "meta-llama/Llama-3.2-1B, TinyLlama/TinyLlama-1.1B-Chat-v1.0",
           None, None, True, _causal_lm_writer("llama")),
    Family("qwen2", CAUSAL_LM, "Qwen2ForCausalLM", "Qwen/Qwen2.5-0.5B", None, None, True, _causal_lm_writer("qwen2")),
]:
    FAMILIES.register(_family.name, _family, role=_family.role)


def get_family(name: str) -> Family:
    """The family called `name`, or a MedmmError listing the known ones."""
    return FAMILIES[name]


def _tokenizer(folder: Path):
    tf = _tf()
    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789.,?!'-/()"))
    vocab = _SPECIALS + chars + [f"##{c}" for c in chars] + _WORDS
    path = folder / "vocab.txt"
    path.write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    return tf.BertTokenizerFast(vocab=str(path), do_lower_case=True, model_max_length=_TEXT["max_position_embeddings"])


def _image_processor(cls_name: str):
    tf = _tf()
    cls = getattr(tf, cls_name)
    side = {"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}
    if cls_name == "BitImageProcessor":  # DINOv2: resize shortest edge, then centre crop; ImageNet statistics
        return cls(size={"shortest_edge": TINY_IMAGE_SIZE}, crop_size=side,
                   image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    if cls_name == "ConvNextImageProcessor":  # below 384 px: resize shortest_edge / crop_pct, centre crop
        return cls(size={"shortest_edge": TINY_IMAGE_SIZE})
    if cls_name == "CLIPImageProcessor":
        return cls(size={"shortest_edge": TINY_IMAGE_SIZE}, crop_size=side)
    return cls(size=side)  # ViT, SigLIP: plain resize, mean = std = 0.5


def write_tiny(name: str, out: str | Path, seed: int = 0) -> Path:
    """Write a tiny randomly initialised model of family `name` to `out` in Hugging Face format.

    The folder holds config.json, model.safetensors and the processor files the real checkpoints
    carry (preprocessor_config.json for images, a WordPiece tokenizer for text; a generative VLM's
    processor_config.json, tokenizer, chat template and generation_config). Returns `out`.
    """
    torch = require("torch", "train", "tiny models")
    fam = get_family(name)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise MedmmError(f"{out}: exists and is not empty; choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    if fam.writer is not None:
        try:
            return fam.writer(out, seed)
        except BaseException:
            import shutil

            shutil.rmtree(out, ignore_errors=True)  # no half-written model folder
            raise
    tok = _tokenizer(out) if fam.text else None
    torch.manual_seed(seed)
    model = getattr(_tf(), fam.model_class)(fam.config(len(tok) if tok is not None else 0))
    model.save_pretrained(out)
    if tok is not None:
        tok.save_pretrained(out)
    if fam.image_processor:
        _image_processor(fam.image_processor).save_pretrained(out)
    return out
