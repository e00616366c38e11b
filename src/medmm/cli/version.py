"""`medmm version`."""

from medmm.cli.app import app


@app.command()
def version() -> None:
    """Print the medmm version."""
    import medmm

    print(medmm.__version__)
