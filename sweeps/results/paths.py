"""RESULTS arguments as every command reads them: ``RESULTS/trials`` is ``RESULTS``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

#: the folder of per-trial rows inside a results directory (``store.TRIALS_DIR``)
TRIALS = "trials"


def results_dir(path: str) -> str:
    """``RESULTS/trials`` (the per-trial rows' folder, local or a URI) -> ``RESULTS``, so a
    command given either reads the same sweep the same way; any other path is returned as
    given. A local path is changed only when it is a directory named ``trials``."""
    if "://" in path:  # s3://b/x/trials[/][?query] -> s3://b/x[?query]
        base, sep, query = path.partition("?")
        scheme, _, rest = base.partition("://")
        parent, _, last = rest.rstrip("/").rpartition("/")
        return f"{scheme}://{parent}{sep}{query}" if last == TRIALS and parent else path
    p = Path(path)  # "RESULTS/trials/" too: pathlib drops the trailing slash
    return str(p.parent) if p.name == TRIALS and p.is_dir() else path


def results_dirs(paths: Sequence[str]) -> list[str]:
    """:func:`results_dir` of each RESULTS argument."""
    return [results_dir(str(p)) for p in paths]
