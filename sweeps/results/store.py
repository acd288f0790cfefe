"""The trial store: a results directory's or URI's rows (:class:`TrialStore`), read and written
as files (:class:`sweeps.results.trial_files.TrialFiles`), queried with the CLI's SQL
(:class:`sweeps.results.reader.Results`) and compacted (:mod:`sweeps.results.compaction`).

Layering: ``trial_files`` is below both the reader and compaction (which read and write files
through it); this module is above the three, so none of them imports it back.
"""

from __future__ import annotations

from typing import Any

from sweeps.results.parts import PART_PREFIX, is_part
from sweeps.results.schema import COLUMN_TYPES
from sweeps.results.statuses import STATUSES
from sweeps.results.trial_files import ORPHANS_DIR, TRIALS_DIR, TrialFiles, is_uri, join_path

__all__ = ["ORPHANS_DIR", "PART_PREFIX", "STATUSES", "TRIALS_DIR", "TrialStore", "is_part",
           "is_uri", "join_path"]

#: old private names other modules still import (sweeps/tune): use the public ones
_TYPES = COLUMN_TYPES
_is_uri = is_uri


class TrialStore(TrialFiles):
    """Read and write the trial rows (Parquet) under a results directory or URI."""

    def query(self, sql: str) -> Any:
        """Run one read-only SELECT over the rows, exposed as the view ``trials`` with the same
        short names as ``prunetune query`` (``criterion`` for ``config.prune.criterion``);
        returns a DataFrame. It is the CLI's path (:class:`sweeps.results.pareto.Results`): the
        connection reads no other file and loads no extension (see SECURITY.md); any other
        statement, or a SQL error, raises :class:`sweeps.results.pareto.ResultsError`."""
        from sweeps.results.reader import Results

        with Results(self.root) as res:
            return res.query(sql)

    def compact(self) -> Any:
        """Merge the per-trial files into part files (see :mod:`sweeps.results.compaction`)."""
        from sweeps.results.compaction import compact

        return compact(self)
