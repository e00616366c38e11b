"""Diagnosis samples as instruction records (`DiagnosisTask.instruction_records`): the text
input the model reads (label words masked as in training) and a question listing the classes;
the sample's class as the reply (`medmm.tasks.chat`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medmm.data.schema import Sample
from medmm.tasks.chat import chat_record

SYSTEM = "You are a medical imaging assistant. Classify the case from the image and the text given; answer with one class name."


def diagnosis_instruction_records(samples: list[Sample], target: str, classes: list[str],
                                  label_of: Callable[[Sample], str | None], text_of: Callable[[Sample], str]) -> list[dict[str, Any]]:
    """One record per labelled sample (unlabelled ones are left out, as training leaves them out
    of the loss): the text input, then "Which {target} is it: a, b or c?"; the class as answer."""
    options = f"{', '.join(classes[:-1])} or {classes[-1]}" if len(classes) > 1 else "".join(classes)
    out = []
    for s in samples:
        label = label_of(s)
        if label is None:
            continue
        text = text_of(s).strip()
        question = f"Which {target} is it: {options}?"
        out.append(chat_record(s, SYSTEM, f"{text}\n{question}" if text else question, label))
    return out
