"""Doomed trials in the study: Optuna learns that the region that leaves no path is infeasible.

A trial the screen ends (``prune.screen``, status ``doomed``; ``pruning_core/effective.py``) is
told to Optuna ``COMPLETE`` with the values it reached (chance accuracy at its sparsity) *and*
the violated constraint ``doomed = 1`` set with Optuna's public ``Trial.set_constraint``
(Optuna 5; ``constraints_func`` is deprecated there). Optuna's samplers that support
constraints (TPE, NSGA-II/III, GP) rank every feasible trial above an infeasible one, so they
move away from the doomed region instead of merely ignoring a failed trial; Optuna's
``best_trials`` leave it out. A trial whose live Optuna trial is not at hand (asked by a driver
that was restarted since) is told ``FAIL``, as before.

The live trial is the one Ray's ``OptunaSearch`` asked and later tells: the define-by-run
function receives it (``study.TaggedSpace``) and keeps it here, on the driver, by Ray trial id.
"""

from __future__ import annotations

from typing import Any

#: the user attribute holding a study trial's Ray trial id
TRIAL_ID_ATTR = "trial_id"
#: the name of the constraint a doomed trial violates
CONSTRAINT = "doomed"

#: Ray trial id -> the live ``optuna.trial.Trial`` asked for it (driver only, never pickled)
_LIVE: dict[str, Any] = {}


def remember(trial_id: str, trial: Any) -> None:
    _LIVE[trial_id] = trial


def mark_doomed(trial_id: str) -> bool:
    """Set the violated constraint on the trial before it is told; False when its live trial
    is not at hand (then it is told FAIL)."""
    trial = _LIVE.pop(trial_id, None)
    if trial is None:
        return False
    trial.set_constraint(CONSTRAINT, 1.0)
    return True


def forget(trial_id: str) -> None:
    _LIVE.pop(trial_id, None)


def screen_space(space: Any, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``prunetune validate SPACE --screen N``: sample ``n`` configs (plus one per unseen
    choice value and range end, as ``validate`` draws them), build each one's masks
    without training (``pruning_core.trials.experiment.screen_config``) and say which are doomed.
    One dict per config: criterion, sparsity (target), verdict, reason, effective sparsity."""
    from pruning_core.trials.experiment import screen_config

    rows = []
    for sampled in space.sample(n, seed=seed):  # n random draws, then every choice and range end
        cfg = space.trial_config(sampled)
        out = screen_config(cfg)
        rows.append({"criterion": cfg.prune.criterion, "sparsity": cfg.prune.sparsity,
                     "verdict": out.verdict, "reason": out.reason,
                     "effective_sparsity": out.effective_sparsity})
    return rows


def doomed_share(rows: list[dict[str, Any]]) -> list[tuple[str, float, int, int]]:
    """(criterion, target sparsity, screened, doomed) per criterion and sparsity, sorted;
    configs whose masks come after training are not counted."""
    groups: dict[tuple[str, float], list[int]] = {}
    for r in rows:
        if r["verdict"] == "unscreened":
            continue
        g = groups.setdefault((r["criterion"], round(float(r["sparsity"]), 3)), [0, 0])
        g[0] += 1
        g[1] += r["verdict"] == "doomed"
    return [(c, s, n, d) for (c, s), (n, d) in sorted(groups.items())]
