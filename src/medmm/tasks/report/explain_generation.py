"""`medmm explain` for a report_generation run whose decoder is a pretrained causal LM
(`model.decoder.pretrained`): the generated report by the image regions behind it.

Such a decoder reads the image as a prefix and has no cross-attention to map sentences to regions
(what the word decoder's runs show), so each study's report is explained as generated text
(`medmm.interpret.generation`): the report is generated as `medmm predict` generates it without
consensus decoding (`decoding`: greedy or beam search), then held fixed, and its summed token
log-probability (EOS included when it ended before max_length) is attributed to the pixels of each
view, the other views held fixed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from medmm.data.schema import Sample
from medmm.interpret.explainable import GeneratedText
from medmm.models.decoders import sequence_logprobs

if TYPE_CHECKING:
    from medmm.tasks.report.task import ReportGenerationTask


def prefix_report_explainable(task: ReportGenerationTask, samples: list[Sample]) -> GeneratedText:
    """A `GeneratedText` of the studies `samples` (the task in eval mode)."""
    batch = task.collate(samples)
    ids, _ = task.generate_ids(batch)
    counts = batch["view_counts"].tolist()
    starts = [sum(counts[:i]) for i in range(len(samples))]
    views = [batch["images"][s : s + n] for s, n in zip(starts, counts, strict=True)]
    max_length = task.generation.max_length

    def score(i: int, v: int, images: torch.Tensor) -> torch.Tensor:
        k, own = images.shape[0], views[i]
        # k copies of study i, view v replaced by `images` (gradients reach them)
        rows = [images.to(own.dtype) if j == v else own[j].expand(k, *own.shape[1:]) for j in range(own.shape[0])]
        sub = {"images": torch.stack(rows, 1).reshape(k * own.shape[0], *own.shape[1:]),
               "view_counts": torch.full((k,), own.shape[0], dtype=torch.long)}
        memory, pad, _ = task.encode(sub)
        return sequence_logprobs(task.decoder, memory, pad, [ids[i]] * k, max_length)[0]

    records = [{"prompt": None, "output": task.tokenizer.decode(g), "answer": task.tokenizer.decode(g), "rationale": None,
                "reference": ref or None, "scored": "the generated report (EOS included)"}
               for g, ref in zip(ids, batch["references"], strict=True)]
    return GeneratedText(score, [v.detach() for v in views], records, task.name)
