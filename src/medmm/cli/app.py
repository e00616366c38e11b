"""The root `medmm` Typer app. Command modules in this package attach to it.

Command functions import heavy libraries (torch, FastAPI) inside their bodies so that
`medmm --help` and light commands start fast.
"""

import typer

app = typer.Typer(
    name="medmm",
    help="Multimodal deep learning on biomedical images and text.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root() -> None:
    """Multimodal deep learning on biomedical images and text."""
