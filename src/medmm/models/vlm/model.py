"""`VisionLanguageModel`: a Hugging Face image-text-to-text model and its processor as one module.

Loading: `AutoModelForImageTextToText` + `AutoProcessor` by hub name or local folder (the model's
own chat template, image preprocessing and tokenizer), safetensors weights whose sha256 goes into
run provenance (`hf_source`), HF_HUB_OFFLINE honoured (`medmm.models.encoders.hf_loading`).

Prompts are the model's chat template rendered with `chat_prompt`; a training target is the
assistant turn that the template renders after that prompt (`completion`), ended by the model's
own end-of-turn token. `encode` tokenises prompt + completion with the processor (which expands
the image placeholders) and labels only the completion tokens, so the loss is on answer tokens.

Adapters: with `lora`, peft LoRA adapters are injected and only they train. The module's
state_dict then holds only the trainable tensors (the adapters): a run stores megabytes, not the
base model again, and loading such a state_dict strictly is still strict about every adapter
tensor; the frozen base weights come from `source`, whose checksums the run records.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medmm.errors import MedmmError, require
from medmm.models.encoders.hf_loading import load_hf, source_record
from medmm.models.torchvision_check import torchvision_problem

# LoRA on the language model's attention and MLP projections (Llama, Gemma, Qwen2 and SmolVLM
# name them alike); the vision tower and projector stay frozen. A peft regex on module names.
LANGUAGE_LORA_TARGETS = r".*(language_model|text_model)\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _quantization_config(quantization: str | None):
    """bitsandbytes 4-bit NF4 (QLoRA) config; a clear error where bitsandbytes or a GPU is missing."""
    if quantization in (None, "none"):
        return None
    if quantization != "4bit":
        raise MedmmError(f"model.quantization must be null or '4bit' (QLoRA), got {quantization!r}")
    missing = [what for what, ok in (("the bitsandbytes package", importlib.util.find_spec("bitsandbytes") is not None),
                                     ("a CUDA GPU", torch.cuda.is_available())) if not ok]
    if missing:
        raise MedmmError(f"model.quantization=4bit (QLoRA) needs {' and '.join(missing)}; none here. "
                         "Use plain LoRA (model.quantization: null), with bf16 weights on a GPU if memory is short")
    tf = require("transformers", "train", "QLoRA")
    return tf.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=torch.bfloat16)


class VisionLanguageModel(nn.Module):
    """A generative VLM: chat prompts, answer-only loss, option log-likelihoods and generation.

    source: hub name or local folder. dtype: weights dtype ("float32", "bfloat16", "float16",
    "auto" = the checkpoint's). quantization: None or "4bit" (QLoRA; bitsandbytes + CUDA).
    lora: None (frozen model, zero-shot) or {r, alpha, dropout, target_modules, modules_to_save};
    target_modules defaults to the language model's projections (LANGUAGE_LORA_TARGETS).
    gradient_checkpointing: recompute activations in the backward pass (less memory).
    """

    def __init__(self, source: str, *, dtype: str = "float32", quantization: str | None = None,
                 lora: dict[str, Any] | None = None, gradient_checkpointing: bool = False):
        super().__init__()
        if dtype != "auto" and dtype not in _DTYPES:
            raise MedmmError(f"model.dtype must be one of auto, {', '.join(_DTYPES)}; got {dtype!r}")
        kw: dict[str, Any] = {"dtype": "auto" if dtype == "auto" else _DTYPES[dtype]}
        qcfg = _quantization_config(quantization)
        if qcfg is not None:
            kw.update(quantization_config=qcfg, device_map={"": torch.cuda.current_device()})
        model = load_hf("AutoModelForImageTextToText", source, **kw)
        self.processor = self._load_processor(source)
        tok = self.processor.tokenizer
        tok.padding_side = "left"  # generation continues every row at the same column
        if tok.pad_token is None:  # some checkpoints ship none; padding is masked out anyway
            tok.pad_token = tok.eos_token
        self.hf_source = source_record(source)
        self.quantized = qcfg is not None
        if gradient_checkpointing:  # non-reentrant: frozen inputs need no requires_grad trick
            if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x; the old name is deprecated
                model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if self.quantized:
            peft = require("peft", "train", "QLoRA")
            model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                                         gradient_checkpointing_kwargs={"use_reentrant": False})
        self.lora = dict(lora) if lora is not None else None
        # from_pretrained leaves the model in eval mode; a new module trains (dropout on) until told
        # otherwise, so a fresh run and a resumed one train alike.
        model.train()
        self.model = self._with_lora(model, self.lora) if self.lora is not None else model
        if self.lora is None:
            for p in self.model.parameters():
                p.requires_grad_(False)
        own = nn.Module.state_dict(self, keep_vars=True)  # before the filtering hook exists
        self._frozen = {k for k, v in own.items() if not (isinstance(v, nn.Parameter) and v.requires_grad)}
        self.register_state_dict_post_hook(_drop_frozen)
        self.register_load_state_dict_post_hook(_forgive_frozen)

    @staticmethod
    def _load_processor(source: str):
        try:
            return load_hf("AutoProcessor", source)
        except MedmmError:
            raise
        except Exception as exc:  # transformers raises assorted errors for a processor it cannot build
            problem = torchvision_problem()
            hint = f" (Qwen2-VL's processor needs torchvision: {problem})" if problem else ""
            raise MedmmError(f"{source}: could not build its AutoProcessor{hint}: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _with_lora(model: nn.Module, lora: dict[str, Any]) -> nn.Module:
        peft = require("peft", "train", "LoRA fine-tuning")
        unknown = set(lora) - {"r", "alpha", "dropout", "target_modules", "modules_to_save"}
        if unknown:
            raise MedmmError(f"model.lora: unknown key(s) {sorted(unknown)}; known: r, alpha, dropout, target_modules, modules_to_save")
        config = peft.LoraConfig(r=int(lora.get("r", 8)), lora_alpha=int(lora.get("alpha", 16)),
                                 lora_dropout=float(lora.get("dropout", 0.05)), bias="none",
                                 target_modules=lora.get("target_modules") or LANGUAGE_LORA_TARGETS,
                                 modules_to_save=lora.get("modules_to_save"))
        try:
            with warnings.catch_warnings():  # peft asks transformers a deprecated question; not ours to fix
                warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
                return peft.get_peft_model(model, config)
        except ValueError as exc:  # peft: "Target modules ... not found in the base model"
            raise MedmmError(f"model.lora.target_modules matched no layer of {type(model).__name__}: {exc}") from exc

    # ------------------------------------------------------------------ prompts
    @property
    def tokenizer(self):
        return self.processor.tokenizer

    def _messages(self, text: str, n_images: int, system: str | None, answer: str | None = None) -> list[dict[str, Any]]:
        msgs: list[dict[str, Any]] = []
        if system:
            msgs.append({"role": "system", "content": [{"type": "text", "text": system}]})
        msgs.append({"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": text}]})
        if answer is not None:
            msgs.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return msgs

    def chat_prompt(self, text: str, n_images: int = 1, system: str | None = None) -> str:
        """The model's chat template for one user turn (images first, then `text`), ready for the answer."""
        return self.processor.apply_chat_template(self._messages(text, n_images, system), add_generation_prompt=True,
                                                  tokenize=False)

    def stop_strings(self) -> list[str]:
        """The tokens that end a generated answer (generation_config eos ids, else the tokenizer's eos)."""
        eos = self.base_model.generation_config.eos_token_id
        ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
        out = [self.tokenizer.convert_ids_to_tokens(int(i)) for i in ids]
        return [t for t in out if t] or [self.tokenizer.eos_token]

    def completion(self, text: str, answer: str, n_images: int = 1, system: str | None = None) -> str:
        """What follows `chat_prompt(text)` when the assistant answers `answer`: the template's own
        assistant turn up to and including its first stop token (the eos appended where the
        template ends a turn without one, as llava-1.5's does)."""
        prompt = self.chat_prompt(text, n_images, system)
        full = self.processor.apply_chat_template(self._messages(text, n_images, system, answer), tokenize=False)
        tail = full[len(prompt):] if full.startswith(prompt) else answer
        stops = [(tail.find(s), s) for s in self.stop_strings() if s and s in tail]
        if stops:
            at, s = min(stops)
            return tail[: at + len(s)]
        return tail + self.tokenizer.eos_token

    # ------------------------------------------------------------------ tensors
    def encode(self, prompts: list[str], images: list[list[Any]], completions: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Processor tensors of `prompts` (+ `completions`), left-padded; with completions, "labels"
        holds the completion tokens and -100 everywhere else (prompt, image tokens, padding)."""
        if len(images) != len(prompts):
            raise MedmmError(f"{len(prompts)} prompts but {len(images)} image lists")
        texts = prompts if completions is None else [p + c for p, c in zip(prompts, completions, strict=True)]
        kw = {"images": images} if any(images) else {}
        enc = dict(self.processor(text=texts, padding=True, return_tensors="pt", **kw))
        if completions is None:
            return enc
        only = self.processor(text=prompts, padding=True, return_tensors="pt", **kw)
        labels = enc["input_ids"].clone()
        mask = enc["attention_mask"].bool()
        labels[~mask] = -100
        for i in range(len(prompts)):
            full = enc["input_ids"][i][mask[i]]
            prompt = only["input_ids"][i][only["attention_mask"][i].bool()]
            n = min(len(full), len(prompt))
            # the prompt's tokens are a prefix of prompt + completion's, except where a merge crosses the seam
            differ = (full[:n] != prompt[:n]).nonzero()
            shared = int(differ[0]) if len(differ) else n
            if shared >= len(full):
                raise MedmmError(f"completion {completions[i]!r} adds no token to its prompt")
            labels[i, : int((~mask[i]).sum()) + shared] = -100
        enc["labels"] = labels
        return enc

    @property
    def base_model(self) -> nn.Module:
        """The Hugging Face model (under the peft wrapper when adapters are on)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy over the labelled (completion) tokens of `batch` (from `encode`)."""
        return self.model(**batch).loss

    def completion_logprobs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) sum of log p(token) over each row's labelled tokens: the log-likelihood of its completion."""
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = self.model(**inputs).logits[:, :-1].float()
        target = batch["labels"][:, 1:]
        keep = target.ne(-100)
        logp = logits.log_softmax(-1).gather(-1, target.clamp_min(0)[..., None])[..., 0]
        return (logp * keep).sum(-1)

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor], max_new_tokens: int = 32, num_beams: int = 1) -> list[str]:
        """Deterministic decoding (greedy, or beam search with num_beams > 1): the new text of each row."""
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False,
                                  pad_token_id=self.tokenizer.pad_token_id)
        return [t.strip() for t in self.processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)]

    # ------------------------------------------------------------------ adapters
    def merged(self) -> nn.Module:
        """The Hugging Face model with the LoRA adapters merged into its weights (peft
        merge_and_unload). Consumes the adapters: use this module no further afterwards."""
        if self.lora is None:
            return self.model
        if self.quantized:
            raise MedmmError("adapters trained on a 4-bit (QLoRA) base cannot be merged into 4-bit weights; load the "
                             "run with model.quantization=null (full-precision base) and merge that")
        return self.model.merge_and_unload()


def _drop_frozen(module: VisionLanguageModel, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    """state_dict hook: keep only the trainable tensors (the base weights come from the source)."""
    for name in module._frozen:
        state_dict.pop(prefix + name, None)


def _forgive_frozen(module: VisionLanguageModel, incompatible: Any) -> None:
    """load_state_dict hook: base weights missing from a state_dict are expected; every other
    missing or unexpected key (an adapter) still fails a strict load."""
    def frozen(key: str) -> bool:
        parts = key.split(".")
        return any(".".join(parts[i:]) in module._frozen for i in range(len(parts)))

    incompatible.missing_keys[:] = [k for k in incompatible.missing_keys if not frozen(k)]


def save_merged(vlm: VisionLanguageModel, out: str | Path, provenance: dict[str, Any] | None = None) -> Path:
    """Write `vlm` with its adapters merged as a plain Hugging Face folder (loads with
    AutoModelForImageTextToText + AutoProcessor, no peft needed) plus medmm_merge.json: the base
    model's source and checksums, `provenance` (e.g. the run) and the merged weights' sha256."""
    import json

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise MedmmError(f"{out}: exists and is not empty; choose a new folder")
    model = vlm.merged()
    model.save_pretrained(out)
    vlm.processor.save_pretrained(out)
    info = {"base_model": vlm.hf_source, "adapters": f"LoRA {vlm.lora}" if vlm.lora else "none (nothing merged)",
            **(provenance or {}), "merged_weights_sha256": source_record(str(out))["weights_sha256"]}
    (out / "medmm_merge.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return out
