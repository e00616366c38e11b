"""How a VLM answers a batch of instructions: free generation, and options chosen by likelihood.

A question with options (yes/no, or the alternatives an "A or B" question names) is answered by
the option whose answer tokens the model finds most likely (summed log-probability of the
assistant turn `VisionLanguageModel.completion` renders for it), so the answer is always one of
them. Every other instruction is answered by deterministic generation (greedy or beam search).
With chain of thought the model first generates its reasoning; the reasoning is kept as the
record's rationale and, for a question with options, the options are scored after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from medmm.models.vlm import VisionLanguageModel
from medmm.tasks.vlm.instructions import Instruction
from medmm.tasks.vlm.prompts import PromptSpec, short_answer, split_rationale
from medmm.tasks.vlm.scoring import best_option


@dataclass
class Answer:
    """The answer to one instruction and how it was reached."""

    prediction: str
    answered_by: str  # "options" or "generation"
    output: str | None = None  # the generated text, when there was generation
    rationale: str | None = None  # chain of thought only
    option_logprobs: dict[str, float] | None = None


def to_model(vlm: VisionLanguageModel, enc: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Processor tensors on the model's device; floating tensors (pixels) in the model's dtype."""
    device, dtype = vlm.device, vlm.base_model.dtype
    return {k: v.to(device, dtype=dtype) if v.is_floating_point() else v.to(device) for k, v in enc.items()}


def _prompts(vlm: VisionLanguageModel, items: list[Instruction], spec: PromptSpec) -> list[str]:
    return [vlm.chat_prompt(it.text, len(it.images), spec.system) for it in items]


def answer_batch(vlm: VisionLanguageModel, items: list[Instruction], spec: PromptSpec, *, short: bool,
                 max_new_tokens: int, num_beams: int) -> list[Answer]:
    """Answers for `items` (in order). `short`: a VQA answer is the first line of the output."""
    generate = [i for i, it in enumerate(items) if spec.cot or not it.options]
    outputs: dict[int, str] = {}
    if generate:
        sub = [items[i] for i in generate]
        enc = to_model(vlm, vlm.encode(_prompts(vlm, sub, spec), [it.images for it in sub]))
        outputs = dict(zip(generate, vlm.generate(enc, max_new_tokens=max_new_tokens, num_beams=num_beams), strict=True))
    parsed: dict[int, tuple[str | None, str]] = {}
    for i, text in outputs.items():
        rationale, final = split_rationale(text, spec.cue) if spec.cot else (None, text)
        parsed[i] = (rationale, short_answer(final) if short else final.strip())
    scored = _score_options(vlm, items, spec, {i: r for i, (r, _) in parsed.items()})
    answers = []
    for i, it in enumerate(items):
        rationale, generated = parsed.get(i, (None, ""))
        if i in scored:
            lps = scored[i]
            answers.append(Answer(it.options[best_option(lps)], "options", outputs.get(i), rationale,
                                  dict(zip(it.options, (round(v, 4) for v in lps), strict=True))))
        else:
            answers.append(Answer(generated, "generation", outputs[i], rationale))
    return answers


def _score_options(vlm: VisionLanguageModel, items: list[Instruction], spec: PromptSpec,
                   rationales: dict[int, str | None]) -> dict[int, list[float]]:
    """Item index -> log-likelihood of each of its options (after its rationale with chain of thought)."""
    rows: list[tuple[int, str, list[Any], str]] = []
    for i, it in enumerate(items):
        prompt = vlm.chat_prompt(it.text, len(it.images), spec.system)
        for opt in it.options:
            said = f"{rationales.get(i) or ''}\n{spec.cue} {opt}".strip() if spec.cot else opt
            rows.append((i, prompt, it.images, vlm.completion(it.text, said, len(it.images), spec.system)))
    if not rows:
        return {}
    enc = to_model(vlm, vlm.encode([r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]))
    with torch.no_grad():
        lps = vlm.completion_logprobs(enc).tolist()
    out: dict[int, list[float]] = {}
    for (i, *_), lp in zip(rows, lps, strict=True):
        out.setdefault(i, []).append(float(lp))
    return out
