"""The Ray Tune function trainable: sampled dict -> TrialConfig -> ``experiment.run`` -> reports.

Reports once per epoch (so ASHA can act), each with a checkpoint of the engine's state after that
epoch, so a retried or restored trial continues instead of restarting; then once more with the
final metrics and ``final: True`` (a trial stopped early by the scheduler never sends that one).

Every report carries ``progress``: the share of the trial's *own* plan trained so far, in
per-mille (``PLAN_SCALE``). ASHA's clock is that attribute, so an IMP trial (``train.epochs`` per
level), an ``after`` trial (pretraining plus fine-tuning) and a trial with a searched
``train.epochs`` are all judged at the same fraction of their plans and get their whole plan.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pruning_core.base.code_trust import ALLOW_ENV, ROOTS_ENV
from pruning_core.base.record import METRICS
from sweeps.tune.location import is_remote, local_path
from sweeps.tune.pack import PACK_KEY
from sweeps.tune.plan_clock import PLAN_SCALE, plan_progress
from sweeps.tune.space_keys import trial_dict
from sweeps.tune.stop_client import StopSpec
from sweeps.tune.wandb_log import TrialRun, WandbTarget

STATE_FILE = "state.pt"
#: keys the trainable adds to every report
FINAL_FLAG = "final"
RESULT_STATUS = "result_status"
#: ASHA's ``time_attr``: per-mille of the trial's plan trained (``PLAN_SCALE`` = plan done)
PROGRESS = "progress"
#: epoch reports carry the network's size as it trains (``EpochReport.sizes``) under this
#: prefix: what a trial stopped early keeps (its FLOPs, parameters, target sparsity), while
#: schedulers and the searcher see the final-only objectives as NaN until the end, as before
MEASURED = "measured_"
#: ``metrics.keep_weights: true``: every trial saves its final weights as
#: ``<results>/weights/<trial_id>.safetensors`` (read by ``prunetune similarity --results``;
#: local or file:// results only)
WEIGHTS_DIR = "weights"

RunFn = Callable[..., Any]
#: how each allowance variable joins its values (``pruning_core.base.code_trust``)
_SEP = {ALLOW_ENV: ",", ROOTS_ENV: os.pathsep}

log = logging.getLogger(__name__)
#: backoff of a refused report: first wait, growth factor, longest wait (seconds)
RETRY_FIRST_S, RETRY_GROWTH, RETRY_MAX_S = 1.0, 2.0, 15.0


def report_retrying(report: Callable[[], None], budget_s: float,
                    sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic) -> int:
    """Call ``report`` (a ``tune.report`` with its checkpoint); while the results storage
    refuses it (``OSError``: S3 down, a network cut), wait 1, 2, 4 … 15 s and try again,
    for ``budget_s`` seconds at most, then raise the last error. Returns the retries used.

    Ray Tune retries a failed trial at once (``max_failures``, no backoff), and a restarted
    trial checks the storage first, so a 20 s S3 outage used to spend every retry and end
    trials in ``error``. A refused report has recorded nothing (Ray persists the checkpoint
    before it records the result), so trying again neither loses nor doubles a report; the
    only trace is a skipped checkpoint index."""
    deadline = clock() + budget_s
    wait, tries = RETRY_FIRST_S, 0
    while True:
        try:
            report()
            return tries
        except OSError as exc:
            if clock() + wait > deadline:
                raise
            tries += 1
            log.warning("results storage refused a report (%s); retry %d in %.0f s",
                        str(exc).splitlines()[0][:200], tries, wait)
            sleep(wait)
            wait = min(wait * RETRY_GROWTH, RETRY_MAX_S)


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a sweep shares (``make_trainable``'s arguments), and the steps a
    solo trial and a pack member take alike: the trial config, the epoch and final metrics."""

    base: dict[str, Any]
    sweep: str
    default_threads: int = 1
    run_fn: RunFn | None = None
    dense_dir: str | None = None
    final_only: tuple[str, ...] = ()
    wandb: WandbTarget | None = None
    storage_retry_s: float = 120.0
    #: a packed sweep's early stopping (``member_stops.py``): where its members ask; None: none
    stops: StopSpec | None = None
    #: the driver's import allowances (``code_env.trust_env``), with the trainable: they reach
    #: workers of a Ray the caller started before ``run_sweep`` (its runtime_env is theirs)
    trust: tuple[tuple[str, str], ...] = ()

    def trial_config(self, sampled: dict[str, Any], trial_id: str) -> tuple[Any, dict[str, Any]]:
        """The validated ``TrialConfig`` of a sampled config, and its dict (W&B's config)."""
        # here, not at module level: it imports torch, and Ray unpickling the trainable must
        # not (the actor would start seconds late; tests/sweeps/test_worker_imports.py)
        from pruning_core.trials.registries import load_trial_config

        _apply_trust(self.trust)
        data = trial_dict(self.base, sampled)
        data.setdefault("tags", {}).update({"sweep": self.sweep, "trial_id": trial_id})
        data.setdefault("train", {}).setdefault("threads", self.default_threads)
        return load_trial_config(data), data

    def epoch_metrics(self, report: Any, where: dict[str, Any]) -> dict[str, Any]:
        """An epoch report's metrics: sizes, NaN for the final-only objectives, progress."""
        progress = min(plan_progress(report.epoch, report.total_epochs), PLAN_SCALE - 1)
        return {**{MEASURED + k: v for k, v in report.sizes.items()},
                **dict.fromkeys(self.final_only, math.nan), **report.metrics,
                PROGRESS: progress, **where}

    def final(self, result: Any, cfg: Any, total_epochs: int | None) -> dict[str, Any]:
        """A trial's final metrics: the plan's progress it reached (all of it when ``ok``)."""
        final = final_metrics(result)
        if cfg.metrics.similarity is None:
            final.pop("similarity_mean")
        if result.status == "ok":
            final[PROGRESS] = PLAN_SCALE
        elif total_epochs is not None:  # diverged part-way: the share it trained
            final[PROGRESS] = plan_progress(result.epochs, total_epochs)
        return final

    def run_extras(self, trial_id: str, keep_weights: bool) -> dict[str, Any]:
        # fault-injecting wrappers in tests take (cfg, on_epoch, resume) only
        return {} if self.run_fn is not None else _run_extras(
            self.dense_dir, self.sweep, trial_id, keep_weights)


def make_trainable(
    base: dict[str, Any], sweep: str, default_threads: int = 1, run_fn: RunFn | None = None,
    dense_dir: str | None = None, final_only: tuple[str, ...] = (),
    wandb: WandbTarget | None = None, storage_retry_s: float = 120.0,
    stops: StopSpec | None = None, trust: Mapping[str, str] | None = None,
) -> Callable[[dict[str, Any]], None]:
    """Build the function Ray Tune runs per trial.

    ``base`` is the space's fixed config; ``run_fn`` defaults to
    ``pruning_core.trials.experiment.run``
    (tests pass a wrapper that injects faults). ``dense_dir``: where trials share the dense
    networks they train before pruning and the dense references of ``metrics.similarity``
    (``pruning_core.trials.dense_cache``: one writer per key, the others wait and load).
    ``final_only``: objectives known only at the end (flops, similarity_mean, ...); epoch
    reports carry them as NaN, since Ray Tune requires every searched metric in every report.
    ``wandb``: where each trial logs its live W&B run (``wandb_log.TrialRun``); None: no W&B.
    ``storage_retry_s``: how long a report the results storage refuses is retried
    (``report_retrying``; ``budget.storage_retry_s``). ``stops``: a packed sweep's early
    stopping per member (``member_stops.stop_spec``). ``trust``: the driver's import
    allowances (``code_env.trust_env``), applied in the worker before a config is read.
    """
    settings = TrialSettings(base, sweep, default_threads, run_fn, dense_dir, final_only,
                             wandb, storage_retry_s, stops, tuple(sorted((trust or {}).items())))

    def prunetune_trial(config: dict[str, Any]) -> None:
        if PACK_KEY in config:  # budget.pack > 1: several sampled configs (sweeps/tune/pack.py)
            return _pack_trial(config, settings)
        return _solo_trial(config, settings)

    return prunetune_trial


def _apply_trust(trust: tuple[tuple[str, str], ...]) -> None:
    """The driver's allowances in this worker's environment (allowed packages: joined with the
    worker's own; code roots: added), as ``code_env.runtime_env`` gives a Ray started by
    ``run_sweep``. Only what the driver's user allowed (never a config)."""
    for key, value in trust:
        mine = [v for v in os.environ.get(key, "").split(_SEP[key]) if v]
        add = [v for v in value.split(_SEP[key]) if v and v not in mine]
        if add:
            os.environ[key] = _SEP[key].join([*mine, *add])


def _where() -> dict[str, Any]:
    import ray

    return {"node_id": ray.get_runtime_context().get_node_id(),
            "hostname": socket.gethostname()}


def _solo_trial(config: dict[str, Any], s: TrialSettings) -> None:
    """One sampled config: ``experiment.run`` with a report (and checkpoint) per epoch, its
    live W&B run, and the final report."""
    import torch
    from ray import tune

    run = s.run_fn
    if run is None:
        from pruning_core.trials.experiment import run
    trial_id = tune.get_context().get_trial_id()
    cfg, data = s.trial_config(config, trial_id)
    where = _where()
    plan: dict[str, int] = {}

    def on_epoch(report: Any) -> None:
        plan["total"] = report.total_epochs
        live.log(report.metrics, report.epoch)
        # The last epoch's metrics go out with the final report: a scheduler rung at the
        # last epoch must not stop a trial that has finished training (and lose its result).
        if report.epoch == report.total_epochs:
            return
        metrics = s.epoch_metrics(report, where)
        with tempfile.TemporaryDirectory() as d:
            torch.save(report.checkpoint(), Path(d, STATE_FILE))
            report_retrying(lambda: tune.report(
                dict(metrics), checkpoint=tune.Checkpoint.from_directory(d)),
                s.storage_retry_s)

    extra = s.run_extras(trial_id, cfg.metrics.keep_weights)
    # W&B, live from this worker: one run per trial, every epoch as it ends (never raises)
    live = TrialRun(s.wandb, trial_id, config=data)
    try:
        result = run(cfg, on_epoch=on_epoch, resume=_resume_state(), **extra)
    except BaseException as exc:  # raised, or stopped by the scheduler (SystemExit(0))
        live.finish(exit_code=0 if isinstance(exc, SystemExit) and not exc.code else 1)
        raise
    final = s.final(result, cfg, plan.get("total"))
    live.finish(summary={**final, "status": result.status})
    report_retrying(lambda: tune.report(final | where), s.storage_retry_s)


def _resume_state() -> Any:
    """The engine state of the trial's last checkpoint (a retried or restored trial), or None."""
    import torch
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        return torch.load(Path(d, STATE_FILE), weights_only=True)


def _run_extras(dense_dir: str | None, sweep: str, trial_id: str,
                keep_weights: bool) -> dict[str, Any]:
    """``experiment.run``'s keyword arguments a sweep adds: the dense cache shared by the
    sweep's trials (local, or object storage), and where ``metrics.keep_weights`` saves them."""
    from pruning_core.trials.dense_cache import LocalDenseCache

    extra: dict[str, Any] = {}
    if dense_dir:
        if is_remote(dense_dir):
            from sweeps.tune.dense_store import ObjectStoreDenseCache

            extra["dense_cache"] = ObjectStoreDenseCache(dense_dir, sweep)
        else:
            extra["dense_cache"] = LocalDenseCache(local_path(dense_dir))
    if keep_weights:
        extra["weights_out"] = trial_weights_path(dense_dir, trial_id)
    return extra


def trial_weights_path(dense_dir: str | None, trial_id: str) -> str | None:
    """``<results>/weights/<trial_id>.safetensors`` (``dense_dir`` is ``<results>/dense``), or
    None for results on object storage (not kept there)."""
    if not dense_dir or is_remote(dense_dir):
        return None
    return str(Path(local_path(dense_dir)).parent / WEIGHTS_DIR
               / f"{trial_id}.safetensors")


def final_metrics(result: Any) -> dict[str, Any]:
    """A ``TrialResult`` -> the flat dict of the final report."""
    metrics = {k: v for k, v in result.metrics().items() if k not in ("status", "error")}
    for m in METRICS:  # a metric the trial could not measure: NaN, not absent (objectives)
        if m.name not in metrics and hasattr(result, m.name):
            metrics[m.name] = math.nan if m.type == "float64" else None
    last_epoch = result.history[-1]["epoch"] if result.history else 0
    return {
        **metrics,
        FINAL_FLAG: True,
        RESULT_STATUS: result.status,
        "result_error": result.error,
        "epoch": last_epoch,
        "diverged_epoch": result.diverged_epoch,
        "n_collapsed": len(result.collapsed_layers),
        "collapsed_layers": json.dumps(result.collapsed_layers),
        "layer_sparsity": json.dumps(result.layer_sparsity),
        "similarity": json.dumps(result.similarity),
        "layer_effective_sparsity": json.dumps(result.layer_effective_sparsity),
        # NaN, not absent, when it could not be measured (a diverged trial): objectives need it
        "similarity_mean": math.nan if result.similarity_mean is None
        else result.similarity_mean,
        "history": json.dumps(result.history),  # NaN stays NaN (Python's json reads it)
    }


def _pack_trial(config: dict[str, Any], s: TrialSettings) -> None:
    """One Ray trial of a pack (``sweeps/tune/pack.py``): its members through ``run_pack``,
    epoch and final reports per member, one live W&B run per member."""
    import torch
    from ray import tune

    from sweeps.tune.pack import PACK_MEMBER, batched_report, report_with_state, run_pack_trial
    from sweeps.tune.stop_client import StopClient
    from sweeps.tune.wandb_async import BackgroundRuns

    trial_id = tune.get_context().get_trial_id()
    where = _where()
    saved = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            saved = torch.load(Path(d, STATE_FILE), weights_only=True)

    def member_final(result: Any, last: Any, cfg: Any) -> dict[str, Any]:
        return s.final(result, cfg, None if last is None else last.total_epochs) | where

    def send(metrics: dict[str, Any], d: str | None) -> None:
        report_retrying(lambda: tune.report(
            dict(metrics), checkpoint=None if d is None else tune.Checkpoint.from_directory(d)),
            s.storage_retry_s)

    report = report_with_state(send, STATE_FILE)
    done = sorted((saved or {}).get("done", {}).items(), key=lambda kv: int(kv[0]))
    if done:  # members a killed pack had finished: their finals again (idempotent), at once
        report(batched_report([{**json.loads(v), PACK_MEMBER: int(k)} for k, v in done]), None)
    # each member's live W&B run, written by a background thread (wandb_async.py)
    runs = BackgroundRuns(s.wandb)
    try:
        run_pack_trial(config[PACK_KEY], trial_id, build=s.trial_config, run_fn=s.run_fn,
                       extra=s.run_extras(trial_id, keep_weights=False), live=runs.open,
                       epoch_metrics=lambda report: s.epoch_metrics(report, where),
                       final_metrics=member_final, report=report, saved=saved,
                       stops=None if s.stops is None else StopClient(s.stops))
    finally:
        runs.close()
