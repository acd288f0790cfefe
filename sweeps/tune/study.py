"""The sweep's Optuna study, in storage the user owns (docs/sweeps.md, "The Optuna study").

The study lives in ``study.storage``: by default a journal file, ``<results>/study.log``
(``optuna.storages.JournalStorage`` over ``JournalFileBackend``), or an RDB URL. Ray's
``OptunaSearch`` gets it through its public ``storage`` / ``study_name`` arguments, so
``optuna.load_study``, optuna-dashboard and Optuna's plots and importance tools read the same
trials the sweep ran, while it runs and after.

``StudySearch`` adds two things to ``OptunaSearch``, through its public hooks only:

- every Optuna trial carries the Ray trial id as the user attribute ``trial_id`` (the Parquet
  rows' key), so the study and the results join;
- a trial that ended without the trainable's final report (stopped early by the scheduler) is
  told ``PRUNED``, and a trial whose final report says it did not finish well (``diverged``) is
  told ``FAIL``; a ``doomed`` trial is ``COMPLETE`` with the constraint ``doomed`` violated
  (``sweeps/tune/screen.py``). The states then mirror the rows' ``status``: ``ok`` ->
  COMPLETE, ``doomed`` -> COMPLETE and infeasible, ``stopped_early`` -> PRUNED, ``error`` /
  ``diverged`` -> FAIL, ``interrupted`` -> RUNNING until ``--resume`` finishes it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune.search.optuna import OptunaSearch

from pruning_core.base.errors import ConfigError
from sweeps.tune.location import is_remote, is_uri, resolve
from sweeps.tune.pack import PACK_KEY, STOPPED_FLAG, member_id, member_reports
from sweeps.tune.screen import TRIAL_ID_ATTR, forget, mark_doomed, remember
from sweeps.tune.space import SearchSpace
from sweeps.tune.trainable import FINAL_FLAG, RESULT_STATUS

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

#: the default journal file's name, under the results directory
STUDY_FILE = "study.log"
#: the Optuna user attribute holding the Ray trial id (the Parquet rows' ``trial_id``)


def study_name(space: SearchSpace) -> str:
    return space.study.name or space.name


#: ``study_location`` of results in object storage without ``study.storage``
IN_MEMORY = "in-memory"


def study_location(space: SearchSpace) -> str:
    """The study's storage: an RDB URL as given, or the journal file's absolute path.

    Results in object storage (``s3://`` ...) cannot hold a journal file (it appends and locks
    a local file), and a file on the driver's disk would not follow a ``--resume`` from another
    machine: there the default is :data:`IN_MEMORY` (the study travels inside Ray's searcher
    state, with the experiment); set ``study.storage`` to an RDB URL (or a shared path) to keep
    a study Optuna's tools can open.
    """
    given = space.study.storage
    if given is not None and is_uri(given):  # an RDB URL
        return given
    if given is not None:
        return str(Path(given).expanduser().resolve())
    root = resolve(space.results_dir)
    if root.remote:
        return IN_MEMORY
    return str(Path(root.local).resolve() / STUDY_FILE)


def is_remote_results(space: SearchSpace) -> bool:
    return is_remote(space.results_dir)


def open_storage(space: SearchSpace) -> optuna.storages.BaseStorage:
    """The study's Optuna storage (creates the journal file, or the RDB tables, if missing)."""
    import optuna

    where = study_location(space)
    if where == IN_MEMORY:
        log.warning("results are in %s: the Optuna study lives in Ray's searcher state with the "
                    "experiment (set study.storage to an RDB URL to keep one optuna-dashboard "
                    "can open)", space.results_dir)
        return optuna.storages.InMemoryStorage()
    try:
        if is_uri(where):  # an RDB URL
            return optuna.storages.RDBStorage(where)
        Path(where).parent.mkdir(parents=True, exist_ok=True)
        from sweeps.tune.journal import SweepJournalBackend

        backend = SweepJournalBackend(where)
        return optuna.storages.JournalStorage(backend)
    except (OSError, ImportError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ConfigError(f"study.storage: cannot open {_redact(where)} ({first})") from None
    except Exception as exc:  # SQLAlchemy's errors (a bad URL, a refused connection)
        if type(exc).__module__.startswith("sqlalchemy"):
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ConfigError(f"study.storage: cannot open {_redact(where)} ({first})") \
                from None
        raise


def _redact(url: str) -> str:
    """An RDB URL without its password."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    creds, host = rest.split("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def directions(space: SearchSpace) -> list[str]:
    return ["minimize" if m == "min" else "maximize" for m in space.modes]


def new_study(space: SearchSpace, storage: optuna.storages.BaseStorage,
              sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """Create the sweep's study. A study of that name with trials already in the storage is
    refused (a fresh sweep must not mix its trials with another run's: ``--resume`` continues
    one); an empty one (a start that failed before any trial) is replaced."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = study_name(space)
    if name in optuna.study.get_all_study_names(storage):
        old = optuna.load_study(study_name=name, storage=storage)
        if old.get_trials(deepcopy=False):
            raise ConfigError(
                f"study: {_redact(study_location(space))} already holds a study named {name!r} "
                f"with {len(old.get_trials(deepcopy=False))} trials: pass --resume to finish "
                "that sweep, --name to start another, or set study.name")
        optuna.delete_study(study_name=name, storage=storage)
    return optuna.create_study(storage=storage, sampler=sampler, study_name=name,
                               directions=directions(space))


def load_study(space: SearchSpace) -> optuna.Study:
    """The sweep's study, as ``optuna.load_study`` gives it (for reports and users)."""
    import optuna

    return optuna.load_study(study_name=study_name(space), storage=open_storage(space))


# ----------------------------------------------------------------------------- the searcher
class TaggedSpace:
    """The space's define-by-run function, which also tags each Optuna trial with the Ray
    trial id being suggested (``StudySearch.suggest`` sets it). Picklable, like the space."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.trial_id: str | None = None

    def __call__(self, trial: optuna.trial.Trial) -> dict[str, Any] | None:
        if self.trial_id is not None:
            trial.set_user_attr(TRIAL_ID_ATTR, self.trial_id)
            remember(self.trial_id, trial)  # a doomed trial gets its constraint on it
        return self.fn(trial)


class StudySearch(OptunaSearch):
    """``OptunaSearch`` on the sweep's study, telling Optuna what the results rows say.

    Ray's ``OptunaSearch.on_trial_complete`` tells ``COMPLETE`` whenever a result is given,
    ``PRUNED`` when none is (and no error), ``FAIL`` on an error. A trial stopped by the
    scheduler ends with its last *epoch* report, which carries the objectives, so Ray alone
    would record it ``COMPLETE`` with mid-training values. Here such a trial is handed on
    without its result, so it is recorded ``PRUNED``; the final report of a trial that did not
    end ``ok`` is handed on as an error (``FAIL``): its values are no trial's outcome.
    """

    def __init__(self, space: Any, pack: int = 1, total: int | None = None,
                 **kwargs: Any) -> None:
        self.tagged_space = TaggedSpace(space)
        #: ``budget.pack``: Optuna trials asked per Ray trial; ``total``: sampled configs in all
        self.pack, self.total, self.members_asked = pack, total, 0
        #: Ray trial id -> its members' count, for every pack this searcher asked
        self.packs: dict[str, int] = {}
        super().__init__(space=self.tagged_space, **kwargs)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if getattr(self, "pack", 1) > 1:
            return self._suggest_pack(trial_id)
        self.tagged_space.trial_id = trial_id
        try:
            return super().suggest(trial_id)
        finally:
            self.tagged_space.trial_id = None

    def _suggest_pack(self, trial_id: str) -> dict[str, Any] | None:
        """A pack: one Optuna trial per member, each tagged with its member id."""
        from ray.tune.search import Searcher

        n = self.pack if self.total is None else min(self.pack, self.total - self.members_asked)
        if n <= 0:
            return Searcher.FINISHED
        configs = []
        for i in range(n):
            mid = member_id(trial_id, i)
            self.tagged_space.trial_id = mid
            try:
                configs.append(super().suggest(mid))
            finally:
                self.tagged_space.trial_id = None
        self.members_asked += n
        self.packs[trial_id] = n
        return {PACK_KEY: configs}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        if trial_id in getattr(self, "packs", {}):  # members' ends: tell each its own result
            for mid, _, report in member_reports(trial_id, result):
                if report.get(FINAL_FLAG):
                    self.on_trial_complete(mid, report)
                elif report.get(STOPPED_FLAG):  # stopped early by the sweep's scheduler
                    self.on_trial_complete(mid, None)
            return
        try:
            super().on_trial_result(trial_id, result)
        except UpdateFinishedTrialError:
            _already_told(trial_id)
        except KeyError as exc:
            _not_in_snapshot(trial_id, exc)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        if trial_id in getattr(self, "packs", {}):  # members not told yet: PRUNED, or FAIL
            for i in range(self.packs[trial_id]):
                if member_id(trial_id, i) not in self._completed_trials:
                    self.on_trial_complete(member_id(trial_id, i), None, error)
            return
        try:
            self._complete(trial_id, result, error)
        except UpdateFinishedTrialError:
            _already_told(trial_id)
        except KeyError as exc:
            _not_in_snapshot(trial_id, exc)
        except ValueError as exc:  # optuna's tell: "Cannot tell a COMPLETE trial."
            if "Cannot tell a" not in str(exc):
                raise
            _already_told(trial_id)

    def _complete(self, trial_id: str, result: dict[str, Any] | None, error: bool) -> None:
        if result is not None and not error:
            if not result.get(FINAL_FLAG):
                log.debug("trial %s ended before its final report: PRUNED", trial_id)
                result = None
            elif result.get(RESULT_STATUS) == "doomed" and mark_doomed(trial_id):
                log.debug("trial %s doomed: COMPLETE, infeasible", trial_id)
            elif result.get(RESULT_STATUS, "ok") != "ok":
                log.debug("trial %s ended %s: FAIL", trial_id, result.get(RESULT_STATUS))
                result, error = None, True
        forget(trial_id)
        super().on_trial_complete(trial_id, result=result, error=error)


def _not_in_snapshot(trial_id: str, exc: KeyError) -> None:
    """A resumed sweep runs a trial its restored searcher never asked: the driver was killed
    after Ray's experiment snapshot recorded the trial but before the searcher's own snapshot
    did. The study cannot be told about it (its Optuna trial, asked by the killed driver, is
    settled FAIL at the end: ``settle_orphans``); its row is still recorded."""
    if exc.args != (trial_id,):
        raise exc
    log.info("trial %s: asked by a driver killed before the searcher's snapshot; its row is "
             "recorded, the study is not told", trial_id)


def _already_told(trial_id: str) -> None:
    """A resumed sweep re-runs a trial whose outcome the study already holds: a killed driver
    told the study (its own file, written at once) after Ray's last experiment snapshot (written
    every few seconds). The study keeps the first outcome; the re-run still gets its row."""
    log.info("trial %s: the study already holds its outcome (told before a driver was killed); "
             "keeping it", trial_id)


def settle_orphans(space: SearchSpace) -> int:
    """After a sweep that recorded every trial: Optuna trials still ``RUNNING`` were asked
    by a driver that was killed before its next snapshot (the resumed run sampled anew, under
    other ids); tell them ``FAIL`` so the study holds no trial that never ends. Returns how
    many."""
    import optuna
    from optuna.trial import TrialState

    try:
        study = optuna.load_study(study_name=study_name(space), storage=open_storage(space))
    except KeyError:  # a sweep started before studies were stored: nothing to settle
        return 0
    except ConfigError as exc:  # the sweep is done; a storage gone since must not fail it
        log.warning("could not settle the study's unfinished trials: %s", exc)
        return 0
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL)
    if stale:
        log.warning("the study had %d trials asked by a killed driver and never run; told FAIL",
                    len(stale))
    return len(stale)
