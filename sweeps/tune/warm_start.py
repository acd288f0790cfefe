"""Warm start: seed a new Optuna study with an earlier sweep's Pareto front.

Each front trial of the earlier results becomes a *completed* Optuna trial (its parameters and
its known objective values) of the new sweep's stored study (``study.py``) before the sweep
samples anything, so TPE / NSGA-II start from the known trade-offs instead of from scratch, and
nothing is re-evaluated. Only public Optuna calls: ``enqueue_trial`` / ``ask`` / ``tell`` on the
study, and the distributions' public ``low`` / ``high`` / ``step`` / ``choices``.

The parameters are recovered from the results rows: Ray passes Optuna's ``a/b/c`` names as nested
dicts, and the recorder writes them flattened as ``config.a.b.c`` columns. Replaying the new
space's define-by-run function on a ``FixedTrial`` of those values keeps exactly the parameters
(and distributions) the new space has, so a point outside the new space is skipped, not forced.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pruning_core.base.errors import ConfigError
from sweeps.tune.space import SearchSpace

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeedPoint:
    trial_id: str
    params: dict[str, Any]
    distributions: dict[str, Any]
    values: list[float]


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _candidates(row: dict[str, Any]) -> dict[str, Any]:
    """``config.prune.sparsity`` -> ``prune/sparsity`` (Optuna's names), missing values dropped."""
    out = {}
    for col, value in row.items():
        if not col.startswith("config.") or value is None:
            continue
        value = _plain(value)
        if isinstance(value, float) and math.isnan(value):
            continue
        out[col.removeprefix("config.").replace(".", "/")] = value
    return out


def _fit(space_fn: Any, candidates: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    import optuna

    # ints read back as floats where a column has gaps (NaN): hand Optuna ints where integral
    fixed = {k: int(v) if isinstance(v, float) and v.is_integer() else v
             for k, v in candidates.items()}
    trial = optuna.trial.FixedTrial(fixed)
    space_fn(trial)
    params, dists = dict(trial.params), dict(trial.distributions)
    for name, value in params.items():
        if not in_distribution(dists[name], value):
            raise ValueError(f"{name}={value!r} is outside the new space")
    return params, dists


def in_distribution(dist: Any, value: Any) -> bool:
    """``value`` is one the distribution can sample (public attributes only: ``low``,
    ``high``, ``step``, ``choices``)."""
    import optuna.distributions as od

    if isinstance(dist, od.CategoricalDistribution):
        # True is not 1 here (a choice of [1, 2] does not take a flag), but 1 is 1.0
        return any(value == c and isinstance(value, bool) == isinstance(c, bool)
                   for c in dist.choices)
    if not isinstance(dist, od.FloatDistribution | od.IntDistribution):
        raise ValueError(f"unsupported distribution {type(dist).__name__}")
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return False
    if isinstance(dist, od.IntDistribution) and not float(value).is_integer():
        return False
    if not dist.low <= value <= dist.high:
        return False
    if dist.step is None:
        return True
    steps = (value - dist.low) / dist.step
    return math.isclose(steps, round(steps), abs_tol=1e-8)


def seed_points(space: SearchSpace, results: Sequence[str]) -> list[SeedPoint]:
    """The front of ``results`` (completed trials) expressed in ``space``'s parameters."""
    import warnings

    from sweeps.results.pareto import ResultsError, load_results, pareto_front

    try:
        df = load_results(list(results))
    except ResultsError as exc:
        raise ConfigError(f"--warm-start: {exc}") from None
    # every file carries every declared column (sweeps/results/schema.py): "no value" is all-null
    missing = [m for m in space.metrics if m not in df.columns or df[m].isna().all()]
    if missing:
        raise ConfigError(f"--warm-start: the earlier results have no value of {missing[0]!r} "
                          f"(this sweep's objectives: {', '.join(space.metrics)})")
    if df.empty:
        raise ConfigError(f"--warm-start: no completed (ok) trials in {', '.join(results)}")
    objectives = [f"{m}:{mode}" for m, mode in zip(space.metrics, space.modes, strict=True)]
    if len(objectives) == 1:  # one objective: the front is the single best trial
        asc = space.modes[0] == "min"
        front = df.sort_values(space.metrics[0], ascending=asc).head(1)
    else:
        front = pareto_front(df, objectives)
    fn = space.define_by_run()
    points: list[SeedPoint] = []
    for row in front.to_dict("records"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # FixedTrial warns on out-of-range values
                params, dists = _fit(fn, _candidates(row))
        except (ValueError, KeyError) as exc:
            log.warning("warm start: trial %s does not fit this space (%s); skipped",
                        row.get("trial_id"), exc)
            continue
        values = [float(row[m]) for m in space.metrics]
        points.append(SeedPoint(str(row.get("trial_id")), params, dists, values))
    return points


def add_to_study(study: optuna.Study, points: Sequence[SeedPoint]) -> int:
    """Add ``points`` as completed trials to the sweep's study (``study.new_study``), before
    ``OptunaSearch`` loads it from the storage."""
    import optuna
    from optuna.trial import TrialState

    # Each point is an enqueued trial, asked and told, rather than study.add_trial: a genetic
    # sampler (NSGA-II/III) only breeds from trials that carry its generation number, which it
    # can set only while a trial runs; added trials never became parents.
    sampler = study.sampler
    for p in points:
        study.enqueue_trial(p.params, user_attrs={"warm_start_from": p.trial_id})
        trial = study.ask(fixed_distributions=p.distributions)
        if isinstance(sampler, optuna.samplers.BaseGASampler):
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            sampler.get_trial_generation(study, next(t for t in running
                                                     if t.number == trial.number))
        study.tell(trial, p.values, state=TrialState.COMPLETE)
    return len(points)
