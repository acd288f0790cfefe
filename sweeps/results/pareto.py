"""Pareto queries over sweep results: the public API in one import.

Definitions used everywhere in prunetune:

* An *objective* is a numeric column and a mode, ``max`` or ``min`` (``test_accuracy:max``).
* Row ``p`` is *dominated* iff another row ``q`` is at least as good in every objective and
  strictly better in one; a row with a missing, NaN or infinite objective value is excluded.
* Only ``status = 'ok'`` rows take part unless other statuses are asked for: ``error``,
  ``diverged`` and ``stopped_early`` trials did not finish the configuration they describe.

The code lives in one module per idea; this module re-exports their public names (scripts,
docs and tests import them from here):

* :mod:`sweeps.results.objectives` — :class:`Objective`, parsing ``COLUMN:MODE`` and ``--ref``;
* :mod:`sweeps.results.fronts` — the front algorithms (:func:`pareto_mask`, :func:`pareto_front`);
* :mod:`sweeps.results.sources` — RESULTS arguments to the files DuckDB reads;
* :mod:`sweeps.results.aliases` — short column names (``criterion``);
* :mod:`sweeps.results.sql_sandbox` — the ``--where`` and query checks, the connection lockdown;
* :mod:`sweeps.results.reader` — :class:`Results`, :func:`load_results`, :func:`query`;
* :mod:`sweeps.results.errors` and :mod:`sweeps.results.statuses`.
"""

from __future__ import annotations

from sweeps.results.aliases import display_name, short_aliases
from sweeps.results.errors import ResultsError, unreadable_msg
from sweeps.results.fronts import pareto_front, pareto_front_by, pareto_mask
from sweeps.results.objectives import (
    Mode,
    Objective,
    parse_objective,
    parse_objectives,
    parse_ref,
    to_max_space,
)
from sweeps.results.parts import PART_PREFIX
from sweeps.results.reader import Results, load_results, query
from sweeps.results.sources import resolve_paths
from sweeps.results.sql_sandbox import (
    LOCKDOWN_SETTINGS,
    check_select,
    lock_down,
    quote_ident,
    sql_string,
    where_view_sql,
)
from sweeps.results.statuses import DONE_STATUSES
from sweeps.results.statuses import STATUSES as ALL_STATUSES

__all__ = [
    "ALL_STATUSES", "DONE_STATUSES", "LOCKDOWN_SETTINGS", "PART_PREFIX", "Mode", "Objective",
    "Results", "ResultsError", "check_select", "display_name", "load_results", "lock_down",
    "pareto_front", "pareto_front_by", "pareto_mask", "parse_objective", "parse_objectives",
    "parse_ref", "query", "quote_ident", "resolve_paths", "short_aliases", "sql_string",
    "to_max_space", "unreadable_msg", "where_view_sql",
]
