"""De-identification hooks of the human-evaluation commands (`--deid`): predictions files before a
study shows them to raters, and exported rows (rater comments, explanations) before they leave.

Kept here, not in medmm.humaneval, so the web app's code stays untouched: the CLI calls these."""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from medmm.deid.text import TextDeidentifier

PREDICTION_FIELDS = ("prediction", "reference", "question", "explanation", "rationale")
EXPORT_FIELDS = ("comment", "explanation", "explanation_left", "explanation_right")


def deidentified_prediction_args(pred: list[str], images_root: Path | None) -> list[str]:
    """De-identified copies of predictions JSONL files (mask mode, rules), as `name=path` arguments.

    The copies live in a private temporary folder removed at exit; relative image paths are made
    absolute (relative to the original file) so the study finds the same images."""
    from medmm.humaneval.studies import parse_pred_arg

    deid = TextDeidentifier(mode="mask")
    folder = Path(tempfile.mkdtemp(prefix="medmm-deid-"))
    atexit.register(shutil.rmtree, folder, True)
    out = []
    for n, arg in enumerate(pred):
        name, path = parse_pred_arg(arg)
        lines = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                lines.append(line)
                continue
            obj = json.loads(line)
            if isinstance(obj, dict):
                for key in PREDICTION_FIELDS:
                    if isinstance(obj.get(key), str):
                        obj[key] = deid.deidentify(obj[key])[0]
                for key in ("image", "image_path"):
                    if images_root is None and isinstance(obj.get(key), str) and not Path(obj[key]).is_absolute():
                        obj[key] = str((path.resolve().parent / obj[key]).resolve())
            lines.append(json.dumps(obj))
        copy = folder / f"{n}_{path.name}"
        copy.write_text("\n".join(lines) + "\n", encoding="utf-8")
        out.append(f"{name}={copy}")
    return out


def deidentify_export_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rater comments and explanation texts of exported rows, masked (rules)."""
    deid = TextDeidentifier(mode="mask")
    for row in rows:
        for key in EXPORT_FIELDS:
            if isinstance(row.get(key), str) and row[key]:
                row[key] = deid.deidentify(row[key])[0]
    return rows
