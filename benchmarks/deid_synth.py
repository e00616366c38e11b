"""A seeded generator of synthetic PHI inserted at realistic places of real report text, with the
gold spans, for the de-identification benchmark (deid.py) and its tests. Kept here, beside the
benchmark, not in the library: only measurements use it (and it needs Faker, a test extra).

PHI values come from Faker (MIT; en_US providers), not from medmm's bundled lists, so a name the
detector finds is not simply one it was given. Faker's fictional towns are not in the bundled city
list either; towns appear in address lines ("Town, ST 12345") and in "transferred from <Town>".
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from medmm.errors import require

_INST_KINDS = ["Memorial Hospital", "Medical Center", "Regional Medical Center", "Clinic", "Children's Hospital",
               "Health System", "Imaging Center", "Community Hospital", "General Hospital", "Cancer Center"]
_DEVICE_LABELS = ["serial number", "S/N:", "SN", "serial no.", "device ID", "Serial #"]
_DEVICES = ["pacemaker", "ICD", "port-a-cath", "spinal cord stimulator", "insulin pump", "cochlear implant"]
_INDICATIONS = ["cough", "shortness of breath", "chest pain", "fever", "fall", "weakness"]


@dataclass
class Synthetic:
    """A report with inserted PHI: text and gold spans (start, end, category)."""

    text: str
    spans: list[tuple[int, int, str]] = field(default_factory=list)
    patient_id: str = ""


class _Builder:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.spans: list[tuple[int, int, str]] = []
        self.n = 0

    def add(self, text: str, category: str | None = None) -> None:
        if category:
            self.spans.append((self.n, self.n + len(text), category))
        self.parts.append(text)
        self.n += len(text)


class PhiGenerator:
    """Seeded; `make(sections)` turns real report sections into one report with PHI of every kind."""

    def __init__(self, seed: int = 0):
        faker = require("faker", "test", "the synthetic PHI generator")
        self.rng = random.Random(seed)
        self.fake = faker.Faker("en_US")
        self.fake.seed_instance(seed)
        from medmm.deid import lists

        # Half the towns are real (the bundled GeoNames list), half Faker's fictional ones.
        self._real_towns = sorted(lists.cities())

    # --- values -------------------------------------------------------------------------------
    def name(self, b: _Builder, style: str | None = None) -> None:
        f = self.fake
        style = style or self.rng.choice(["first last", "first mi last", "last, first", "last"])
        value = {"first last": f"{f.first_name()} {f.last_name()}",
                 "first mi last": f"{f.first_name()} {self.rng.choice('ABCDEFGHJKLMNPRSTW')}. {f.last_name()}",
                 "last, first": f"{f.last_name()}, {f.first_name()}",
                 "last": f.last_name()}[style]
        b.add(value, "NAME")

    def date(self) -> str:
        d = self.fake.date_between(start_date="-30y", end_date="today")
        fmt = self.rng.choice(["%m/%d/%Y", "%-m/%-d/%Y", "%m/%d/%y", "%Y-%m-%d", "%B %-d, %Y", "%b %-d, %Y",
                               "%-d %B %Y", "%d-%b-%Y", "%B %Y", "%m-%d-%Y"])
        return d.strftime(fmt)

    def phone(self) -> str:
        return self.fake.phone_number()

    def institution(self) -> str:
        f, r = self.fake, self.rng
        return r.choice([f"{f.last_name()} {r.choice(_INST_KINDS)}", f"St. {f.first_name()}'s Hospital",
                         f"University of {f.city()} Medical Center", f"{f.city()} {r.choice(_INST_KINDS)}"])

    def mrn(self) -> str:
        return self.rng.choice([self.fake.numerify("########"), self.fake.bothify("??######").upper(),
                                self.fake.numerify("#######")])

    # --- one report -----------------------------------------------------------------------------
    def make(self, indication: str, findings: str, impression: str, patient_id: str = "") -> Synthetic:
        """Header, history, comparison, findings, impression and sign-off with PHI of every category."""
        r, f = self.rng, self.fake
        b = _Builder()
        b.add("Patient: ")
        self.name(b, r.choice(["first last", "last, first", "first mi last"]))
        b.add("   MRN: ")
        b.add(self.mrn(), "MRN")
        b.add("   DOB: ")
        b.add(self.date(), "DATE")
        b.add(f"\n{r.choice(['Accession', 'Accession #', 'Acc No.', 'ACC'])}: ")
        b.add(f.bothify(r.choice(["##########", "RAD-####-#####", "A########"])), "ACCESSION")
        b.add("   Exam date: ")
        b.add(self.date(), "DATE")
        b.add("\nReferring physician: Dr. ")
        self.name(b, r.choice(["first last", "last"]))
        b.add("\n\nINDICATION: ")
        age = r.choice([r.randint(18, 89), r.randint(90, 104)])
        sex = r.choice(["male", "female", "man", "woman"])
        age_form = r.choice(["{a}-year-old", "{a} year old", "{a} yo", "{a}-yo"])
        head, tail = age_form.split("{a}")
        b.add(head)
        b.add(str(age), "AGE" if age >= 90 else None)
        b.add(f"{tail} {sex}, transferred from ")
        b.add(f.city() if r.random() < 0.5 else r.choice(self._real_towns), "ADDRESS")
        b.add(". ")
        b.add(indication or r.choice(_INDICATIONS).capitalize() + ".")
        b.add("\n\nCOMPARISON: ")
        if r.random() < 0.5:
            b.add("Chest radiograph dated ")
            b.add(self.date(), "DATE")
            b.add(" from ")
            b.add(self.institution(), "INSTITUTION")
            b.add(".")
        else:
            b.add("Outside study of ")
            b.add(self.date(), "DATE")
            b.add(", images from ")
            b.add(self.institution(), "INSTITUTION")
            b.add(" reviewed.")
        b.add("\n\nFINDINGS: ")
        b.add(findings)
        if r.random() < 0.7:
            b.add(f" {r.choice(_DEVICES).capitalize()} in place ({r.choice(_DEVICE_LABELS)} ")
            b.add(f.bothify(r.choice(["???######", "##########", "??-#######"])).upper(), "SERIAL")
            b.add(").")
        b.add("\n\nIMPRESSION: ")
        b.add(impression)
        b.add(r.choice([" Findings discussed with Dr. ", " These results were called to ",
                        " Critical result communicated to "]))
        self.name(b, r.choice(["first last", "last", "first mi last"]))
        b.add(" at ")
        b.add(self.phone(), "PHONE")
        b.add(" on ")
        b.add(self.date(), "DATE")
        b.add(".\n\nElectronically signed by ")
        self.name(b, r.choice(["first last", "first mi last"]))
        b.add(f", {r.choice(['MD', 'M.D.', 'DO'])} on ")
        b.add(self.date(), "DATE")
        b.add("\n")
        b.add(self.institution(), "INSTITUTION")
        b.add(" Department of Radiology, ")
        b.add(f.street_address(), "ADDRESS")
        b.add(", ")
        b.add(f.city(), "ADDRESS")
        b.add(f", {f.state_abbr(include_territories=False)} ")
        b.add(f.zipcode(), "POSTCODE")
        b.add("\nTel ")
        b.add(self.phone(), "PHONE")
        b.add("   Fax ")
        b.add(self.phone(), "FAX")
        b.add("\nQuestions: ")
        b.add(f.email(), "EMAIL")
        b.add("   Portal: ")
        b.add(f.url(), "URL")
        b.add("\n")
        return Synthetic("".join(b.parts), b.spans, patient_id)
