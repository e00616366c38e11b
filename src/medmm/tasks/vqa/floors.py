"""VQA: the protocol record and the trivial floors (`Task.protocol`, `Task.floors` hooks).

Floors (`medmm.metrics.floors.vqa_floors`), fit on the training questions only:
``answer_prior`` (the most frequent training answer of the question's routed type, routed as the
model routes it) and ``question_nn`` (the answer of the most similar training question; the image
is never looked at). A model that does not beat them has not shown that it reads the image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medmm.data.schema import Sample
from medmm.tasks.vqa.answers import answer_type, is_closed_question

if TYPE_CHECKING:
    from medmm.tasks.vqa.task import VQATask

VQA_METRIC_DEFINITIONS = {
    "overall_accuracy": "exact match of the normalised answer (medmm.metrics.vqa.normalise_answer) over all questions",
    "closed_accuracy": "exact match over the questions whose REFERENCE answer type is closed (a scoring split, "
                       "not a model input)",
    "open_exact_match": "exact match over the questions whose reference answer type is open",
    "open_token_f1": "mean token F1 of open answers", "ci": "95% percentile bootstrap, resampling images",
    "answer_type_routing_accuracy": "fraction of questions the model routed to their annotated type",
}


def vqa_protocol(task: VQATask) -> dict[str, Any]:
    """Metric definitions and how questions were routed."""
    return {
        "metric_definitions": VQA_METRIC_DEFINITIONS,
        "oracle_inputs": [],  # routing by annotation: VQATask.oracle_inputs(config)
        "routing": task.router.kind if task.config.routing == "predicted" and task.router else "answer_type annotation",
        "fitted_on_validation": [],
        "selection_metrics": [],
    }


def vqa_floors(task: VQATask, train_samples: list[Sample], samples: list[Sample],
               records: list[dict[str, Any]]) -> dict[str, Any]:
    """Answer prior and question-only nearest neighbour on the model's questions."""
    from medmm.metrics.floors import vqa_floors as floors

    train = [s for s in train_samples if s.text.get("question", "").strip() and s.text.get("answer", "").strip()]
    questions = [s.text["question"] for s in train]
    train_closed = [is_closed_question(q, answer_type(s)) for q, s in zip(questions, train, strict=True)]
    routed = [r.get("routed_type", r.get("answer_type")) == "CLOSED" for r in records]
    return floors(questions, [s.text["answer"] for s in train], train_closed,
                  [str(r["question"]) for r in records], [str(r["reference"]) for r in records],
                  [r.get("answer_type") for r in records], routed, [str(r["prediction"]) for r in records],
                  groups=[str(r.get("group") or r["id"]) for r in records], n_resamples=task.config.bootstrap_resamples)
