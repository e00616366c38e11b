"""Clinical report labelling (CheXpert observations) and clinical efficacy metrics."""

from medmm.metrics.clinical.efficacy import (
    binarise,
    clinical_efficacy,
    clinical_efficacy_from_text,
    observation_set,
)
from medmm.metrics.clinical.labeller import (
    COMPETITION_5,
    OBSERVATIONS,
    extract_sections,
    find_mentions,
    label_report,
    label_reports,
)

__all__ = [
    "COMPETITION_5",
    "OBSERVATIONS",
    "binarise",
    "clinical_efficacy",
    "clinical_efficacy_from_text",
    "extract_sections",
    "find_mentions",
    "label_report",
    "label_reports",
    "observation_set",
]
