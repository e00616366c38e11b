"""`medmm explain` for text a generative VLM wrote: open answers, reports, chain-of-thought outputs.

Each sample is answered as `medmm predict` answers it (`answering.answer_batch`: the same prompt,
decoding and option scoring); the text the answer rests on is then held fixed and its summed
log-probability, as a function of the model's pixel input, is what `medmm.interpret.generation`
attributes to image regions:
- a generated answer or report: its generated tokens (the text as decoded, re-tokenised after
  the prompt; a model that stopped at once: its end-of-turn token);
- a question answered among options with chain of thought: the reasoning followed by the answer
  cue and the chosen option, ended by the end-of-turn token (what the option was scored by);
- a question answered among options without it: the chosen option's assistant turn (the
  classifier view of `medmm.tasks.vlm.explain` explains those when every sample is closed).
Several images (IU X-ray's two views): each view gets its heatmaps, the other views held fixed.
Families whose processor gives one (3, H, W) pixel tensor per image (LLaVA, Gemma 3 / MedGemma):
the score is a function of that tensor (occlusion and integrated gradients). Families whose
processor gives image tiles (Idefics3 / SmolVLM) or flattened patches (Qwen2-VL): the score is a
function of the raw images, each re-run through the processor (`medmm.tasks.vlm.explain_raw`),
explained by occlusion of the raw image in its own coordinates; the page says gradient methods
are unavailable for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from medmm.data.schema import Sample
from medmm.interpret.explainable import GeneratedText
from medmm.tasks.vlm.answering import answer_batch, to_model
from medmm.tasks.vlm.explain_raw import gives_pixel_images, pixel_note, raw_generated_text

if TYPE_CHECKING:
    from medmm.tasks.vlm.task import VLMTask


def generation_explainable(task: VLMTask, samples: list[Sample]) -> GeneratedText:
    """A `GeneratedText` of `samples` (one image each): their answers as `medmm predict` gives them."""
    vlm, spec = task.vlm, task.prompts
    items = [task.instruction(s) for s in samples]
    with torch.no_grad():
        answers = answer_batch(vlm, items, spec, short=task.mode == "question", max_new_tokens=task.max_new_tokens,
                               num_beams=task.config.num_beams)
    batches, records, rows, note = [], [], [], None
    for it, a in zip(items, answers, strict=True):
        n = len(it.images)
        prompt = vlm.chat_prompt(it.text, n, spec.system)
        if a.answered_by == "options":
            said = f"{a.rationale or ''}\n{spec.cue} {a.prediction}".strip() if spec.cot else a.prediction
            completion, scored = vlm.completion(it.text, said, n, spec.system), (
                "the rationale and the chosen option" if spec.cot else "the chosen option")
        elif a.output:
            completion, scored = a.output, "the generated text"
        else:  # the model ended its turn at once: what it generated is the end-of-turn token
            completion, scored = vlm.completion(it.text, "", n, spec.system), "the end-of-turn token (empty output)"
        enc = to_model(vlm, vlm.encode([prompt], [it.images], [completion]))
        if note is None and not gives_pixel_images(enc.get("pixel_values"), n):  # tiles or patches: the raw images
            note = pixel_note(vlm.processor, enc.get("pixel_values"), n)
        batches.append(enc)
        rows.append((prompt, list(it.images), completion))
        records.append({"prompt": it.meta.get("question", it.text), "output": a.output if a.output is not None else a.prediction,
                        "answer": a.prediction, "rationale": a.rationale, "reference": it.meta.get("reference") or None,
                        "scored": scored})
    if note is not None:
        return raw_generated_text(vlm, rows, records, task.name, note)
    dtype = vlm.base_model.dtype

    def score(i: int, v: int, images: torch.Tensor) -> torch.Tensor:
        enc, k = batches[i], images.shape[0]
        own = enc["pixel_values"]
        # rows of (view 1, ..., view V) per copy, view v replaced by `images` (gradients reach them)
        views = [images.to(own.device, dtype) if j == v else own[j].expand(k, *own.shape[1:]) for j in range(own.shape[0])]
        batch = {key: val.repeat(k, *[1] * (val.dim() - 1)) for key, val in enc.items() if key != "pixel_values"}
        batch["pixel_values"] = torch.stack(views, 1).reshape(k * own.shape[0], *own.shape[1:])
        return vlm.completion_logprobs(batch)

    return GeneratedText(score, [b["pixel_values"].detach() for b in batches], records, task.name)
