"""`run_cli(*args)`: invoke the medmm CLI in-process and return its output, failing the test on a non-zero exit."""

from __future__ import annotations


def run_cli(*args: str) -> str:
    """The CLI's output for `medmm ARGS...`; asserts exit code 0 (output and exception in the message)."""
    from typer.testing import CliRunner

    from medmm.cli import app

    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, (res.output, res.exception)
    return res.output
