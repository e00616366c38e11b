"""DICOM header de-identification per PS3.15 Annex E, Basic Application Level Confidentiality Profile.

The profile's attribute table (Table E.1-1) is not in pydicom (which has only the profile's code,
CID 7050), and pydicom/deid 0.4.13 ships recipes (pixel filters, header actions), not that table;
dicom-anonymizer (BSD-3-Clause, `deid` extra) ships it as data, edition 2026c (its module
`dicomfields_2026c`), which is what is used here. Actions (Annex E.1.1):
  X remove, Z zero-length value, D dummy value, U remap UID, K keep (attributes not in the table).
Compound actions pick the most removing one the profile allows: X/Z, X/D, X/Z/D -> X; Z/D -> Z;
X/Z/U* -> a sequence is kept with its items de-identified (their UIDs remapped), anything else removed.
Private tags are removed (the profile's default without the Retain Safe Private option). Pixel Data
is never read or rewritten. UIDs become 2.25.<HMAC-SHA256(secret, uid)>: consistent across files
and runs that share the secret, irreversible without it.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Any

from medmm.errors import BadInputError, require

PROFILE_EDITION = "dicomfields_2026c"
_MODULE = f"dicomanonymizer.dicom_anonymization_databases.{PROFILE_EDITION}"


def profile_actions() -> tuple[dict[int, str], list[tuple[int, int, int, int, str]]]:
    """({tag: action} for plain tags, [(group, elem, group_mask, elem_mask, action)] for repeating groups)."""
    table = require(_MODULE, "deid", "the DICOM basic-profile attribute table")
    plain: dict[int, str] = {}
    masked: list[tuple[int, int, int, int, str]] = []
    for name, action in (("D_TAGS", "D"), ("Z_TAGS", "Z"), ("X_TAGS", "X"), ("U_TAGS", "U"),
                         ("Z_D_TAGS", "Z"), ("X_Z_TAGS", "X"), ("X_D_TAGS", "X"), ("X_Z_D_TAGS", "X"),
                         ("X_Z_U_STAR_TAGS", "U*")):
        for t in getattr(table, name):
            if len(t) == 2:
                plain[(t[0] << 16) | t[1]] = action
            else:
                masked.append((*t, action))
    return plain, masked


def _dummy(vr: str) -> Any:
    """A dummy value of the element's VR (Annex E 'D')."""
    return {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000Y", "IS": "0", "DS": "0",
            "UI": "2.25.0", "PN": "ANONYMOUS", "CS": "ANON", "AE": "ANON"}.get(
        vr, 0 if vr in ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV") else
        b"" if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN") else "ANONYMOUS")


class DicomDeidentifier:
    """Applies the profile to datasets; keeps the UID and patient-id maps of the run."""

    def __init__(self, secret: bytes | None = None):
        self.secret = secret or secrets.token_bytes(32)
        self.plain, self.masked = profile_actions()
        self.uid_map: dict[str, str] = {}

    def remap_uid(self, uid: str) -> str:
        """The UID's replacement under this secret."""
        if uid not in self.uid_map:
            digest = hmac.new(self.secret, uid.encode(), hashlib.sha256).digest()[:16]
            self.uid_map[uid] = f"2.25.{int.from_bytes(digest, 'big')}"
        return self.uid_map[uid]

    def action(self, tag: int) -> str | None:
        """The profile's action for a tag, None when the profile keeps it."""
        if tag in self.plain:
            return self.plain[tag]
        group, elem = tag >> 16, tag & 0xFFFF
        for g, e, gm, em, act in self.masked:
            if group & gm == g and elem & em == e:
                return act
        return None

    def apply(self, ds: Any) -> None:
        """De-identify a pydicom Dataset in place (recursing into sequences)."""
        from pydicom.sequence import Sequence

        ds.remove_private_tags()
        for elem in list(ds):
            tag = int(elem.tag)
            if tag == 0x7FE00010:
                continue  # Pixel Data: never touched
            act = self.action(tag)
            if act == "X":
                del ds[elem.tag]
            elif act == "Z":
                elem.value = Sequence() if elem.VR == "SQ" else None
            elif act == "D":
                if elem.VR == "SQ":
                    elem.value = Sequence()
                else:
                    elem.value = _dummy(elem.VR)
            elif act in ("U", "U*"):
                if elem.VR == "UI":
                    values = elem.value if elem.VM > 1 else [elem.value]
                    new = [self.remap_uid(str(v)) for v in values if v]
                    elem.value = new if elem.VM > 1 else (new[0] if new else "")
                elif elem.VR == "SQ":
                    for item in elem.value:
                        self.apply(item)
                else:
                    del ds[elem.tag]
            elif elem.VR == "SQ":  # kept sequences may hold attributes the profile acts on
                for item in elem.value:
                    self.apply(item)

    def deidentify(self, ds: Any) -> dict[str, Any]:
        """De-identify a dataset (file meta included); returns what the report needs."""
        from pydicom.dataset import Dataset
        from pydicom.sequence import Sequence

        info = {"patient_id": str(ds.get("PatientID", "")),
                "burned_in": str(ds.get("BurnedInAnnotation", "")).upper() == "YES"}
        self.apply(ds)
        ds.PatientIdentityRemoved = "YES"
        # LO holds at most 64 characters: one value per statement.
        ds.DeidentificationMethod = ["medmm deid", "PS3.15 Annex E Basic Application Level Confidentiality",
                                     f"attribute table {PROFILE_EDITION}", "private tags removed"]
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator = "113100", "DCM"
        code.CodeMeaning = "Basic Application Confidentiality Profile"
        ds.DeidentificationMethodCodeSequence = Sequence([code])
        meta = getattr(ds, "file_meta", None)
        if meta is not None and "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        return info


def _load_secret(path: Path | None) -> bytes:
    if path is None:
        return secrets.token_bytes(32)
    if path.exists():
        data = bytes.fromhex(path.read_text().strip())
        if len(data) < 16:
            raise BadInputError(path, "secret is shorter than 16 bytes (expects hex)")
        return data
    key = secrets.token_bytes(32)
    path.write_text(key.hex() + "\n")
    path.chmod(0o600)
    return key


def deidentify_folder(src: Path, out: Path, mapping: Path | None = None,
                      secret_file: Path | None = None) -> dict[str, Any]:
    """De-identify every DICOM file under `src` into `out`; write the UID map apart from `out`."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not src.is_dir():
        raise BadInputError(src, "not a folder")
    out = out.resolve()
    mapping = (mapping or out.with_name(out.name + ".mapping.csv")).resolve()
    if mapping.is_relative_to(out):
        raise BadInputError(mapping, "the mapping file must lie outside the output folder (it re-identifies)")
    deid = DicomDeidentifier(_load_secret(secret_file))
    files = sorted(p for p in src.rglob("*") if p.is_file())
    done, burned, skipped, patients = 0, [], [], {}
    for path in files:
        try:
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, OSError) as exc:
            skipped.append(f"{path}: {exc}")
            continue
        info = deid.deidentify(ds)
        if info["patient_id"]:
            new_pid = patients.setdefault(info["patient_id"], f"ANON{len(patients) + 1:06d}")
            ds.PatientID = new_pid
        rel = path.relative_to(src)
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target, enforce_file_format=False)
        done += 1
        if info["burned_in"]:
            burned.append(str(rel))
    mapping.parent.mkdir(parents=True, exist_ok=True)
    with mapping.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["kind", "original", "new"])
        w.writerows(("uid", k, v) for k, v in sorted(deid.uid_map.items()))
        w.writerows(("patient_id", k, v) for k, v in sorted(patients.items()))
    if skipped:
        print(f"skipped {len(skipped)} non-DICOM file(s): " + "; ".join(skipped[:5]))
    return {"files": done, "burned_in": burned, "skipped": skipped, "mapping": str(mapping)}
