"""Generative vision-language models as medmm tasks: VQA (`vqa_vlm`) and report generation
(`report_vlm`) as instruction following, zero-shot or LoRA-tuned through the one engine.

The model is any `AutoModelForImageTextToText` checkpoint (LLaVA, Idefics3/SmolVLM, Gemma 3 /
MedGemma, Qwen2-VL; `medmm models list`), named by `model.pretrained` (hub name or folder).
Each sample becomes a chat turn (`medmm.tasks.vlm.instructions`, `.prompts`): the image(s), the
instruction of the task and dataset, and for a closed question its options. Training: LoRA
adapters (peft) learn the reference answer or report with the loss on its tokens only; the run
stores only the adapters (`VisionLanguageModel`), and `medmm models merge RUN --out DIR` exports a
merged Hugging Face folder. Inference (`medmm.tasks.vlm.answering`): options scored by likelihood
for closed questions, deterministic generation otherwise, an optional chain-of-thought rationale
kept in each record. Scores use the rules of medmm's VQA and report tasks
(`medmm.tasks.vlm.scoring`); the protocol of every metrics file records the prompt, the decoding,
the base model's checksums and the adapters.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from medmm.data.schema import Sample
from medmm.engine.task import Task, register_task
from medmm.errors import MedmmError
from medmm.metrics.headline import Headline
from medmm.tasks.vlm import scoring
from medmm.tasks.vlm.answering import answer_batch, to_model
from medmm.tasks.vlm.instructions import Instruction, report_instruction, vqa_instruction
from medmm.tasks.vlm.prompts import prompt_spec
from medmm.tasks.vqa.answers import vqa_units

_NEW_TOKENS = {("question", False): 16, ("question", True): 256, ("report", False): 256, ("report", True): 384}


class VLMTask(Task):
    """Shared by `vqa_vlm` and `report_vlm`; `mode` says which records it reads and how it scores."""

    mode = "question"

    @dataclass
    class Config:
        """The `model:` section of a generative VLM task.

        Attributes:
            pretrained: Hugging Face hub name or local folder of an image-text-to-text model
                (e.g. google/medgemma-4b-it, llava-hf/llava-1.5-7b-hf, a `medmm models tiny` folder).
            prompt: the instruction template ({question} for VQA); null: medmm's default for the
                task and the sample's dataset (`medmm.tasks.vlm.prompts`).
            options_prompt: line added to a question answered among options ({options}).
            system_prompt: optional system message.
            chain_of_thought: ask for reasoning before the answer (inference only; the reasoning
                is stored as each record's `rationale`).
            cot_prompt: the chain-of-thought request (null: the default of the task).
            answer_options: answer closed questions (yes/no; "A or B" naming training answers)
                among their options by likelihood (VQA only); false: generate every answer.
            text_field: the report text to learn and score (report only): report, findings,
                impression, caption.
            max_images: images per sample shown to the model (IU X-ray studies have two views).
            max_new_tokens: generation length (null: 16 for VQA, 256 for reports, more with
                chain of thought).
            num_beams: beam width of generation (1 = greedy).
            lora: LoRA adapters {r, alpha, dropout, target_modules, modules_to_save}; default
                targets: the language model's attention and MLP projections. null: no adapters
                (nothing to train: zero-shot evaluation only).
            gradient_checkpointing: recompute activations in backward (less memory, slower).
            dtype: weights dtype: float32, bfloat16 (GPU), float16 or auto (the checkpoint's).
            quantization: "4bit" loads the base in 4-bit NF4 for QLoRA (needs bitsandbytes and a
                CUDA GPU); null: full precision.
            bootstrap_resamples: resamples for the metrics' confidence intervals.
        """

        pretrained: str
        prompt: str | None = None
        options_prompt: str | None = None
        system_prompt: str | None = None
        chain_of_thought: bool = False
        cot_prompt: str | None = None
        answer_options: bool = True
        text_field: str = "report"
        max_images: int = 1
        max_new_tokens: int | None = None
        num_beams: int = 1
        lora: dict[str, Any] | None = field(default_factory=lambda: {"r": 8, "alpha": 16, "dropout": 0.05})
        gradient_checkpointing: bool = False
        dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32"
        quantization: Literal["4bit"] | None = None
        bootstrap_resamples: int = 1000

    def __init__(self, config: Config):
        super().__init__(config)
        from medmm.models.vlm import VisionLanguageModel

        c = self.config
        if c.max_images < 1 or c.num_beams < 1:
            raise MedmmError(f"model.max_images and model.num_beams must be >= 1, got {c.max_images}, {c.num_beams}")
        self.vlm = VisionLanguageModel(c.pretrained, dtype=c.dtype, quantization=c.quantization, lora=c.lora,
                                       gradient_checkpointing=c.gradient_checkpointing)
        self.prompts = prompt_spec(self.mode, c.prompt, c.options_prompt, c.chain_of_thought, c.cot_prompt, c.system_prompt)
        self.answers: list[str] = []  # normalised training answers: the options an "A or B" question may name

    # ------------------------------------------------------------------ state
    def setup(self, train_samples: list[Sample]) -> None:
        """Refuse what cannot be trained; the VQA answer vocabulary for "A or B" options."""
        if self.config.lora is None:
            raise MedmmError("model.lora is null: a frozen model has nothing to train; score it zero-shot with "
                             "`medmm evaluate --model NAME_OR_FOLDER`, or give model.lora {r: 8}")
        if self.config.chain_of_thought:
            raise MedmmError("model.chain_of_thought applies at inference only (the datasets hold no rationales to "
                             "learn): train without it, then evaluate with --set chain_of_thought=true")
        if self.mode == "question":
            self.answers = sorted({scoring.normalise_vqa_answer(s.text.get("answer", "")) for s in train_samples} - {""})

    def state(self) -> dict[str, Any]:
        """The answer vocabulary and the base model the adapters were trained on (its checksums)."""
        src = self.vlm.hf_source
        return {"answers": list(self.answers),
                "base_model": {"source": src["source"], "weights_sha256": src["weights_sha256"]}}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore the vocabulary; adapters trained on other base weights are refused."""
        self.answers = list(state.get("answers", []))
        saved = (state.get("base_model") or {}).get("weights_sha256")
        here = self.vlm.hf_source["weights_sha256"]
        if saved and here and saved != here:
            raise MedmmError(f"the run's adapters were trained on base weights {saved}, but "
                             f"{self.config.pretrained!r} has {here}: load the same base model (model.pretrained)")

    # ------------------------------------------------------------------ batches
    def instruction(self, sample: Sample) -> Instruction:
        """The sample as a chat turn (subclasses)."""
        raise NotImplementedError

    def collate(self, samples: list[Sample]) -> dict[str, Any]:
        """Instructions (images read here, in the loader's workers) and, when every sample has a
        reference, the training tensors: prompt + answer with only the answer tokens labelled."""
        items = [self.instruction(s) for s in samples]
        train = None
        if all(it.target for it in items):
            prompts = [self.vlm.chat_prompt(it.text, len(it.images), self.prompts.system) for it in items]
            completions = [self.vlm.completion(it.text, it.target, len(it.images), self.prompts.system) for it in items]
            train = self.vlm.encode(prompts, [it.images for it in items], completions)
        return {"items": items, "train": train}

    def predict_collate(self, samples: list[Sample]) -> dict[str, Any]:
        """Instructions only (no reference needed)."""
        return {"items": [self.instruction(s) for s in samples], "train": None}

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Cross-entropy of the reference answer's tokens."""
        if batch["train"] is None:
            raise MedmmError("a training batch holds a sample without a reference answer or report")
        return {"loss": self.vlm.loss(to_model(self.vlm, batch["train"]))}

    @property
    def max_new_tokens(self) -> int:
        return self.config.max_new_tokens or _NEW_TOKENS[(self.mode, self.config.chain_of_thought)]

    def evaluation_step(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """One record per sample: id, prediction, reference, how it was answered, the raw output,
        the rationale (chain of thought) and the metadata scoring needs."""
        items: list[Instruction] = batch["items"]
        answers = answer_batch(self.vlm, items, self.prompts, short=self.mode == "question",
                               max_new_tokens=self.max_new_tokens, num_beams=self.config.num_beams)
        records = []
        for it, a in zip(items, answers, strict=True):
            rec = {"id": it.id, "prediction": a.prediction, **it.meta, "answered_by": a.answered_by}
            if it.options:
                rec["options"] = it.options
                rec["option_logprobs"] = a.option_logprobs
            if a.output is not None:
                rec["output"] = a.output
            if self.prompts.cot:
                rec["rationale"] = a.rationale or ""
            records.append(rec)
        return records

    # ------------------------------------------------------------------ hooks
    def serving_inputs(self) -> dict[str, str]:
        """The image (and for VQA the question) a served model reads."""
        fields = {"image": "one image: DICOM, PNG or JPEG"}
        if self.mode == "question":
            fields["question"] = "the question about the image"
        return fields

    def output_spec(self) -> dict[str, Any]:
        """No label list (answers are text); preprocessing is the model's own processor."""
        return {"labels": None, "thresholds": None,
                "preprocessing": {"processor": type(self.vlm.processor).__name__, "source": self.config.pretrained}}

    def protocol(self) -> dict[str, Any]:
        """Metric definitions, and what every number of this model depends on: the prompt (with the
        checksum of the chat template that wrapped it), the decoding and the model with its adapters."""
        c = self.config
        template = self.vlm.processor.chat_template or ""
        defs = scoring.VLM_VQA_DEFINITIONS if self.mode == "question" else scoring.REPORT_METRIC_DEFINITIONS
        return {
            "metric_definitions": dict(defs), "oracle_inputs": [], "fitted_on_validation": [], "selection_metrics": [],
            "prompt": {**self.prompts.record(), "chat_template_sha256": hashlib.sha256(template.encode()).hexdigest()},
            "decoding": {
                "generation": "greedy" if c.num_beams == 1 else f"beam search, {c.num_beams} beams",
                "sampling": False, "max_new_tokens": self.max_new_tokens,
                "closed_questions": ("options scored by summed answer-token log-likelihood" if self.mode == "question"
                                     and c.answer_options else "generated"),
                "stop_tokens": self.vlm.stop_strings(),
            },
            "model": {"pretrained": c.pretrained, "weights_sha256": self.vlm.hf_source["weights_sha256"],
                      "class": type(self.vlm.base_model).__name__, "dtype": c.dtype, "quantization": c.quantization,
                      "adapters": (f"LoRA {c.lora}" if c.lora is not None else "none")},
        }


@register_task("vqa_vlm")
class VQAVLMTask(VLMTask):
    """Medical VQA with a generative VLM: closed questions among their options, open ones generated."""

    mode = "question"
    zero_shot_dataset = "vqa_rad"
    headline = Headline("val/overall_accuracy", "max", vqa_units)

    def explainable(self, samples: list[Sample]) -> Any:
        """Closed questions answered among options without chain of thought: a classifier over
        the options (`medmm.tasks.vlm.explain`); otherwise the generated answers (and rationales)
        by the image regions behind their log-probability (`medmm.tasks.vlm.explain_generation`)."""
        from medmm.tasks.vlm.explain import vlm_explainable
        from medmm.tasks.vlm.explain_generation import generation_explainable

        if self.prompts.cot or not all(self.instruction(s).options for s in samples):
            return generation_explainable(self, samples)
        return vlm_explainable(self, samples)

    def instruction(self, sample: Sample) -> Instruction:
        return vqa_instruction(sample, self.prompts, self.answers, self.config.max_images, self.config.answer_options)

    def compute_metrics(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """medmm's VQA scores (normalised answers, closed/open, token F1, CIs by image)."""
        if not records:
            raise MedmmError("no evaluation records to score")
        out = scoring.vqa_metrics(records, self.config.bootstrap_resamples)
        out["answered_by_options_fraction"] = sum(r["answered_by"] == "options" for r in records) / len(records)
        return out

    def floors(self, train_samples: list[Sample], samples: list[Sample], records: list[dict[str, Any]]) -> dict[str, Any]:
        """Answer prior and question-only nearest neighbour, fit on the training questions."""
        return scoring.vqa_floors(train_samples, records, self.config.bootstrap_resamples)


@register_task("report_vlm")
class ReportVLMTask(VLMTask):
    """Report generation (findings, captions) with a generative VLM."""

    mode = "report"
    zero_shot_dataset = "iu_xray"
    headline = Headline("val/cider_d", "max")

    def explainable(self, samples: list[Sample]) -> Any:
        """The generated reports by the image regions behind their log-probability
        (`medmm.tasks.vlm.explain_generation`)."""
        from medmm.tasks.vlm.explain_generation import generation_explainable

        return generation_explainable(self, samples)

    def instruction(self, sample: Sample) -> Instruction:
        return report_instruction(sample, self.prompts, self.config.text_field, self.config.max_images)

    def compute_metrics(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """BLEU-1..4, METEOR, ROUGE-L, CIDEr-D and clinical efficacy with CIs by study."""
        if not records:
            raise MedmmError("no evaluation records to score")
        try:
            return scoring.report_metrics(records, self.config.bootstrap_resamples)
        except ValueError as exc:
            raise MedmmError(f"{exc} (model.text_field is {self.config.text_field!r})") from exc

    def floors(self, train_samples: list[Sample], samples: list[Sample], records: list[dict[str, Any]]) -> dict[str, Any]:
        """The report of the nearest training image by pixel thumbnails."""
        return scoring.report_floors(train_samples, samples, records, self.config.text_field, self.config.bootstrap_resamples)
