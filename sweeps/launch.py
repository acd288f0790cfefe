"""Launch a sweep: Ray (embedded or an existing cluster), a Tuner with OptunaSearch, resume.

``run_sweep(space)`` starts a local Ray on localhost unless ``address`` is given (``auto``,
``host:port``, ``ray://host:port``), builds the Tuner (OptunaSearch from the space's
define-by-run function, optional ASHA, per-trial resources, failure retries, storage) and runs it.
``resume=True`` restores the experiment under ``<results>/tune`` and finishes it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pruning_core.config import load_trial_config
from pruning_core.errors import ConfigError

from .ray_env import client_auth_defaults, loopback_only
from .recorder import Recorder
from .space import SearchSpace
from .store import TrialStore, _is_uri, join_path
from .trainable import RunFn, make_trainable
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


def init_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Start or join Ray; returns True when this call started it (the caller shuts it down).

    The embedded Ray binds to 127.0.0.1 and runs no dashboard.
    """
    import ray

    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        # every Ray port on 127.0.0.1 (PRUNETUNE_RAY_BIND_ALL=1 opts out);
        # address="local": always a new cluster, never one found via /tmp/ray
        with loopback_only():
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     dashboard_host="127.0.0.1", _node_ip_address="127.0.0.1", **quiet)
        return True
    client_auth_defaults()
    if address.startswith("ray://"):
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(address=address, **quiet)
    return True


def _scheduler(space: SearchSpace, base: dict[str, Any]) -> Any:
    if space.scheduler is None:
        return None
    from ray.tune.schedulers import ASHAScheduler

    s = space.scheduler
    max_t = s.max_t
    if max_t is None:
        cfg = load_trial_config(base)
        max_t = cfg.train.epochs
        if cfg.prune.timing.name == "after":
            max_t += cfg.prune.timing.pretrain_epochs
    # max_t one past the last epoch: ASHA stops a trial *at* max_t, which would swallow the
    # trainable's final report; past it, the trial ends on its own.
    return ASHAScheduler(time_attr="epoch", metric=s.metric, mode=s.mode, max_t=max_t + 1,
                         grace_period=s.grace_period, reduction_factor=s.reduction_factor)


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


def build_trainable(space: SearchSpace, run_fn: RunFn | None = None) -> Any:
    from ray import tune

    threads = max(1, int(space.resources.cpu))
    fn = make_trainable(space.base_config(), space.name, default_threads=threads, run_fn=run_fn)
    return tune.with_resources(fn, {"cpu": space.resources.cpu, "gpu": space.resources.gpu})


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
) -> SweepOutcome:
    """Run (or, with ``resume``, finish) the sweep; returns where the results are.

    ``callbacks`` are extra ``tune.Callback``s (the CLI's live progress). ``run_fn`` replaces
    ``experiment.run`` (tests inject faults with it). ``warm_start``: earlier results whose
    Pareto front seeds the new study (ignored on resume: the restored study already has them).
    """
    from ray import tune

    root = results_root(space)
    store = TrialStore(root)
    exp_path = join_path(root, EXPERIMENT)
    base = space.base_config()
    # the trainable's default thread count, recorded too: a schedule exported from these rows
    # must replay the trial bit for bit
    base.setdefault("train", {}).setdefault("threads", max(1, int(space.resources.cpu)))
    load_trial_config(base)  # fixed settings must be valid before anything starts
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
    recorder = Recorder(space.name, store, base, sink=sink)
    all_callbacks = [recorder, *callbacks]

    started = init_ray(address, num_cpus=num_cpus)
    try:
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
                    scheduler=_scheduler(space, base),
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
