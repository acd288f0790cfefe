"""The ``prunetune`` command line: ``app`` (typer) and ``main`` (the console script).

``commands.py`` builds the app and its ``run``/``names`` commands; ``sweep``, ``results``,
``schedule`` and ``similarity`` each register their commands onto it; ``common`` holds what
several share and ``errors`` the one-line error policy (exit code 2)."""

from sweeps.cli.commands import app, main

__all__ = ["app", "main"]
