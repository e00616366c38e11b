"""What a VLM is asked: the instruction per task and dataset, the options line of a closed question,
the chain-of-thought request, and how a generated text splits into rationale and answer.

Templates are plain `str.format` strings: ``{question}`` (VQA) and ``{options}`` (the options
line). The model's own chat template (`VisionLanguageModel.chat_prompt`) wraps the rendered
instruction with its role markers and image placeholders; these templates never contain either.
A config replaces any of them (`model.prompt`, `model.options_prompt`, `model.cot_prompt`).
"""

from __future__ import annotations

from dataclasses import dataclass

# VQA: LLaVA-1.5's short-answer instruction, which LLaVA-Med and most VQA-RAD/SLAKE evaluations reuse.
VQA_PROMPT = "{question}\nAnswer the question using a single word or phrase."
# Report generation, per dataset (the dataset a sample comes from; "default" for any other).
REPORT_PROMPTS = {
    "iu_xray": "Describe the findings of this chest X-ray.",
    "mimic_cxr": "Describe the findings of this chest X-ray.",
    "medpix2": "Describe the findings in this medical image.",
    "roco": "Write a caption for this radiology image.",
    "default": "Write the radiology report for this image.",
}
OPTIONS_PROMPT = "Choose one of: {options}."
# mode -> (the request added to the instruction, the cue that precedes the final answer)
COT_PROMPTS = {
    "question": (("Think step by step about what the image shows, then give the final answer on a last line that starts "
             "with 'Answer:'."),
            "Answer:"),
    "report": ("First list what you observe in the image, then write the report after a line that starts with 'Report:'.",
               "Report:"),
}


@dataclass(frozen=True)
class PromptSpec:
    """The resolved prompt settings of a task (recorded in every metrics file's protocol).

    template: the instruction (None: the default of the mode and the sample's dataset).
    options: the line added when a closed question is answered among options ({options}).
    cot: the chain-of-thought request added at the end (None: no chain of thought).
    cue: the marker before the final answer in a chain-of-thought output.
    system: an optional system message.
    """

    mode: str
    template: str | None
    options: str
    cot: str | None
    cue: str
    system: str | None

    def instruction(self, dataset: str) -> str:
        """The template used for a sample of `dataset`."""
        if self.template is not None:
            return self.template
        if self.mode == "question":
            return VQA_PROMPT
        return REPORT_PROMPTS.get(dataset, REPORT_PROMPTS["default"])

    def render(self, dataset: str, question: str = "", options: list[str] | None = None) -> str:
        """The user turn's text for one sample."""
        parts = [self.instruction(dataset).format(question=question.strip())]
        if options:
            parts.append(self.options.format(options=", ".join(options)))
        if self.cot:
            parts.append(self.cot)
        return "\n".join(parts)

    def record(self) -> dict[str, object]:
        """JSON description for the metrics protocol."""
        return {
            "instruction": self.template or (VQA_PROMPT if self.mode == "question" else {"per dataset": REPORT_PROMPTS}),
            "options_line": self.options, "chain_of_thought": self.cot, "answer_cue": self.cue if self.cot else None,
            "system": self.system,
            "wrapped_by": "the model's own chat template (processor chat_template), images before the text",
        }


def prompt_spec(mode: str, template: str | None, options: str | None, chain_of_thought: bool,
                cot: str | None, system: str | None) -> PromptSpec:
    """A PromptSpec from the config values, defaults filled in per mode."""
    default_cot, cue = COT_PROMPTS[mode]
    return PromptSpec(mode=mode, template=template, options=options or OPTIONS_PROMPT,
                      cot=(cot or default_cot) if chain_of_thought else None, cue=cue, system=system)


def split_rationale(text: str, cue: str) -> tuple[str, str]:
    """(rationale, answer) of a chain-of-thought output: the answer follows the LAST `cue`
    (case-insensitive); without a cue the whole text is the answer and the rationale is empty."""
    at = text.lower().rfind(cue.lower())
    if at < 0:
        return "", text.strip()
    return text[:at].strip(), text[at + len(cue):].strip()


def short_answer(text: str) -> str:
    """A VQA answer is its first non-empty line (models sometimes go on after answering)."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""
