"""`medmm explain` for generative VLMs: a question answered among options seen as a classifier.

The explained score of an option is the log-likelihood the model gives its answer turn (as when it
answers, `medmm.tasks.vlm.answering`); the classes are the options. medmm.interpret then computes,
per sample: integrated gradients and occlusion heatmaps on the model's own pixel input with their
deletion/insertion faithfulness checks, token attributions of the user turn's words (layer
integrated gradients at the language model's token embeddings) and exact Shapley contributions of
the image and the question text (absent image: an all-zero pixel tensor; absent text: an empty
user turn). Grad-CAM and attention maps are not offered (no feature maps are exposed).

The chat prompt is split into template prefix (role markers, the expanded image tokens), the user
text and template suffix; the user text is tokenised on its own, so attributions fall on its
words. This view needs a processor that gives one (3, H, W) pixel tensor per image (LLaVA,
Gemma 3 / MedGemma). Idefics3 / SmolVLM (image tiles) and Qwen2-VL (flattened patches) are
explained instead by `medmm.tasks.vlm.explain_generation` on their raw images: the log-likelihood
of the chosen option's answer turn (the score options are ranked by) under occlusion of the raw
image, each occluded image re-run through the processor; the page says that gradient methods,
token attributions and modality contributions are not available there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from medmm.data.schema import Sample
from medmm.errors import MedmmError
from medmm.tasks.vlm.explain_raw import gives_pixel_images

if TYPE_CHECKING:
    from medmm.tasks.vlm.task import VLMTask


class _TokenEmbedding(nn.Module):
    """The language model's token embedding, applied to the user text only: the layer at which
    token attributions are taken (the template's tokens are embedded outside it)."""

    def __init__(self, embed: nn.Module):
        super().__init__()
        self.embed = embed

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embed(ids)


class _TextView:
    """The user text as medmm.interpret sees a text encoder: `tokenize`, `tokenizer`, `token_embed`."""

    def __init__(self, tokenizer: Any, token_embed: nn.Module):
        self.tokenizer = tokenizer
        self.token_embed = token_embed

    def tokenize(self, texts: list[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        rows = [self.tokenizer(t, add_special_tokens=False)["input_ids"][:max_length] for t in texts]
        width = max([1, *(len(r) for r in rows)])
        ids = torch.full((len(rows), width), int(self.tokenizer.pad_token_id), dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}


def vlm_explainable(task: VLMTask, samples: list[Sample]) -> Any:
    """An `Explainable` of `samples` (questions sharing one option set, one image each)."""
    from medmm.interpret.explainable import Explainable, ModelOutput

    vlm, system = task.vlm, task.prompts.system
    items = [task.instruction(s) for s in samples]
    first_images = items[0].images
    probe = vlm.processor(text=[vlm.chat_prompt(items[0].text, len(first_images), system)], images=[first_images],
                          return_tensors="pt").get("pixel_values")
    if not gives_pixel_images(probe, len(first_images)):
        # tiles or patches (Idefics3, Qwen2-VL): the chosen option's score on the raw image, which also
        # takes questions with different options and several views (so checked before those limits)
        from medmm.tasks.vlm.explain_generation import generation_explainable

        return generation_explainable(task, samples)
    options = items[0].options
    for it in items:
        if not it.options:
            raise MedmmError(f"sample {it.id}: an open question has no options to explain; explain closed (yes/no or "
                             "'A or B') questions, whose answer is a choice among options")
        if it.options != options:
            raise MedmmError(f"samples {items[0].id} and {it.id} offer different options ({options} vs {it.options}); "
                             "explain questions with the same options together")
        if len(it.images) != 1:
            raise MedmmError(f"sample {it.id}: explanations take one image per question (model.max_images 1)")
    prefix_text, suffix_text = _template_parts(vlm, items, system)
    tok = vlm.tokenizer
    first = vlm.processor(text=[prefix_text], images=[items[0].images], return_tensors="pt")
    prefix = first["input_ids"][0]
    pixels = [vlm.processor(text=[prefix_text], images=[it.images], return_tensors="pt")["pixel_values"] for it in items]
    suffix = torch.tensor(tok(suffix_text, add_special_tokens=False)["input_ids"], dtype=torch.long)
    answers = [torch.tensor(tok(vlm.completion(items[0].text, o, 1, system), add_special_tokens=False)["input_ids"],
                            dtype=torch.long) for o in options]
    embed = vlm.base_model.get_input_embeddings()
    view = _TextView(tok, _TokenEmbedding(embed))
    image_token = getattr(vlm.base_model.config, "image_token_id", None)
    if image_token is None:
        image_token = getattr(vlm.base_model.config, "image_token_index", None)
    typed = "token_type_ids" in first

    def forward(images: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> ModelOutput:
        text = view.token_embed(ids)  # (k, L, d): the layer token attributions are taken at
        seqs, id_seqs, lengths = [], [], []
        for r in range(ids.shape[0]):
            keep = mask[r].bool()
            for ans in answers:
                parts = (prefix, ids[r][keep], suffix, ans)
                seqs.append(torch.cat([embed(prefix), text[r][keep], embed(suffix), embed(ans)]))
                id_seqs.append(torch.cat(parts))
                lengths.append(len(ans))
        width = max(len(s) for s in seqs)
        emb = torch.zeros(len(seqs), width, seqs[0].shape[-1], dtype=seqs[0].dtype)
        att = torch.zeros(len(seqs), width, dtype=torch.long)
        tt = torch.zeros(len(seqs), width, dtype=torch.long)
        for j, (s, sid) in enumerate(zip(seqs, id_seqs, strict=True)):  # left padding: every answer ends at the last column
            emb[j, width - len(s):] = s
            att[j, width - len(s):] = 1
            tt[j, width - len(s):] = (sid == image_token).long()
        kw = {"token_type_ids": tt} if typed else {}
        px = images.repeat_interleave(len(answers), dim=0).to(vlm.base_model.dtype)
        logits = vlm.model(inputs_embeds=emb, attention_mask=att, pixel_values=px, **kw).logits.float()
        logp = logits.log_softmax(-1)
        scores = []
        for j, n in enumerate(lengths):
            targets = id_seqs[j][-n:]
            scores.append(logp[j, width - n - 1: width - 1].gather(-1, targets[:, None]).sum())
        return ModelOutput(torch.stack(scores).view(ids.shape[0], len(answers)))

    texts = view.tokenize([it.text for it in items])
    images = torch.cat(pixels).to(vlm.base_model.dtype)
    with torch.no_grad():
        targets = forward(images, texts["input_ids"], texts["attention_mask"]).logits.argmax(-1)
    return Explainable(forward, list(options), images, texts["input_ids"], texts["attention_mask"], view, targets,
                       [it.meta.get("question", it.text) for it in items], task.name,
                       references=[it.meta.get("reference") for it in items], text_name="user turn")


def _template_parts(vlm: Any, items: list[Any], system: str | None) -> tuple[str, str]:
    """The chat prompt's text before and after the user text (the same for every item)."""
    text = items[0].text.strip()
    prompt = vlm.chat_prompt(text, 1, system)
    at = prompt.find(text)
    if at < 0:
        raise MedmmError("the chat template changes the user text; cannot locate it to attribute its words")
    prefix, suffix = prompt[:at], prompt[at + len(text):]
    for it in items:
        if vlm.chat_prompt(it.text.strip(), 1, system) != prefix + it.text.strip() + suffix:
            raise MedmmError(f"sample {it.id}: the chat template wraps its text differently from the first sample's")
    return prefix, suffix
