"""Launch a sweep: Ray (embedded or an existing cluster), a Tuner with OptunaSearch, resume.

``run_sweep(space)`` starts a local Ray on localhost unless ``address`` is given (``auto``,
``host:port``, ``ray://host:port``), builds the Tuner (OptunaSearch from the space's
define-by-run function, optional ASHA, per-trial resources, failure retries, storage) and runs it.
``resume=True`` restores the experiment under ``<results>/tune`` and finishes it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pruning_core.config import MAX_THREADS, TrialConfig, load_trial_config
from pruning_core.errors import ConfigError

from .ray_env import client_auth_defaults, fate_shared, loopback_only
from .recorder import Recorder
from .space import EPOCH_METRICS, SchedulerSpec, SearchSpace
from .store import TrialStore, _is_uri, join_path
from .trainable import PLAN_SCALE, PROGRESS, RunFn, make_trainable, plan_progress
from .wandb_log import WandbSink

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
    return root if _is_uri(root) else str(Path(root).resolve())


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
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     dashboard_host="127.0.0.1", _node_ip_address="127.0.0.1", **quiet)
        return True
    client_auth_defaults()
    if address.startswith("ray://"):
        ray.init(address=address, logging_level=logging.WARNING, runtime_env=runtime_env)
    else:
        ray.init(address=address, **quiet)
    return True


def plan_epochs(cfg: TrialConfig) -> int:
    """Training epochs in ``cfg``'s plan, the plan built as ``experiment.run`` builds it.

    Builds the model on CPU for its layer shapes (the target sparsity, so the number of
    schedule steps, can depend on them); reads no data.
    """
    from pruning_core.experiment import prunable_layers
    from pruning_core.registries import ALLOCATIONS, TIMINGS
    from pruning_core.schedules import sparsity_steps
    from pruning_core.timing import Train

    shapes = {info.name: tuple(info.shape) for info in prunable_layers(cfg)}
    alloc = cfg.prune.allocation
    target = ALLOCATIONS.get(alloc.name)().target_sparsity(shapes, alloc, cfg.prune.sparsity)
    steps = sparsity_steps(cfg.prune.schedule, target, cfg.prune.steps) if target > 0 else []
    return sum(isinstance(a, Train) for a in TIMINGS.get(cfg.prune.timing.name)(cfg, steps))


def scheduler_clock(s: SchedulerSpec, base: dict[str, Any]) -> tuple[int, int, int]:
    """ASHA's ``(grace_period, max_t, reference epochs)`` in per-mille of each trial's plan.

    ``scheduler.grace_period`` / ``max_t`` are epochs of the fixed config's plan (searched keys
    at their defaults; ``reference`` = its training epochs); each becomes the same share of
    every trial's own plan. ``max_t`` unset (or the whole plan) is one past the plan's end:
    ASHA stops a trial *at* ``max_t``, and a trial's last report (``PLAN_SCALE``) must not be
    swallowed; past it, every trial ends on its own.
    """
    reference = plan_epochs(load_trial_config(base))
    if reference == 0:
        raise ConfigError("scheduler: the fixed config's plan trains no epoch (train.epochs: 0); "
                          "set train.epochs in fixed, or remove the scheduler")
    if s.grace_period > reference:
        raise ConfigError(
            f"scheduler.grace_period: {s.grace_period} epochs is past the fixed config's plan "
            f"({reference} training epochs); give at most {reference}")
    if s.max_t is not None and s.max_t < s.grace_period:
        raise ConfigError(f"scheduler.max_t: {s.max_t} is below grace_period="
                          f"{s.grace_period}; give max_t >= grace_period")
    # rounded down: the rungs grace * rf**k then never sit above the progress a trial reports
    # at that exact share of its plan (reports are rounded to the nearest per-mille)
    grace = max(1, PLAN_SCALE * s.grace_period // reference)
    if s.max_t is None or s.max_t >= reference:
        max_t = PLAN_SCALE + 1
    else:
        max_t = plan_progress(s.max_t, reference)
    return grace, max_t, reference


def _scheduler(space: SearchSpace, base: dict[str, Any]) -> Any:
    """ASHA on ``progress`` (share of each trial's own plan), or None without a scheduler."""
    if space.scheduler is None:
        return None
    from ray.tune.schedulers import ASHAScheduler

    s = space.scheduler
    grace, max_t, _ = scheduler_clock(s, base)
    return ASHAScheduler(time_attr=PROGRESS, metric=s.metric, mode=s.mode, max_t=max_t,
                         grace_period=grace, reduction_factor=s.reduction_factor)


def _search(space: SearchSpace) -> Any:
    import optuna
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metric: str | list[str] = space.metrics if len(space.metrics) > 1 else space.metrics[0]
    mode: str | list[str] = space.modes if len(space.modes) > 1 else space.modes[0]
    search = OptunaSearch(space=space.define_by_run(), metric=metric, mode=mode,
                          sampler=space.make_sampler())
    if space.budget.max_concurrent:
        return ConcurrencyLimiter(search, max_concurrent=space.budget.max_concurrent)
    return search


def dense_dir(space: SearchSpace) -> str:
    """Where trials share dense networks: ``<results>/dense``, on local disk or object storage
    (``dense_store.py``, with the driver's lease actor for one writer per key)."""
    if "://" in space.results_dir and not space.results_dir.startswith("file://"):
        return join_path(space.results_dir, "dense")
    local = space.results_dir.removeprefix("file://")
    return str(Path(local).resolve() / "dense")


def default_threads(space: SearchSpace) -> int:
    """torch threads of a trial that sets no ``train.threads``: its CPUs (at most
    ``MAX_THREADS``; a CPU count no cluster has is refused once Ray is up)."""
    return min(MAX_THREADS, max(1, int(space.resources.cpu)))


def build_trainable(space: SearchSpace, run_fn: RunFn | None = None) -> Any:
    from ray import tune

    threads = default_threads(space)
    final_only = tuple(m for m in space.metrics if m not in EPOCH_METRICS)
    fn = make_trainable(space.base_config(), space.name, default_threads=threads, run_fn=run_fn,
                        dense_dir=dense_dir(space), final_only=final_only)
    return tune.with_resources(fn, {"cpu": space.resources.cpu, "gpu": space.resources.gpu})


def _with_factories(space: SearchSpace, model_fn: Callable[..., Any] | None,
                    data_fn: Callable[..., Any] | None) -> SearchSpace:
    from pruning_core.factories import import_path_of

    fixed = dict(space.fixed)
    for key, fn in (("model.name", model_fn), ("data.name", data_fn)):
        if fn is not None:
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
    from ray import tune

    root = results_root(space)
    store = TrialStore(root)
    exp_path = join_path(root, EXPERIMENT)
    base = space.base_config()
    # the trainable's default thread count, recorded too: a schedule exported from these rows
    # must replay the trial bit for bit
    base.setdefault("train", {}).setdefault("threads", default_threads(space))
    load_trial_config(base)  # fixed settings must be valid before anything starts
    # ASHA's rungs fit the fixed plan (also before anything starts); a resume keeps its own
    scheduler = None if resume else _scheduler(space, base)
    seeds = []
    if warm_start and not resume:
        from .warm_start import seed_points

        seeds = seed_points(space, warm_start)
        log.warning("warm start: %d front trials from %s", len(seeds), ", ".join(warm_start))

    sink = None
    if space.wandb.mode != "disabled":
        wandb_dir = root if not _is_uri(root) else str(Path("wandb").resolve())
        sink = WandbSink(space.name, space.wandb.project, wandb_dir, mode=space.wandb.mode,
                         group=space.wandb.group, entity=space.wandb.entity,
                         space=space.model_dump(mode="json"))
    recorder = Recorder(space.name, store, base, sink=sink,
                        num_samples=space.budget.num_samples)
    all_callbacks = [recorder, *callbacks]

    from .code_env import runtime_env

    started = init_ray(address, num_cpus=num_cpus, runtime_env=runtime_env(working_dir))
    try:
        from .preflight import check_cluster

        check_cluster(space)  # requests no node can meet: an error now, not a wait forever
        if "://" in dense_dir(space) and not dense_dir(space).startswith("file://"):
            from .dense_store import start_lock_service

            leases = start_lock_service(space.name)  # noqa: F841  (held: it lives with the job)
        trainable = build_trainable(space, run_fn)
        if resume:
            if not tune.Tuner.can_restore(exp_path):
                raise ConfigError(f"--resume: no sweep to resume at {exp_path}")
            tuner = tune.Tuner.restore(exp_path, trainable, resume_unfinished=True,
                                       resume_errored=False, restart_errored=False)
            # run_config was unpickled from tuner.pkl: attach this process's live callbacks
            tuner._local_tuner.get_run_config().callbacks = all_callbacks
        else:
            if tune.Tuner.can_restore(exp_path) or store.files():
                raise ConfigError(
                    f"results already exist at {root}: pass --resume to finish that sweep, "
                    "or --name to start another"
                )
            search = _search(space)
            if seeds:
                from .warm_start import add_to_search

                add_to_search(search, seeds)
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=search,
                    scheduler=scheduler,
                    num_samples=space.budget.num_samples,
                    time_budget_s=space.budget.time_budget_s,
                    reuse_actors=reuse_actors,
                    trial_dirname_creator=lambda t: t.trial_id,
                ),
                run_config=tune.RunConfig(
                    name=EXPERIMENT,
                    storage_path=root,
                    failure_config=tune.FailureConfig(max_failures=space.budget.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                    callbacks=all_callbacks,
                    verbose=0,
                ),
            )
        tuner.fit()
    finally:
        if sink is not None:
            sink.close()
        if started:
            import ray

            ray.shutdown()

    rows = store.table()
    counts: dict[str, int] = {}
    if rows.num_rows and "status" in rows.column_names:
        for s in rows.column("status").to_pylist():
            counts[s] = counts.get(s, 0) + 1
    return SweepOutcome(
        results_dir=root, experiment_path=exp_path, num_samples=space.budget.num_samples,
        rows=rows.num_rows, counts=counts,
        complete=rows.num_rows >= space.budget.num_samples, warm_started=len(seeds),
    )


def with_overrides(space: SearchSpace, name: str | None = None,
                   num_samples: int | None = None) -> SearchSpace:
    """The CLI's ``--name`` / ``--num-samples`` applied (a new name gets its own results dir)."""
    data = space.model_dump()
    if name:
        from .outputs import NAME_MAX

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
    from .space import parse_space

    return parse_space(data)


def environment_defaults() -> None:
    """Environment the driver sets before Ray starts (quiet, no prompts)."""
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # num_to_keep forces experiment snapshots as trials checkpoint; that is wanted (fresher
    # state to resume from), so the warning about it is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
