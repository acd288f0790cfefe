"""RESULTS arguments -> what DuckDB reads: local Parquet files or globs (a results directory's
``trials/*.parquet``, a directory of ``*.parquet`` files, or one file), and a results URI's rows
read through pyarrow's filesystem."""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sweeps.results.errors import ResultsError, first_line, unreadable_msg
from sweeps.results.parts import PART_PREFIX
from sweeps.results.trial_files import TrialFiles

log = logging.getLogger(__name__)


def resolve_paths(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """RESULTS arguments -> Parquet file paths or globs for DuckDB; ResultsError if none."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    out: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            out.append(str(p))
            continue
        if not p.is_dir():
            raise ResultsError(f"results path {raw}: no such file or directory; give a results "
                               "dir (with trials/), a dir of .parquet files or a .parquet file")
        base = p / "trials" if (p / "trials").is_dir() else p
        if has_parquet(base):
            out.append(str(base / "*.parquet"))
            continue
        subdirs = sorted({str(f.parent) for f in p.rglob("*.parquet")
                          if not f.name.startswith(".") and "trials_orphaned" not in f.parts})
        if not subdirs:
            raise ResultsError(f"results path {raw}: no .parquet files found (looked in "
                               f"{base}); has the sweep written any trials yet?")
        out.extend(str(Path(d) / "*.parquet") for d in subdirs)
    return out


def remote_table(uri: str) -> Any:
    """A results URI's trial rows as one Arrow table, read through pyarrow's filesystem (DuckDB
    would need its httpfs extension, which it downloads)."""
    try:
        table, bad = TrialFiles(uri).readable_table()
    except OSError as exc:
        raise ResultsError(f"results {uri}: cannot read ({first_line(exc)})") from None
    if bad and table.num_rows == 0:
        raise ResultsError(unreadable_msg([uri], bad))
    for path, why in bad:
        log.warning("skipping unreadable results file %s: %s", path, why)
    if table.num_rows == 0:
        raise ResultsError(f"results {uri}: no trial rows under trials/; has the sweep written "
                           "any trials yet?")
    return table


def has_parts(sources: Sequence[str]) -> bool:
    """Do these files or globs include compacted ``part-*.parquet`` files?"""
    for src in sources:
        if glob.has_magic(src):
            if glob.glob(os.path.join(os.path.dirname(src), f"{PART_PREFIX}*.parquet")):
                return True
        elif os.path.basename(src).startswith(PART_PREFIX):
            return True
    return False


def has_parquet(d: Path) -> bool:
    with os.scandir(d) as it:
        return any(e.name.endswith(".parquet") and not e.name.startswith(".") and e.is_file()
                   for e in it)


def expand_globs(sources: Sequence[str]) -> list[str]:
    out: list[str] = []
    for src in sources:
        if glob.has_magic(src):
            out.extend(sorted(glob.glob(src)))
        else:
            out.append(src)
    return out
