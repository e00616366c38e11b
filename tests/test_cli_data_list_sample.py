"""`medmm data list` says where the bundled sample is (a new user's first data root)."""

from pathlib import Path

from typer.testing import CliRunner

from medmm.cli import app


def test_data_list_prints_the_bundled_sample_path():
    res = CliRunner().invoke(app, ["data", "list"])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.startswith("bundled sample"))
    assert (Path(line.split(": ", 1)[1]) / "VQA_RAD Dataset Public.json").is_file()
