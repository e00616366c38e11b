"""`medmm deid text|dicom`: remove protected health information from report text and DICOM headers."""

from __future__ import annotations

from pathlib import Path

import typer

from medmm.cli.app import app

deid_app = typer.Typer(
    name="deid",
    help="De-identify report text (rules + dictionaries, optional model) and DICOM headers (PS3.15 basic profile).",
    no_args_is_help=True,
)
app.add_typer(deid_app, name="deid")


@deid_app.command("text")
def text_cmd(
    src: Path = typer.Argument(..., help="Input CSV."),
    text_column: list[str] = typer.Option(..., help="Column to de-identify; repeat for several."),
    out: Path = typer.Option(..., help="Output CSV (every other column copied)."),
    id_column: str | None = typer.Option(None, help="Patient id column: dates of one patient shift together."),
    mode: str = typer.Option("mask", help="mask ([CATEGORY] tags) or surrogate (realistic stand-ins, shifted dates)."),
    audit: Path | None = typer.Option(None, help="Write one row per span: row, id, column, category, offsets "
                                      "in the input text, replacement (never the original text)."),
    seed: int | None = typer.Option(None, help="Derive the surrogate secret from this seed (reproducible); "
                                    "default: a random secret for this run."),
    model: str | None = typer.Option(None, help="Token-classification checkpoint (hub name or folder) merged "
                                     "with the rules; needs the train extra (transformers)."),
) -> None:
    """De-identify text columns of a CSV."""
    from medmm.deid.text import TextDeidentifier, deidentify_csv

    deid = TextDeidentifier(mode=mode, seed=seed, model=model)
    counts = deidentify_csv(src, out, text_column, deid, id_column=id_column, audit=audit)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
    print(f"wrote {out}; spans replaced: {summary}")


@deid_app.command("dicom")
def dicom_cmd(
    src: Path = typer.Argument(..., help="Folder of DICOM files (searched recursively)."),
    out: Path = typer.Option(..., help="Output folder (same relative paths)."),
    mapping: Path | None = typer.Option(None, help="CSV of original -> new UIDs and patient ids; must lie "
                                        "outside --out (default: OUT.mapping.csv beside the output folder)."),
    secret_file: Path | None = typer.Option(None, help="Key of the UID remapping: read if it exists, else "
                                            "created; the same key maps the same UIDs the same way next run."),
) -> None:
    """De-identify DICOM headers per the PS3.15 Annex E basic profile; pixel data untouched."""
    from medmm.deid.dicom import deidentify_folder

    report = deidentify_folder(src, out, mapping=mapping, secret_file=secret_file)
    print(f"wrote {report['files']} files to {out}; mapping: {report['mapping']}")
    if report["burned_in"]:
        print(f"WARNING: {len(report['burned_in'])} file(s) say BurnedInAnnotation YES: their pixels may show "
              f"PHI, which header de-identification does not remove: {', '.join(report['burned_in'][:10])}")
