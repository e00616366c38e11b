"""The generator and the detector on real report text (IU X-ray, MedPix 2.0): a small slice of the
benchmark (benchmarks/deid.py runs all 4,428 reports)."""

from __future__ import annotations

import pytest

from conftest import load_benchmark
from medmm.deid import TextDeidentifier
from medmm.metrics.clinical.labeller import label_report

pytest.importorskip("faker")


@pytest.fixture(scope="module")
def reports(shared_data):
    return load_benchmark("deid").load_reports(shared_data)


def test_generator_is_seeded_and_its_gold_spans_point_at_phi() -> None:
    PhiGenerator = load_benchmark("deid_synth").PhiGenerator

    a = PhiGenerator(5).make("Cough.", "Lungs are clear.", "Normal.")
    b = PhiGenerator(5).make("Cough.", "Lungs are clear.", "Normal.")
    assert a == b
    cats = {c for _, _, c in a.spans}
    assert {"NAME", "DATE", "MRN", "ACCESSION", "PHONE", "FAX", "EMAIL", "URL", "ADDRESS", "POSTCODE",
            "INSTITUTION"} <= cats
    for s, e, _ in a.spans:
        assert a.text[s:e].strip() == a.text[s:e] and e > s


@pytest.mark.shared_data
def test_recall_precision_and_labels_on_a_real_slice(reports) -> None:
    PhiGenerator = load_benchmark("deid_synth").PhiGenerator

    gen, deid = PhiGenerator(11), TextDeidentifier()
    sample = reports[::40]  # ~110 reports, both datasets
    missed = total = same = 0
    for _sid, ind, fnd, imp in sample:
        s = gen.make(ind, fnd, imp)
        clean, audit = deid.deidentify(s.text)
        masked = bytearray(len(s.text))
        for a in audit:
            masked[a["start"]:a["end"]] = b"\x01" * (a["end"] - a["start"])
        for start, end, _ in s.spans:
            total += 1
            missed += not all(masked[i] or s.text[i].isspace() for i in range(start, end))
        same += label_report(s.text) == label_report(clean)
    assert missed / total < 0.02, missed
    assert same / len(sample) >= 0.98
    # Real, already de-identified text: (almost) nothing to find.
    found = sum(len(deid.deidentify(f"FINDINGS: {fnd}\nIMPRESSION: {imp}")[1]) for _, _, fnd, imp in sample)
    assert found <= 3
