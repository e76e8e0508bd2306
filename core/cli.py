"""The ``backbone`` command line (typer). Only this module turns errors into exit codes."""

from __future__ import annotations

import typer

import backbone

app = typer.Typer(
    name="backbone",
    help="Backbone: an event backbone with an embedded Kafka-compatible broker.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"backbone {backbone.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Backbone: an event backbone with an embedded Kafka-compatible broker."""


def main() -> None:
    """Console-script entry point."""
    app()
