"""What a task hands to `medmm.interpret.explain`: its model seen as something to explain.

A task's `Task.explainable(samples)` hook returns one of these views (or None when the task
has no explainer); interpret dispatches on the view's type and never on the task's name:

- `Explainable`: the model as a classifier of (images, input_ids, attention_mask); it gets
  heatmaps with faithfulness checks, token attributions and modality Shapley values.
- `WordRegions`: per-sample word- or sentence-to-region maps the task already computed.
- `GeneratedText`: text a generative model wrote (an answer, a report); it gets heatmaps of the
  image regions that drove the log-probability of that text, with faithfulness checks (on the
  model's pixel input, or on the raw image before the processor where there is no pixel image).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from medmm.interpret import render


@dataclass
class ModelOutput:
    """What an explainer's forward returns: logits (B, C), the image features' maps and
    attentions, and the fusion extras (cross-attention etc.)."""

    logits: torch.Tensor
    maps: list[torch.Tensor] = field(default_factory=list)
    attentions: list[torch.Tensor] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    tokens: torch.Tensor | None = None


@dataclass
class Explainable:
    """A task's model seen as a classifier of (images, input_ids, attention_mask).

    forward: the model. classes: output names. images/input_ids/attention_mask: the batch
    inputs (None for a modality the model does not use). text_encoder: for token attributions
    and the empty-text baseline. targets: the class explained per sample (the prediction).
    kind: the task name written into explanations.json. references: per sample, the reference
    answer shown beside the explained class (None where the task has none). text_name: what the
    text input is called in figure titles ("text", "question", ...).
    """

    forward: Callable[[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None], ModelOutput]
    classes: list[str]
    images: torch.Tensor | None
    input_ids: torch.Tensor | None
    attention_mask: torch.Tensor | None
    text_encoder: Any
    targets: torch.Tensor
    texts: list[str]
    kind: str
    references: list[str | None] | None = None
    text_name: str = "text"


@dataclass
class WordRegions:
    """Word-to-region maps of a batch: one record per sample.

    unit "word": each record has "input_ids", "maps" (L, h, w) and "method" (e.g. a dual
    encoder's). unit "sentence": each record has "report" (the generated text) and "sentences"
    [{"text", "map"}] (e.g. a report generator's). images: the batch's image rows; starts[i]:
    the row of sample i's first view.
    """

    kind: str
    unit: Literal["word", "sentence"]
    records: list[dict[str, Any]]
    images: torch.Tensor
    starts: list[int]
    text_encoder: Any = None


def token_strings(enc: Any, ids: list[int]) -> list[str]:
    """Token strings of ids for a medmm text encoder's tokenizer."""
    tok = getattr(enc, "tokenizer", None)
    if tok is not None and hasattr(tok, "convert_ids_to_tokens"):
        return [str(t) for t in tok.convert_ids_to_tokens(ids)]
    if tok is not None and hasattr(tok, "id_to_token"):
        return [str(tok.id_to_token(i)) for i in ids]
    return [str(i) for i in ids]


def decode_text(enc: Any, ids: torch.Tensor, mask: torch.Tensor) -> str:
    """The words of one tokenized row (word pieces merged), for the explanation page."""
    n = int(mask.sum())
    words, _ = render.merge_wordpieces(token_strings(enc, ids[:n].tolist()), [0.0] * n)
    return " ".join(words)


@dataclass
class GeneratedText:
    """Text a generative model wrote for each sample, to explain by the image regions that drove it.

    score(i, v, images (K, C, H, W)) -> (K,): the summed log-probability sample i's generated
    tokens get when the model sees `images` in place of its view v (its other views, the prompt
    and the generated text held fixed); differentiable in `images`. images: per sample, its
    views (V, C, H, W) as the model's own pixel input. pixels "raw" (processors that give tiles or
    patches, not one pixel image): images are per sample a list of its raw views (C, H, W), values
    in [0, 1], each at its own size; score takes raw images (K, C, H, W) of view v's size, re-runs
    the model's processor on them and is not differentiable (occlusion of the raw image only);
    pixel_note says why (e.g. the processor's output shape). records: per sample, what the page shows
    beside the heatmaps: "prompt" (the question or instruction), "output" (the generated text),
    "answer" (the answer taken from it), "rationale" (chain of thought, or None), "reference"
    (or None) and "scored" (which text the log-probability is of). kind: the task name written
    into explanations.json.
    """

    score: Callable[[int, int, torch.Tensor], torch.Tensor]
    images: list[torch.Tensor] | list[list[torch.Tensor]]
    records: list[dict[str, Any]]
    kind: str
    pixels: Literal["model", "raw"] = "model"
    pixel_note: str | None = None
