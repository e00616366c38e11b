"""The evidence behind an output, as a rater reads it.

A predictions line may carry an ``"explanation"`` (plain text) or, as medmm's VQA records do
with ``model.rationale``, a ``"rationale"`` object: the knowledge facts fed to the model, the
options a choice question offered, the predicted question type, the most similar training
question on the same image, and the image cells and words attention weighted most. This module
turns that object into a few short lines a clinician can check against the image. Keys it does
not know are shown as ``key: value`` so nothing the model reported is hidden.

Attention weights are not a proof of what the model used; the rate page says "evidence the
model reports", not "reason".
"""

from __future__ import annotations

import json
from typing import Any

MAX_EXPLANATION = 4000  # characters kept; a rationale longer than this is cut with a marker


def _cells(regions: list[Any]) -> str:
    parts = []
    for r in regions:
        if isinstance(r, dict) and {"row", "col"} <= r.keys():
            grid = r.get("grid") or ["?", "?"]
            weight = r.get("weight")
            text = f"row {r['row'] + 1} col {r['col'] + 1} of {grid[0]}x{grid[1]}"
            parts.append(f"{text} ({weight:.2f})" if isinstance(weight, (int, float)) else text)
    return "; ".join(parts)


def _tokens(tokens: list[Any]) -> str:
    return ", ".join(
        f"{t['token']} ({t['weight']:.2f})" if isinstance(t.get("weight"), (int, float)) else str(t["token"])
        for t in tokens
        if isinstance(t, dict) and "token" in t
    )


def _memory(match: Any) -> str:
    if not isinstance(match, dict) or not match.get("question"):
        return ""
    sim = match.get("similarity")
    text = f'"{match["question"]}"'
    return f"{text} (cosine {sim:.2f})" if isinstance(sim, (int, float)) else text


# key -> (label, formatter); the order is the order shown
_FORMATS: dict[str, tuple[str, Any]] = {
    "options": ("Options the question offered", lambda v: ", ".join(map(str, v))),
    "question_type": ("Predicted question type", str),
    "facts": ("Knowledge facts used", lambda v: "; ".join(map(str, v))),
    "image_words": ("Image read as", str),
    "memory_match": ("Most similar training question on this image", _memory),
    "image_regions": ("Image cells attended most (top-left = row 1 col 1)", _cells),
    "text_tokens": ("Words attended most", _tokens),
}


def explain_rationale(rationale: dict[str, Any]) -> str | None:
    """A rationale object as short "label: value" lines; None when it holds nothing to show."""
    lines = []
    for key, (label, fmt) in _FORMATS.items():
        value = rationale.get(key)
        if value in (None, "", [], {}):
            continue
        try:
            text = fmt(value)
        except (TypeError, ValueError, KeyError, AttributeError):  # not the shape medmm writes: show it raw
            text = json.dumps(value, ensure_ascii=False, default=str)
        if text:
            lines.append(f"{label}: {text}")
    for key, value in rationale.items():
        if key not in _FORMATS and value not in (None, "", [], {}):
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
            lines.append(f"{key}: {shown}")
    text = "\n".join(lines)
    if len(text) > MAX_EXPLANATION:
        text = text[: MAX_EXPLANATION - 12] + " [cut short]"
    return text or None
