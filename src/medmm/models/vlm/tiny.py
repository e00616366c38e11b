"""Tiny randomly initialised generative VLMs, one per family, written offline in Hugging Face format.

Each writer saves exactly what the public checkpoint's folder holds and loads through the same
classes (`AutoModelForImageTextToText`, `AutoProcessor`): config.json + model.safetensors of the
real model class, the real processor class with its image processor, a tokenizer of the real
tokenizer class with the family's special tokens, the family's chat template and a
generation_config whose end-of-turn tokens stop generation as the real one's do. Only the sizes
are tiny (2 layers of width 32, 32-pixel images, a ~400-token BPE vocabulary trained here on a
fixed medical word list), so every medmm path can be tried without downloading weights.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medmm.errors import MedmmError, require
from medmm.models.torchvision_check import torchvision_problem
from medmm.models.vlm import chat_templates
from medmm.registry import Registry

IMAGE_SIZE, PATCH = 32, 8  # 4 x 4 patches per image
_WORDS = (
    "the a an of in on is are was were there this that what which where how any no yes left right normal abnormal "
    "image images chest lung lungs heart brain head abdomen liver kidney kidneys bowel ct mri x ray xray x-ray scan "
    "film mass lesion fracture effusion pneumothorax opacity nodule edema enlarged contrast shown seen present organ "
    "plane axial coronal sagittal side size and or with without not findings impression acute cardiopulmonary "
    "process clear pleural answer reasoning report the describe single word phrase choose one options think step"
)
_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=1024)
_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)


def _tf():
    return require("transformers", "train", "generative vision-language models")


def _corpus() -> list[str]:
    # Every printable ASCII character occurs, so the trained vocabulary covers plain English text.
    return [_WORDS, _WORDS.upper(), _WORDS.title(), " ".join(string.printable.strip())] * 4


def train_tokenizer(class_name: str, specials: list[str], vocab_size: int = 400, **kw: Any):
    """A tokenizer of transformers class `class_name` (its own normaliser and pre-tokenizer) with a
    BPE vocabulary trained on a fixed word list, plus `specials` as added special tokens.

    Byte-fallback models (Llama, Gemma) get the 256 byte tokens, so no text is ever unknown.
    """
    cls = getattr(_tf(), class_name)
    trained = cls(vocab=None, merges=None).train_new_from_iterator(_corpus(), vocab_size=vocab_size, show_progress=False)
    model = json.loads(trained._tokenizer.to_str())["model"]
    vocab = dict(model["vocab"])
    if model.get("byte_fallback"):
        for b in range(256):
            vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tok = cls(vocab=vocab, merges=merges, **kw)
    if specials:
        tok.add_special_tokens({"additional_special_tokens": specials})
    return tok


def _text_config(tok, **extra: Any) -> dict[str, Any]:
    ids = {"pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
    return {**_TEXT, "vocab_size": len(tok), **ids, **extra}


def _stop_ids(tok, *tokens: str) -> list[int]:
    """eos plus the family's end-of-turn tokens, as the real generation_config lists them."""
    return list(dict.fromkeys([tok.eos_token_id, *(tok.convert_tokens_to_ids(t) for t in tokens)]))


def _llava():
    """llava-hf/llava-1.5-7b-hf: CLIP ViT-L/14-336 + Vicuna (Llama), `<image>` expanded to 576 tokens."""
    tf = _tf()
    tok = train_tokenizer("LlamaTokenizer", ["<image>", "<pad>"], pad_token="<pad>")
    proc = tf.LlavaProcessor(
        image_processor=tf.CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer=tok, patch_size=PATCH, vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=chat_templates.LLAVA)
    cfg = tf.LlavaConfig(
        vision_config=tf.CLIPVisionConfig(**_VISION, image_size=IMAGE_SIZE, patch_size=PATCH, projection_dim=32),
        text_config=tf.LlamaConfig(**_text_config(tok)),
        image_token_index=tok.convert_tokens_to_ids("<image>"), image_seq_length=(IMAGE_SIZE // PATCH) ** 2,
        vision_feature_layer=-2, vision_feature_select_strategy="default")
    return tf.LlavaForConditionalGeneration(cfg), proc, _stop_ids(tok)


def _idefics3():
    """HuggingFaceTB/SmolVLM-256M-Instruct (Idefics3 architecture): SigLIP + Llama-style text model,
    pixel shuffle (scale factor 2) and image splitting; GPT-2 byte-level tokenizer."""
    tf = _tf()
    rows = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    specials = ["<|im_start|>", "<|im_end|>", "<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", *rows]
    tok = train_tokenizer("GPT2Tokenizer", specials, bos_token="<|im_start|>", eos_token="<end_of_utterance>",
                          pad_token="<|im_end|>", unk_token="<|endoftext|>")
    image_seq_len = (IMAGE_SIZE // PATCH) ** 2 // 4  # scale_factor 2: 4 patches become one token
    proc = tf.Idefics3Processor(
        image_processor=tf.Idefics3ImageProcessor(size={"longest_edge": IMAGE_SIZE}, max_image_size={"longest_edge": IMAGE_SIZE}),
        tokenizer=tok, image_seq_len=image_seq_len, chat_template=chat_templates.SMOLVLM)
    cfg = tf.Idefics3Config(
        vision_config=dict(**_VISION, image_size=IMAGE_SIZE, patch_size=PATCH),
        text_config=dict(model_type="llama", **_text_config(tok)),
        image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=2)
    return tf.Idefics3ForConditionalGeneration(cfg), proc, _stop_ids(tok, "<end_of_utterance>")


def _gemma3():
    """google/medgemma-4b-it, google/gemma-3-4b-it: SigLIP (896 px) pooled to 256 soft tokens + Gemma 3."""
    tf = _tf()
    tok = train_tokenizer("GemmaTokenizer", [], extra_special_tokens={
        "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"})
    tok.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    tokens_per_image = 4  # the 4 x 4 patch grid average-pooled to 2 x 2, as 64 x 64 patches become 16 x 16
    proc = tf.Gemma3Processor(image_processor=tf.Gemma3ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
                              tokenizer=tok, chat_template=chat_templates.GEMMA3, image_seq_length=tokens_per_image)
    cfg = tf.Gemma3Config(
        vision_config=tf.SiglipVisionConfig(**_VISION, image_size=IMAGE_SIZE, patch_size=PATCH),
        text_config=tf.Gemma3TextConfig(**_text_config(tok), head_dim=8, sliding_window=64),
        mm_tokens_per_image=tokens_per_image, boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"), image_token_index=tok.image_token_id)
    model = tf.Gemma3ForConditionalGeneration(cfg)
    # transformers initialises the image-to-text projection with zeros (a fresh model is meant to be
    # loaded over); left so, a random tiny Gemma 3 ignores its image and every image explanation of
    # it is flat. Random at the text width's scale, as trained weights are not zero.
    torch = require("torch", "train", "tiny models")
    with torch.no_grad():
        proj = model.model.multi_modal_projector.mm_input_projection_weight
        proj.normal_(0.0, proj.shape[0] ** -0.5)
    return model, proc, _stop_ids(tok, "<end_of_turn>")


def _qwen2_vl():
    """Qwen/Qwen2-VL-2B-Instruct: ViT with 2D RoPE on dynamic resolution, 2 x 2 patch merge, M-RoPE text model."""
    problem = torchvision_problem()
    if problem:
        raise MedmmError(f"Qwen2-VL's processor needs torchvision (transformers builds its video processor with it): "
                         f"{problem}; install the torchvision release matching your torch (`pip install torchvision`)")
    tf = _tf()
    specials = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tok = train_tokenizer("Qwen2Tokenizer", specials)
    pixels = IMAGE_SIZE * IMAGE_SIZE
    proc = tf.Qwen2VLProcessor(
        image_processor=tf.Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels, patch_size=PATCH, merge_size=2, temporal_patch_size=2),
        video_processor=tf.Qwen2VLVideoProcessor(min_pixels=pixels, max_pixels=pixels, patch_size=PATCH, merge_size=2, temporal_patch_size=2),
        tokenizer=tok, chat_template=chat_templates.QWEN2_VL)
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    cfg = tf.Qwen2VLConfig(
        text_config=dict(**_text_config(tok), rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}),
        vision_config=dict(depth=2, embed_dim=32, hidden_size=32, num_heads=4, patch_size=PATCH, spatial_merge_size=2,
                           temporal_patch_size=2, in_channels=3, mlp_ratio=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    return tf.Qwen2VLForConditionalGeneration(cfg), proc, _stop_ids(tok, "<|im_end|>")


BUILDERS: Registry[Callable[[], tuple[Any, Any, list[int]]]] = Registry("generative VLM family", sort=False)
for _name, _build in (("llava", _llava), ("idefics3", _idefics3), ("gemma3", _gemma3), ("qwen2_vl", _qwen2_vl)):
    BUILDERS.register(_name, _build)


def write_tiny_vlm(family: str, out: Path, seed: int = 0) -> Path:
    """Write the tiny model of `family` (a key of BUILDERS) to the empty folder `out`."""
    torch = require("torch", "train", "tiny models")
    build = BUILDERS[family]  # unknown -> "unknown generative VLM family 'x'; known: llava, ..."
    torch.manual_seed(seed)
    model, processor, stop_ids = build()
    model.generation_config.eos_token_id = stop_ids if len(stop_ids) > 1 else stop_ids[0]
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
