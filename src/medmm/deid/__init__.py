"""De-identification of report text (rules + dictionaries, optional token-classification model) and of
DICOM headers (PS3.15 Annex E Basic Application Level Confidentiality Profile).

    from medmm.deid import TextDeidentifier
    deid = TextDeidentifier(mode="surrogate", seed=0)
    clean, spans = deid.deidentify("Seen by Dr. Jane Roe on 03/04/2019.", patient_id="p1")

Torch-free unless a model is asked for; pydicom is a core dependency, the profile table comes with
the `deid` extra (dicom-anonymizer).
"""

from medmm.deid.spans import CATEGORIES, Span
from medmm.deid.text import TextDeidentifier, deidentify_csv, deidentify_text

__all__ = ["CATEGORIES", "Span", "TextDeidentifier", "deidentify_text", "deidentify_csv"]
