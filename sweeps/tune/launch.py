"""Launch a sweep: Ray (embedded or an existing cluster), a Tuner with OptunaSearch, resume.

``run_sweep(space)`` starts a local Ray on localhost unless ``address`` is given (``auto``,
``host:port``, ``ray://host:port``), builds the Tuner (OptunaSearch on the sweep's stored Optuna
study, ``study.py``; the optional scheduler, ``schedulers.py``; per-trial resources, failure
retries, storage) and runs it. ``resume=True`` restores the experiment under ``<results>/tune``
and finishes it, on the same study.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ray import tune

from pruning_core.base.errors import ConfigError
from pruning_core.config import MAX_THREADS
from pruning_core.trials.registries import load_trial_config
from sweeps.results.store import TrialStore, join_path
from sweeps.tune.location import is_remote, is_uri, resolve
from sweeps.tune.member_stops import start_board, stop_spec, sweep_scheduler
from sweeps.tune.plan import SweepPlan, plan_sweep
from sweeps.tune.plan_clock import plan_epochs as plan_epochs  # moved there; old name kept
from sweeps.tune.plan_clock import scheduler_clock as scheduler_clock  # old name kept
from sweeps.tune.ray_env import client_auth_defaults, fate_shared, loopback_only
from sweeps.tune.recorder import Recorder
from sweeps.tune.space import EPOCH_METRICS, SearchSpace
from sweeps.tune.stop_client import StopSpec
from sweeps.tune.trainable import (
    RunFn,
    make_trainable,
)
from sweeps.tune.wandb_log import target_for
from sweeps.tune.wandb_sink import WandbSink

log = logging.getLogger(__name__)

EXPERIMENT = "tune"


@dataclass
class SweepOutcome:
    results_dir: str
    experiment_path: str
    num_samples: int
    rows: int
    counts: dict[str, int]
    complete: bool
    warm_started: int = 0


def results_root(space: SearchSpace) -> str:
    root = space.results_dir
    return root if is_uri(root) else str(Path(root).resolve())


def init_ray(address: str | None = None, num_cpus: int | None = None,
             runtime_env: dict[str, Any] | None = None) -> bool:
    """Start or join Ray; returns True when this call started it (the caller shuts it down).

    The embedded Ray binds to 127.0.0.1 and runs no dashboard. ``runtime_env``: the code the
    workers run (``code_env.runtime_env``).
    """
    import ray

    if ray.is_initialized():
        if runtime_env and runtime_env.get("working_dir"):
            log.warning("Ray is already initialised in this process: its workers keep their "
                        "runtime_env, and %s is not shipped", runtime_env["working_dir"])
        return False
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if runtime_env:
        quiet["runtime_env"] = runtime_env
    if address is None:
        # every Ray port on 127.0.0.1 (PRUNETUNE_RAY_BIND_ALL=1 opts out);
        # address="local": always a new cluster, never one found via /tmp/ray
        with loopback_only(), fate_shared():  # its processes die with this driver
            # the node's address is Ray's own choice, ray.util.get_node_ip_address(): loopback
            # while loopback_only() holds
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     dashboard_host="127.0.0.1", **quiet)
        return True
    client_auth_defaults()
    if address.startswith("ray://"):
        ray.init(address=address, logging_level=logging.WARNING, runtime_env=runtime_env)
    else:
        ray.init(address=address, **quiet)
    return True


def _scheduler(space: SearchSpace, base: dict[str, Any]) -> Any:
    """``schedulers.make_scheduler`` for ``space`` over the fixed settings ``base`` (the name
    the scheduler was built under before it moved there)."""
    return sweep_scheduler(SweepPlan(space, base, load_trial_config(base)))


def _search(space: SearchSpace, storage: Any, sampler: Any = None) -> Any:
    """OptunaSearch (``study.StudySearch``) on the sweep's study in ``storage``; the study is
    created first (``study.new_study``), Ray loads it by name."""
    import optuna
    from ray.tune.search import ConcurrencyLimiter

    from sweeps.tune.study import StudySearch, study_name

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metric: str | list[str] = space.metrics if len(space.metrics) > 1 else space.metrics[0]
    mode: str | list[str] = space.modes if len(space.modes) > 1 else space.modes[0]
    search = StudySearch(space.define_by_run(), metric=metric, mode=mode,
                         sampler=sampler if sampler is not None else space.make_sampler(),
                         storage=storage, study_name=study_name(space),
                         pack=space.budget.pack_size(), total=space.budget.num_samples)
    if space.budget.max_concurrent:
        return ConcurrencyLimiter(search, max_concurrent=space.budget.max_concurrent)
    return search


def _new_search(space: SearchSpace, seeds: Sequence[Any]) -> Any:
    """A fresh sweep's searcher: its study created in ``study.storage`` (refused if one of that
    name is there already) and seeded with the warm-start points."""
    from sweeps.tune.study import new_study, open_storage

    storage = open_storage(space)
    sampler = space.make_sampler()
    study = new_study(space, storage, sampler)
    if seeds:
        from sweeps.tune.warm_start import add_to_study

        add_to_study(study, seeds)
    return _search(space, storage, sampler)


class LiveCallbacks(tune.Callback):
    """The run config's one callback: forwards every hook to this process's live callbacks.

    Tune pickles the run config's callbacks into ``tuner.pkl``, and ``Tuner.restore`` takes no
    callbacks: a resumed sweep would run with unpickled copies (no W&B sink, no live progress).
    This forwarder pickles to nothing and forwards to the callbacks ``serving`` registered in
    the process that runs the sweep, fresh or resumed. ``IS_CALLBACK_CONTAINER`` makes Tune's
    metaclass check that every hook is forwarded (a hook Ray adds fails at import, loudly).
    """

    IS_CALLBACK_CONTAINER = True
    _live: ClassVar[list[Any]] = []

    @classmethod
    @contextmanager
    def serving(cls, callbacks: Sequence[Any]) -> Iterator[None]:
        cls._live = list(callbacks)
        try:
            yield
        finally:
            cls._live = []

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        pass

    def _each(self, hook: str, **info: Any) -> None:
        for callback in LiveCallbacks._live:
            getattr(callback, hook)(**info)

    def setup(self, **info: Any) -> None:
        self._each("setup", **info)

    def on_step_begin(self, **info: Any) -> None:
        self._each("on_step_begin", **info)

    def on_step_end(self, **info: Any) -> None:
        self._each("on_step_end", **info)

    def on_trial_start(self, **info: Any) -> None:
        self._each("on_trial_start", **info)

    def on_trial_restore(self, **info: Any) -> None:
        self._each("on_trial_restore", **info)

    def on_trial_save(self, **info: Any) -> None:
        self._each("on_trial_save", **info)

    def on_trial_result(self, **info: Any) -> None:
        self._each("on_trial_result", **info)

    def on_trial_complete(self, **info: Any) -> None:
        self._each("on_trial_complete", **info)

    def on_trial_recover(self, **info: Any) -> None:
        self._each("on_trial_recover", **info)

    def on_trial_error(self, **info: Any) -> None:
        self._each("on_trial_error", **info)

    def on_checkpoint(self, **info: Any) -> None:
        self._each("on_checkpoint", **info)

    def on_experiment_end(self, **info: Any) -> None:
        self._each("on_experiment_end", **info)

    def get_state(self) -> None:
        """Tune snapshots the experiment: each live callback's ``get_state`` runs (the
        recorder writes its queued rows then); their state is not kept (restore builds fresh
        callbacks), so this returns None."""
        for callback in LiveCallbacks._live:
            callback.get_state()
        return None


def dense_dir(space: SearchSpace) -> str:
    """Where trials share dense networks: ``<results>/dense``, on local disk or object storage
    (``dense_store.py``, with the driver's lease actor for one writer per key)."""
    where = resolve(space.results_dir)
    if where.remote:
        return join_path(space.results_dir, "dense")
    return str(Path(where.local).resolve() / "dense")


def wandb_dir(space: SearchSpace) -> str:
    """Where W&B runs go (``<dir>/wandb/``): the results directory, or ``./wandb`` for results
    on object storage. The driver's sink and every trial's worker write there."""
    root = results_root(space)
    return root if not is_uri(root) else str(Path("wandb").resolve())


def default_threads(space: SearchSpace) -> int:
    """torch threads of a trial that sets no ``train.threads``: its CPUs (at most
    ``MAX_THREADS``; a CPU count no cluster has is refused once Ray is up)."""
    return min(MAX_THREADS, max(1, int(space.resources.cpu)))


def build_trainable(space: SearchSpace, run_fn: RunFn | None = None,
                    stops: StopSpec | None = None) -> Any:
    from ray import tune

    from sweeps.tune.code_env import trust_env

    threads = default_threads(space)
    final_only = tuple(m for m in space.metrics if m not in EPOCH_METRICS)
    fn = make_trainable(space.base_config(), space.name, default_threads=threads, run_fn=run_fn,
                        dense_dir=dense_dir(space), final_only=final_only,
                        storage_retry_s=space.budget.storage_retry_s, stops=stops,
                        trust=trust_env(),
                        wandb=target_for(space.name, space.wandb.project, wandb_dir(space),
                                         space.wandb.mode, space.wandb.group,
                                         space.wandb.entity))
    return tune.with_resources(fn, {"cpu": space.resources.cpu, "gpu": space.resources.gpu})


def _with_factories(space: SearchSpace, model_fn: Callable[..., Any] | None,
                    data_fn: Callable[..., Any] | None) -> SearchSpace:
    from pruning_core.base.code_trust import allow_import
    from pruning_core.workloads.factories import import_path_of

    fixed = dict(space.fixed)
    for key, fn in (("model.name", model_fn), ("data.name", data_fn)):
        if fn is not None:
            # the user passed this object from Python: its package is their code, wherever
            # it is installed (the allowance travels to the workers in runtime_env)
            top = str(getattr(fn, "__module__", "") or "").split(".")[0]
            if top.isidentifier() and top != "__main__":
                allow_import(top)
            section, _ = key.split(".")
            fixed.pop(key, None)
            sub = dict(fixed.get(section) or {})
            sub["name"] = import_path_of(fn, key)
            fixed[section] = sub
    return space.model_copy(update={"fixed": fixed})


def run_sweep(
    space: SearchSpace,
    *,
    address: str | None = None,
    resume: bool = False,
    callbacks: Sequence[Any] = (),
    run_fn: RunFn | None = None,
    num_cpus: int | None = None,
    reuse_actors: bool = True,
    warm_start: Sequence[str] = (),
    working_dir: str | None = None,
    model_fn: Callable[..., Any] | None = None,
    data_fn: Callable[..., Any] | None = None,
) -> SweepOutcome:
    """Run (or, with ``resume``, finish) the sweep; returns where the results are.

    ``callbacks`` are extra ``tune.Callback``s (the CLI's live progress). ``run_fn`` replaces
    ``experiment.run`` (tests inject faults with it). ``warm_start``: earlier results whose
    Pareto front seeds the new study (ignored on resume: the restored study already has them).
    ``working_dir``: the user's code for the workers (``code_env.runtime_env``); the driver's own
    prunetune packages always travel with the job. ``model_fn`` / ``data_fn``: the user's
    factories as Python objects (module-level, importable: they become ``model.name`` /
    ``data.name`` import paths, as in YAML).
    """
    if model_fn is not None or data_fn is not None:
        space = _with_factories(space, model_fn, data_fn)
    # fixed settings must be valid before anything starts; the trainable's default thread
    # count is recorded too: a schedule exported from these rows must replay the trial bit for bit
    plan = plan_sweep(space, threads=default_threads(space))
    root = results_root(space)
    store = TrialStore(root)
    # ASHA's rungs fit the fixed plan (also before anything starts); a resume keeps its own
    scheduler = None if resume else sweep_scheduler(plan)
    seeds = _warm_seeds(space, warm_start) if warm_start and not resume else []
    sink = _wandb_sink(space, root)
    recorder = Recorder(space.name, store, plan.base, sink=sink,
                        num_samples=space.budget.num_samples, space=space, background=True)
    live = LiveCallbacks.serving([recorder, *callbacks])

    from sweeps.tune.code_env import runtime_env

    started = init_ray(address, num_cpus=num_cpus, runtime_env=runtime_env(working_dir))
    try:
        _fit(space, plan, store, live, run_fn=run_fn, resume=resume, scheduler=scheduler,
             seeds=seeds, reuse_actors=reuse_actors)
    finally:
        recorder.drain()  # rows still being written (a sweep that raised or was stopped)
        if sink is not None:
            sink.close()
        if started:
            import ray

            ray.shutdown()
    return _outcome(space, store, warm_started=len(seeds))


def _fit(space: SearchSpace, plan: SweepPlan, store: TrialStore, live: LiveCallbacks, *,
         run_fn: RunFn | None, resume: bool, scheduler: Any, seeds: list[Any],
         reuse_actors: bool) -> None:
    """On the Ray cluster ``run_sweep`` started or joined: check it, then run the tuner."""
    from sweeps.tune.preflight import check_cluster

    check_cluster(space)  # requests no node can meet: an error now, not a wait forever
    if is_remote(dense_dir(space)):
        from sweeps.tune.dense_store import start_lock_service

        leases = start_lock_service(space.name)  # noqa: F841  (held: it lives with the job)
    stops = stop_spec(plan)
    if stops is not None:  # a packed sweep's early stopping: its members ask the board
        board = start_board(space.name)  # noqa: F841  (held: it lives with the job)
    tuner = _tuner(plan, store, build_trainable(space, run_fn, stops), resume=resume,
                   scheduler=scheduler, seeds=seeds, reuse_actors=reuse_actors)
    with live, _no_tensorboard():
        tuner.fit()


def _warm_seeds(space: SearchSpace, warm_start: Sequence[str]) -> list[Any]:
    """The front points of earlier results that seed a fresh sweep's study."""
    from sweeps.tune.warm_start import seed_points

    seeds = seed_points(space, warm_start)
    log.warning("warm start: %d front trials from %s", len(seeds), ", ".join(warm_start))
    return seeds


def _wandb_sink(space: SearchSpace, root: str) -> WandbSink | None:
    """The driver's W&B sink (None with ``wandb.mode: disabled``)."""
    if space.wandb.mode == "disabled":
        return None
    return WandbSink(space.name, space.wandb.project, wandb_dir(space), mode=space.wandb.mode,
                     group=space.wandb.group, entity=space.wandb.entity,
                     space=space.model_dump(mode="json"), results=root)


def _tuner(plan: SweepPlan, store: TrialStore, trainable: Any, *, resume: bool, scheduler: Any,
           seeds: Sequence[Any], reuse_actors: bool) -> tune.Tuner:
    """The restored Tuner (``resume``), or a new one on a fresh study; refuses to resume
    nothing, or to start over results already there."""
    space = plan.space
    root = results_root(space)
    exp_path = join_path(root, EXPERIMENT)
    if resume:
        if not tune.Tuner.can_restore(exp_path):
            raise ConfigError(f"--resume: no sweep to resume at {exp_path}")
        # the restored run config's LiveCallbacks forwards to this process's callbacks
        return tune.Tuner.restore(exp_path, trainable, resume_unfinished=True,
                                  resume_errored=False, restart_errored=False)
    if tune.Tuner.can_restore(exp_path) or store.files():
        raise ConfigError(f"results already exist at {root}: pass --resume to finish that sweep, "
                          "or --name to start another")
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=_new_search(space, seeds), scheduler=scheduler,
            num_samples=ray_trials(space), time_budget_s=space.budget.time_budget_s,
            reuse_actors=reuse_actors, trial_dirname_creator=lambda t: t.trial_id,
        ),
        run_config=tune.RunConfig(
            name=EXPERIMENT, storage_path=root,
            failure_config=tune.FailureConfig(max_failures=space.budget.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=space.budget.keep_checkpoints),
            # Ray's CSV and JSON per-trial logs, without its TensorBoard logger
            # (an fsync per result on the driver's loop; the rows are ours)
            callbacks=[LiveCallbacks(), *ray_loggers()], verbose=0,
        ),
    )


def _outcome(space: SearchSpace, store: TrialStore, warm_started: int) -> SweepOutcome:
    """What the sweep left: rows per status; a complete sweep's orphaned study trials settled."""
    root = results_root(space)
    rows = store.table()
    counts: dict[str, int] = {}
    if rows.num_rows and "status" in rows.column_names:
        for s in rows.column("status").to_pylist():
            counts[s] = counts.get(s, 0) + 1
    complete = rows.num_rows >= space.budget.num_samples
    if complete and not counts.get("interrupted"):
        from sweeps.tune.study import settle_orphans

        settle_orphans(space)
    return SweepOutcome(
        results_dir=root, experiment_path=join_path(root, EXPERIMENT),
        num_samples=space.budget.num_samples, rows=rows.num_rows, counts=counts,
        complete=complete, warm_started=warm_started,
    )


def ray_loggers() -> list[Any]:
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    return [CSVLoggerCallback(), JsonLoggerCallback()]


@contextmanager
def _no_tensorboard() -> Iterator[None]:
    """Tune adds its CSV, JSON and TensorBoard loggers unless told not to (its documented
    ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS``); the run config brings CSV and JSON itself."""
    key = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"
    old = os.environ.get(key)
    os.environ[key] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def ray_trials(space: SearchSpace) -> int:
    """Ray trials of the sweep: ``num_samples`` sampled configs, ``budget.pack`` per trial."""
    k = space.budget.pack_size()
    return -(-space.budget.num_samples // k)


def with_overrides(space: SearchSpace, name: str | None = None,
                   num_samples: int | None = None) -> SearchSpace:
    """The CLI's ``--name`` / ``--num-samples`` applied (a new name gets its own results dir)."""
    data = space.model_dump()
    if name:
        from sweeps.results.outputs import NAME_MAX

        if len(os.fsencode(name)) > NAME_MAX:
            raise ConfigError(f"--name: {len(os.fsencode(name))} bytes is longer than the "
                              f"{NAME_MAX} a directory name may have (it names the results "
                              "directory); use a shorter name")
        if space.storage is None or Path(space.storage).name == space.name:
            data["storage"] = None if space.storage is None else str(
                Path(space.storage).parent / name)
        data["name"] = name
    if num_samples is not None:
        data["budget"]["num_samples"] = num_samples
    from sweeps.tune.space import parse_space

    return parse_space(data)


def environment_defaults() -> None:
    """Environment the driver sets before Ray starts (quiet, no prompts)."""
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # budget.keep_checkpoints (num_to_keep) forces experiment snapshots as trials checkpoint;
    # that is wanted (fresher state to resume from), so the warning about it is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
