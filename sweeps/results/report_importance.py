"""Parameter importance per objective, by Optuna's fANOVA on a study rebuilt from the rows.

The study is built in memory with public Optuna APIs only (``optuna.create_study`` and
``study.add_trials`` of ``optuna.trial.create_trial``), one COMPLETE trial per row that has
every objective, so it follows the report's ``--where`` and status filter and needs nothing
but the Parquet rows. Distributions are read off the values: integers -> ``IntDistribution``,
other numbers -> ``FloatDistribution`` (log scale when all are positive and span at least two
decades), text, booleans and columns with missing values -> ``CategoricalDistribution``.
Cost: Optuna's fANOVA walks its trees in Python, so at most ``MAX_TRIALS`` rows (a seeded
sample) are used and trees are ``MAX_DEPTH`` deep: about 2 s per objective for 500 trials and
4 parameters on one CPU core (20 s with Optuna's default depth, 64, and 1,000 trials). On
swept data the ranking is the same as with the defaults.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from sweeps.results.report_columns import as_category, is_numeric

log = logging.getLogger(__name__)

MAX_TRIALS = 500
MAX_DEPTH = 8


def _distribution(col: pd.Series) -> tuple[object, pd.Series]:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if is_numeric(col):
        v = pd.to_numeric(col).to_numpy(np.float64)
        lo, hi = float(v.min()), float(v.max())
        if np.all(v == np.round(v)) and pd.api.types.is_integer_dtype(col):
            return IntDistribution(int(lo), int(hi)), col.astype(int)
        log_scale = lo > 0 and hi / lo >= 100
        return FloatDistribution(lo, hi, log=log_scale), pd.Series(v, index=col.index)
    cats = as_category(col)
    return CategoricalDistribution(sorted(set(cats))), cats


def study_from_rows(df: pd.DataFrame, params: Sequence[str], objectives: Sequence[str],
                    modes: Sequence[str]) -> object:
    """An in-memory Optuna study: one COMPLETE trial per row of ``df`` (rows must have every
    objective finite), with ``params`` (column names) as its parameters."""
    import optuna

    dists, values = {}, {}
    for p in params:
        dists[p], values[p] = _distribution(df[p])
    directions = ["maximize" if m == "max" else "minimize" for m in modes]
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(directions=directions)
    finally:
        optuna.logging.set_verbosity(verbosity)
    objs = df[list(objectives)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    trials = []
    for i, idx in enumerate(df.index):
        trials.append(optuna.trial.create_trial(
            params={p: _py(values[p][idx]) for p in params}, distributions=dists,
            values=[float(x) for x in objs[i]]))
    study.add_trials(trials)
    return study


def _py(v: object) -> object:
    return v.item() if hasattr(v, "item") else v


def param_importances(df: pd.DataFrame, params: Sequence[str], objectives: Sequence[str],
                      modes: Sequence[str], seed: int = 0,
                      ) -> tuple[dict[str, dict[str, float]], str | None]:
    """``{objective: {param: importance}}`` (each objective's importances sum to 1, best
    first) by ``FanovaImportanceEvaluator``; and why there are none, when there are none."""
    if not params:
        return {}, "no searched parameter (no config column varies over these trials)"
    vals = df[list(objectives)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    rows = df[np.isfinite(vals).all(axis=1)]
    if len(rows) < 3:
        return {}, f"{len(rows)} trials with every objective: too few to fit"
    if len(rows) > MAX_TRIALS:
        pick = np.sort(np.random.default_rng(seed).choice(len(rows), MAX_TRIALS, replace=False))
        rows = rows.iloc[pick]
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    study = study_from_rows(rows, params, objectives, modes)
    out: dict[str, dict[str, float]] = {}
    for j, obj in enumerate(objectives):
        try:
            imp = get_param_importances(
                study, evaluator=FanovaImportanceEvaluator(seed=seed, max_depth=MAX_DEPTH),
                target=lambda t, j=j: t.values[j])
        except (RuntimeError, ValueError) as exc:
            log.warning("parameter importance for %s failed: %s", obj, exc)
            return {}, f"Optuna could not compute importances: {exc}"
        out[obj] = {k: float(v) for k, v in imp.items()}
    return out, None
