from typer.testing import CliRunner

from medmm.cli import app


def test_help_lists_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "version" in result.output


def test_version():
    import medmm

    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0
    assert medmm.__version__ in result.output


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, medmm, medmm.data; bad=[m for m in ('torch','fastapi','transformers') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
