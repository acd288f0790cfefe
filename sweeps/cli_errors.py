"""The one way every ``prunetune`` command reports bad input."""

from __future__ import annotations

from typing import NoReturn

import typer


def fail(msg: str, code: int = 2) -> NoReturn:
    """One plain line on stderr (no markup: messages quote brackets like ``[0, 1)``), exit 2."""
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)
