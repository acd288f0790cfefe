"""W&B logging: one live run per trial, written by the trial's own worker, never failing it.

* **Trials** (:class:`TrialRun`, in the Ray worker): ``wandb.init`` when the trial starts (run id
  ``<sweep>-<trial_id>``, ``resume="allow"``: a retried or resumed trial continues the same run
  online), one ``run.log(..., step=epoch)`` per epoch as it is trained, the final metrics in the
  summary, ``finish()`` at the end (exit code 1 if the trial raised). Any W&B failure (init
  raising, a full disk, a killed wandb-core) is logged once and the trial goes on without W&B.
* **End of the sweep** (:class:`WandbSink`, ``wandb_sink.py``, in the driver, run by writer
  *processes*): every
  trial's run gets ``pareto`` (bool), ``front_rank`` (non-dominated sorting rank over the sweep's
  ``ok`` trials, 0 = the front; absent for a trial that is not ranked) and the sweep's
  ``hypervolume`` in its summary (``wandb.init(id=..., resume="must")`` + ``summary.update``),
  and one ``<sweep>-summary`` run holds the table of all trials.

Offline by default, under the results directory (``<results>/wandb/offline-run-*``; ``wandb sync
<results>/wandb/offline-run-*`` uploads later). ``online`` is used only when an API key is
present; otherwise it falls back to offline with a warning.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: report keys that are not metrics (left out of a trial's W&B summary)
_NOT_SUMMARY = frozenset({"history", "final", "result_status", "result_error"})


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def resolve_mode(mode: str) -> str:
    """``online`` without a key -> ``offline`` (never prompt for a login)."""
    if mode == "online" and not _has_api_key():
        log.warning("wandb mode 'online' but no API key (WANDB_API_KEY / ~/.netrc): "
                    "logging offline instead")
        return "offline"
    return mode


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items()
            if v is not None and not (isinstance(v, float) and not math.isfinite(v))}


@dataclass(frozen=True)
class WandbTarget:
    """Where and how a sweep's W&B runs are written (picklable: it travels to the workers).

    ``dir``: the directory ``wandb.init(dir=...)`` gets; runs go under ``<dir>/wandb/``.
    """

    sweep: str
    project: str
    dir: str
    mode: str = "offline"
    group: str | None = None
    entity: str | None = None

    def run_id(self, trial_id: str) -> str:
        return f"{self.sweep}-{trial_id}"

    def init(self, *, stats: bool = False, requirements: bool = True, **kwargs: Any) -> Any:
        """``wandb.init`` with this target's project, group, dir and mode, quiet (no console
        capture, git or code saving); ``stats``: sample system metrics; ``requirements``: save
        the environment's ``requirements.txt`` (a scan of every installed package, ~0.1 s of
        CPU per run: the sweep's summary run saves it once, trial runs do not)."""
        import wandb

        Path(self.dir).mkdir(parents=True, exist_ok=True)
        return wandb.init(
            project=self.project, entity=self.entity, group=self.group or self.sweep,
            dir=self.dir, mode=self.mode, reinit="create_new",  # type: ignore[arg-type]
            settings=wandb.Settings(console="off", x_disable_stats=not stats, save_code=False,
                                    disable_git=True, silent=True,
                                    x_save_requirements=requirements),
            **kwargs,
        )

    def offline_runs(self) -> dict[str, list[Path]]:
        """Offline run directories by run id (``offline-run-<date>_<time>-<run id>``), oldest
        first."""
        out: dict[str, list[Path]] = {}
        if not Path(self.dir, "wandb").is_dir():
            return out
        for p in sorted(Path(self.dir, "wandb").glob("offline-run-*")):
            parts = p.name.split("-", 3)
            if len(parts) == 4:
                out.setdefault(parts[3], []).append(p)
        return out


def target_for(sweep: str, project: str, directory: str, mode: str, group: str | None = None,
               entity: str | None = None) -> WandbTarget | None:
    """The trials' W&B target, or None when W&B is ``disabled``."""
    if mode == "disabled":
        return None
    return WandbTarget(sweep, project, directory, resolve_mode(mode), group or sweep, entity)


class TrialRun:
    """One trial's live W&B run, in the worker that trains it; a no-op without a target.

    Every W&B call is guarded: the first failure is logged (once) and W&B is off for the rest
    of the trial; the wandb service of this worker is torn down, so the next trial on this
    (reused) worker starts a fresh one. Nothing here raises.
    """

    def __init__(self, target: WandbTarget | None, trial_id: str,
                 config: dict[str, Any] | None = None) -> None:
        self.trial_id = trial_id
        self.run: Any = None
        self.failed = False
        if target is None:
            return
        os.environ.setdefault("WANDB_SILENT", "true")
        try:
            self.run = target.init(stats=True, requirements=False,
                                   id=target.run_id(trial_id), name=trial_id,
                                   resume="allow", job_type="trial", config=config or {})
        except Exception:
            self._fail("start")

    @property
    def active(self) -> bool:
        return self.run is not None

    def log(self, metrics: dict[str, Any], epoch: int) -> None:
        """One epoch's metrics, at ``step=epoch``, as the epoch ends."""
        if self.run is None:
            return
        try:
            self.run.log(_clean({**metrics, "epoch": epoch}), step=int(epoch))
        except Exception:
            self._fail("log an epoch to")

    def finish(self, summary: dict[str, Any] | None = None, exit_code: int = 0) -> None:
        """The final metrics into the summary, then ``finish``."""
        run, self.run = self.run, None
        if run is None:
            return
        try:
            if summary:
                run.summary.update(summary_values(summary))
            run.finish(exit_code=exit_code)
        except Exception:
            self.run = run
            self._fail("finish")

    def _fail(self, what: str) -> None:
        if not self.failed:
            log.warning("W&B: could not %s the run of trial %s; the trial goes on without W&B",
                        what, self.trial_id, exc_info=True)
        self.failed = True
        run, self.run = self.run, None
        try:
            if run is not None:
                run.finish(exit_code=1)
        except Exception:  # the service is gone: nothing to finish
            pass
        try:
            import wandb

            wandb.teardown()  # a broken service is dropped: the next init starts a new one
        except Exception:
            pass


def summary_values(values: dict[str, Any]) -> dict[str, Any]:
    """A trial's report or row -> W&B summary values: finite scalars and strings, JSON text
    (per-layer values) decoded, no history, no config columns."""
    import json

    out: dict[str, Any] = {}
    for k, v in values.items():
        if k in _NOT_SUMMARY or k.startswith("config."):
            continue
        if isinstance(v, str) and v[:1] in "{[":
            try:
                v = json.loads(v)
            except ValueError:
                pass
        if isinstance(v, list | tuple) or getattr(v, "ndim", 0) or _missing(v):
            continue  # history, map columns (arrays), missing values
        if hasattr(v, "isoformat"):
            v = v.isoformat()
        elif hasattr(v, "item") and callable(v.item):  # numpy scalars
            v = v.item()
        out[k] = v
    return out


# --------------------------------------------------------------------------- pareto flags
def front_ranks(values: Any, modes: Sequence[str]) -> Any:
    """Non-dominated sorting: rank 0 = the Pareto front, rank 1 = the front once rank 0 is
    removed, ...; -1 for a row with a non-finite objective (it takes no part)."""
    import numpy as np

    from sweeps.results.pareto import pareto_mask

    v = np.asarray(values, dtype=np.float64).reshape(-1, len(modes))
    ranks = np.full(len(v), -1, dtype=np.int64)
    left = np.flatnonzero(np.isfinite(v).all(axis=1))
    rank = 0
    while len(left):
        mask = pareto_mask(v[left], modes)
        ranks[left[mask]] = rank
        left = left[~mask]
        rank += 1
    return ranks


@dataclass
class SweepFlags:
    """What the end of a sweep adds to each trial's run: ``pareto``, ``front_rank`` and the
    sweep's ``hypervolume`` (the front of its ``ok`` trials, as ``prunetune pareto`` finds it,
    with the same reference point: the worst value of each objective, 1 % of its range out)."""

    hypervolume: float | None
    reference_point: list[float] | None
    #: trial id -> front rank (absent: not ranked, i.e. not ``ok`` or a non-finite objective)
    ranks: dict[str, int] = field(default_factory=dict)

    def for_trial(self, trial_id: str) -> dict[str, Any]:
        rank = self.ranks.get(trial_id)
        out: dict[str, Any] = {"pareto": rank == 0}
        if rank is not None:
            out["front_rank"] = rank
        if self.hypervolume is not None:
            out["hypervolume"] = self.hypervolume
        return out


def sweep_flags(rows: Sequence[dict[str, Any]], objectives: Sequence[tuple[str, str]],
                ) -> SweepFlags:
    """Pareto flags of a sweep's rows for ``objectives`` ``[(metric, mode)]``: its ``ok`` rows
    take part (as in ``prunetune pareto``), every other row is unranked."""
    import numpy as np

    from sweeps.results.hypervolume import derive_reference, hypervolume

    modes = [m for _, m in objectives]
    ok = [r for r in rows if r.get("status") == "ok"]
    vals = np.array([[_number(r.get(c)) for c, _ in objectives] for r in ok],
                    dtype=np.float64).reshape(-1, len(modes))
    ranks = front_ranks(vals, modes)
    hv = ref = None
    if np.isfinite(vals).all(axis=1).any():
        ref_arr = derive_reference(vals, modes)
        hv = float(hypervolume(vals[ranks == 0], modes, ref_arr))
        ref = [float(x) for x in ref_arr]
    return SweepFlags(hv, ref, {str(r["trial_id"]): int(k)
                                for r, k in zip(ok, ranks, strict=True) if k >= 0})


def _number(v: Any) -> float:
    try:
        return math.nan if v is None else float(v)
    except (TypeError, ValueError):
        return math.nan


def stored_rows(results: str) -> list[dict[str, Any]]:
    """Every trial's row in a results directory (one per trial, all statuses)."""
    from sweeps.results.pareto import Results

    with Results(results) as res:
        return res.query("SELECT * FROM trials_raw").to_dict("records")


def _missing(v: Any) -> bool:
    """None, a non-finite float, or pandas' NaT / NA."""
    if v is None:
        return True
    if isinstance(v, float):
        return not math.isfinite(v)
    if getattr(v, "ndim", 0):
        return False
    if "pandas" in sys.modules and not isinstance(v, str | dict | list | tuple):
        import pandas as pd

        try:
            return bool(pd.isna(v))
        except (TypeError, ValueError):
            return False
    return False
