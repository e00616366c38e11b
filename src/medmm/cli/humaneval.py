"""`medmm humaneval ...`: serve the rating web app, manage users and studies, export, agreement."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medmm.cli.app import app

humaneval_app = typer.Typer(
    name="humaneval",
    help="Human evaluation of model outputs: web app, studies, export, agreement statistics.",
    no_args_is_help=True,
)
app.add_typer(humaneval_app, name="humaneval")

DB_HELP = "SQLAlchemy URL (postgresql+psycopg2://...) or a SQLite file path."


@humaneval_app.command()
def serve(
    db: str = typer.Option("humaneval.sqlite", help=DB_HELP),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    secret_file: Path | None = typer.Option(
        None, help="File with the session-signing key (else $MEDMM_HUMANEVAL_SECRET or a random key)."
    ),
    https_only: bool = typer.Option(
        False, help="Behind an HTTPS proxy: mark session cookies Secure and send HSTS."),
    images_root: list[Path] = typer.Option(
        [], help="A folder images may be served from (repeat). Studies' images folders must lie inside one."),
    idle_timeout_min: float = typer.Option(30.0, help="Minutes without a request that end a session."),
    absolute_timeout_h: float = typer.Option(12.0, help="Hours after login that end a session in any case."),
    forwarded_allow_ips: str | None = typer.Option(
        None, help="Address(es) of the TLS reverse proxy whose X-Forwarded-For/-Proto are trusted "
        "(comma-separated); the audit trail then records the real client address."),
) -> None:
    """Run the web app (migrates the database schema first)."""
    from datetime import timedelta

    import uvicorn

    from medmm.humaneval.app import create_app
    from medmm.humaneval.websessions import Timeouts

    secret = secret_file.read_text().strip() if secret_file else None
    timeouts = Timeouts(idle=timedelta(minutes=idle_timeout_min), absolute=timedelta(hours=absolute_timeout_h))
    web_app = create_app(db, secret_key=secret, https_only=https_only, image_roots=images_root, timeouts=timeouts)
    proxy = {"proxy_headers": True, "forwarded_allow_ips": forwarded_allow_ips} if forwarded_allow_ips else \
        {"proxy_headers": False}
    uvicorn.run(web_app, host=host, port=port, **proxy)


def _actor() -> str:
    """Who runs a CLI command, for the audit trail."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@humaneval_app.command("create-user")
def create_user_cmd(
    username: str = typer.Argument(..., help="Login name."),
    db: str = typer.Option("humaneval.sqlite", help=DB_HELP),
    admin: bool = typer.Option(False, help="Give admin rights."),
    password: str | None = typer.Option(
        None, help="Password (else read from $MEDMM_HUMANEVAL_PASSWORD or asked twice)."
    ),
    totp: bool = typer.Option(False, help="Add a TOTP second factor (recommended for admins); prints "
                              "the otpauth:// URI to put in an authenticator app."),
) -> None:
    """Create an admin or rater account (password: 12+ characters, not the username, not common)."""
    import os

    from medmm.humaneval.db import open_db
    from medmm.humaneval.studies import create_user

    pw = password or os.environ.get("MEDMM_HUMANEVAL_PASSWORD")
    if not pw:
        pw = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    engine, factory = open_db(db)
    try:
        with factory.begin() as s:
            user = create_user(s, username, pw, admin=admin, actor=_actor())
            if totp:
                import pyotp

                user.totp_secret = pyotp.random_base32()
                uri = pyotp.TOTP(user.totp_secret).provisioning_uri(name=username, issuer_name="medmm humaneval")
    finally:
        engine.dispose()
    print(f"created {'admin' if admin else 'rater'} {username}")
    if totp:
        print(f"second factor: add this to an authenticator app (shown once): {uri}")


@humaneval_app.command("create-study")
def create_study_cmd(
    name: str = typer.Option(..., help="Study name (unique)."),
    pred: list[str] = typer.Option(..., help="Predictions JSONL, as path or name=path; repeat per system."),
    raters: str = typer.Option(..., help="Comma-separated usernames of the raters."),
    design: str = typer.Option("single", help="single (rate each output) or pairwise (A/B preference)."),
    db: str = typer.Option("humaneval.sqlite", help=DB_HELP),
    images_root: Path | None = typer.Option(
        None, help="Folder the 'image' paths are relative to; required when the files name images, "
        "which must lie inside it."),
    seed: int | None = typer.Option(
        None, help="Explicit reproducibility seed of the per-rater order and left/right placement "
        "(default: a secret only the server knows). Warning: whoever knows the seed can undo the blinding."),
    owner: list[str] = typer.Option([], help="Username of a study owner (repeat)."),
    show_explanations: bool = typer.Option(
        False, help="Show raters each output's explanation (the file's 'explanation' or 'rationale'); "
        "in a pairwise study, differently shaped evidence can unblind the systems."),
    deid: bool = typer.Option(False, "--deid", help="Mask PHI in predictions, references, questions and "
                              "explanations (medmm deid) before raters see them."),
) -> None:
    """Create a blinded study from predictions files."""
    from medmm.humaneval.blinding import SEED_WARNING
    from medmm.humaneval.studies import create_study_from_predictions

    if seed is not None:
        typer.echo(f"WARNING: {SEED_WARNING}", err=True)
    if deid:
        from medmm.deid.humaneval import deidentified_prediction_args

        pred = deidentified_prediction_args(pred, images_root)

    sid = create_study_from_predictions(
        db, name, pred, design, [r.strip() for r in raters.split(",") if r.strip()],
        images_root=images_root, seed=seed, show_explanations=show_explanations, owners=owner, actor=_actor(),
    )
    print(f"created study {name!r} (id {sid})")


@humaneval_app.command()
def export(
    study: str = typer.Option(..., help="Study name or id."),
    out: Path = typer.Option(..., help="ratings.csv or ratings.json"),
    db: str = typer.Option("humaneval.sqlite", help=DB_HELP),
    deid: bool = typer.Option(False, "--deid", help="Mask PHI in rater comments and explanations (medmm deid)."),
) -> None:
    """Export a study's ratings, with system names, to CSV or JSON (logged in the audit trail)."""
    from medmm.humaneval import audit
    from medmm.humaneval.db import open_db
    from medmm.humaneval.export import export_rows, write_export
    from medmm.humaneval.studies import get_study

    engine, factory = open_db(db)
    try:
        with factory() as s:
            st = get_study(s, study)
            rows = export_rows(s, st.id)
            audit.append(s, "export", username=_actor(), study_id=st.id,
                         detail={"format": out.suffix.lstrip("."), "rows": len(rows), "blinded": False, "cli": True,
                                 "deid": deid})
            s.commit()
    finally:
        engine.dispose()
    if deid:
        from medmm.deid.humaneval import deidentify_export_rows

        rows = deidentify_export_rows(rows)
    write_export(rows, out)
    print(f"wrote {len(rows)} ratings to {out}")


@humaneval_app.command()
def agreement(
    study: str | None = typer.Option(None, help="Study name or id (read from --db)."),
    db: str = typer.Option("humaneval.sqlite", help=DB_HELP),
    ratings: Path | None = typer.Option(None, help="An exported ratings .csv/.json instead of --db/--study."),
    metrics: Path | None = typer.Option(
        None, help="Metrics JSONL: lines with id, system and numeric metric columns (adds to the "
        "metric columns of the predictions files)."
    ),
    out: Path | None = typer.Option(None, help="Write the full report as JSON here."),
) -> None:
    """Inter-rater agreement (Cohen, Fleiss, Krippendorff) and metric-human correlations."""
    from medmm.errors import BadInputError
    from medmm.humaneval.agreement import agreement_report
    from medmm.humaneval.export import read_export

    metric_map: dict[tuple[str, str], dict[str, float]] = {}
    if ratings is not None:
        rows = read_export(ratings)
    elif study is not None:
        from medmm.humaneval.db import open_db
        from medmm.humaneval.export import export_rows, output_metrics
        from medmm.humaneval.studies import get_study

        engine, factory = open_db(db)
        try:
            with factory() as s:
                sid = get_study(s, study).id
                rows, metric_map = export_rows(s, sid), output_metrics(s, sid)
        finally:
            engine.dispose()
    else:
        raise BadInputError(None, "give --study (with --db) or --ratings")
    if metrics is not None:
        for key, vals in read_metrics_jsonl(metrics).items():
            metric_map.setdefault(key, {}).update(vals)
    report = agreement_report(rows, metric_map or None)
    if out is not None:
        out.write_text(json.dumps(report, indent=1))
    _print_report(report)


@humaneval_app.command("audit")
def audit_cmd(
    db: str = typer.Option("humaneval.sqlite", help=DB_HELP),
    study: str | None = typer.Option(None, help="Only the entries of this study (name or id)."),
    out: Path | None = typer.Option(None, help="Write the entries to this CSV file instead of printing them."),
) -> None:
    """Print the audit trail and verify its hash chain (exit code 1 if the chain is broken)."""
    from medmm.humaneval import audit
    from medmm.humaneval.db import open_db
    from medmm.humaneval.studies import get_study

    engine, factory = open_db(db)
    try:
        with factory() as s:
            rows = audit.events(s, get_study(s, study).id if study else None)
            check = audit.verify_chain(s)
    finally:
        engine.dispose()
    if out is not None:
        out.write_text(audit.events_csv(rows), encoding="utf-8")
        print(f"wrote {len(rows)} audit entries to {out}")
    else:
        for r in rows:
            where = f" study={r['study_id']}" if r["study_id"] is not None else ""
            print(f"{r['seq']:>6} {r['at']:%Y-%m-%d %H:%M:%S} {r['action']:<16} user={r['username'] or '-'} "
                  f"addr={r['address'] or '-'}{where} {r['detail'] or ''}")
    if check.ok:
        print(f"chain OK: {check.n_entries} entries, head {check.head_hash}")
    else:
        typer.echo(f"CHAIN BROKEN: {check.problem}", err=True)
        raise typer.Exit(1)


def read_metrics_jsonl(path: Path) -> dict[tuple[str, str], dict[str, float]]:
    """Metrics JSONL -> {(id, system): {metric: value}}; numeric columns only."""
    from medmm.errors import BadInputError

    out: dict[tuple[str, str], dict[str, float]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BadInputError(path, f"cannot read metrics: {exc}") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInputError(path, f"line {n}: not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict) or "id" not in obj or "system" not in obj:
            raise BadInputError(path, f"line {n}: needs 'id' and 'system'")
        out[(str(obj["id"]), str(obj["system"]))] = {
            k: float(v) for k, v in obj.items()
            if k not in ("id", "system") and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
    return out


def _fmt(x: object) -> str:
    return "n/a" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def _print_report(report: dict) -> None:
    print(f"ratings: {report['n_ratings']}")
    for f in report["fields"]:
        print(f"\n[{f['field']}] raters={','.join(f['raters'])} units={f['n_units']}")
        for p in f["cohen"]:
            extra = ""
            if "kappa_linear" in p:
                extra = f" linear={_fmt(p['kappa_linear'])} quadratic={_fmt(p['kappa_quadratic'])}"
            print(f"  Cohen {p['raters'][0]}~{p['raters'][1]} (n={p['n']}): kappa={_fmt(p['kappa'])}{extra}")
        print(f"  Fleiss kappa={_fmt(f['fleiss']['kappa'])} (units rated by all: {f['fleiss']['n_units']})")
        line = f"  Krippendorff alpha nominal={_fmt(f['krippendorff_nominal'])}"
        if "krippendorff_ordinal" in f:
            line += f" ordinal={_fmt(f['krippendorff_ordinal'])}"
        print(line)
    if report.get("correlations"):
        print("\nmetric vs human (mean over raters per item and system):")
        for c in report["correlations"]:
            print(f"  {c['metric']} ~ {c['field']} (n={c['n']}): spearman={_fmt(c['spearman'])} "
                  f"(p={_fmt(c['spearman_p'])}) kendall={_fmt(c['kendall'])} (p={_fmt(c['kendall_p'])})")
