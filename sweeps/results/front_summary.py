"""What ``prunetune pareto`` shows: the front of one or more RESULTS paths, its columns in
display order, the hypervolume reference point and the hypervolume per ``--by`` group."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sweeps.results.flags import add_note
from sweeps.results.hypervolume import derive_reference, hypervolume
from sweeps.results.objectives import Objective, parse_objectives, parse_ref
from sweeps.results.reader import Results
from sweeps.results.statuses import DONE_STATUSES

Paths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


@dataclass
class FrontSummary:
    """A front and its hypervolumes (full column names throughout)."""

    objectives: list[Objective]
    #: the front's rows: ``by``, then the objectives, then the other columns
    front: pd.DataFrame
    by: str | None  # the full name of the ``by`` column
    #: the reference point as given (None: derived from the rows)
    ref_given: list[float] | None
    #: the reference point used (None: no row has a finite value in every objective)
    ref: np.ndarray | None
    #: hypervolume per group (``"all"`` without ``by``)
    hypervolume: dict[str, float] = field(default_factory=dict)
    #: short names of the results' columns (alias -> full name)
    aliases: dict[str, str] = field(default_factory=dict)


def front_summary(paths: Paths, objectives: Sequence[str | Objective], *,
                  where: str | None = None, by: str | None = None,
                  statuses: Sequence[str] | None = DONE_STATUSES, ref: str | None = None,
                  columns: Sequence[str] | None = None, present_columns: Sequence[str] = (),
                  notes: bool = False) -> FrontSummary:
    """The front of ``paths`` for 2 or 3 ``objectives`` (one per ``by`` group) with its
    hypervolume. ``ref``: the reference point as ``"0.0,0.0"`` (default: derived, see
    :func:`derive_reference`). ``columns``: the columns to fetch besides the objectives and
    ``by`` (default: those of ``present_columns`` the results have, or all when that is empty
    too). ``notes``: add the ``note`` column (:func:`sweeps.results.flags.add_note`).
    ResultsError on bad input."""
    with Results(paths) as res:
        objs = parse_objectives(objectives)
        ref_given = parse_ref(ref, len(objs))
        cols: list[str] | None = list(columns) if columns is not None else (
            [c for c in present_columns if c in res.raw_columns] if present_columns else None)
        front = res.front(objs, where=where, by=by, statuses=statuses, columns=cols)
        front = add_note(front, res) if notes else front
        full = [res.resolve(o.column) for o in objs]
        by_full = res.resolve(by) if by else None
        modes = [o.mode for o in objs]
        if ref_given is None:
            allv, _ = res.numeric(full, where, statuses)
            ref_arr = derive_reference(allv, modes) if np.isfinite(allv).all(1).any() else None
        else:
            ref_arr = np.asarray(ref_given)
        aliases = res.aliases
    lead = [*([by_full] if by_full else []), *full]
    return FrontSummary(
        objectives=objs, front=front[[*lead, *(c for c in front.columns if c not in lead)]],
        by=by_full, ref_given=ref_given, ref=ref_arr,
        hypervolume=_hypervolumes(front, full, modes, by_full, ref_arr), aliases=aliases)


def _hypervolumes(front: pd.DataFrame, full: list[str], modes: list[str], by: str | None,
                  ref: np.ndarray | None) -> dict[str, float]:
    """The hypervolume of each ``by`` group's front (``"all"`` without ``by``)."""
    hv: dict[str, float] = {}
    if ref is None or not len(front):
        return hv
    groups = front.groupby(by, dropna=False, sort=True) if by else [("all", front)]
    for g, part in groups:
        key = str(g[0] if isinstance(g, tuple) else g)
        hv[key] = hypervolume(part[full].to_numpy(dtype=np.float64), modes, ref)
    return hv
