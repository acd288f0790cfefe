"""Pre-launch validation of a search space (``prunetune validate`` and ``prunetune sweep``):
the fixed config, the objectives' needs, the scheduler against the plan, the sampler, where the
sweep writes, W&B, and a sample of trial configs, each checked before any trial runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pruning_core.base.errors import ConfigError
from pruning_core.base.record import BY_NAME
from pruning_core.config import TrialConfig
from pruning_core.workloads.factories import is_import_path
from sweeps.tune.location import is_uri
from sweeps.tune.plan import SweepPlan, plan_sweep
from sweeps.tune.samplers import make_sampler, probe_sampler
from sweeps.tune.space_keys import flat_drawn
from sweeps.tune.storage_checks import check_storage, check_study_url

if TYPE_CHECKING:
    from sweeps.tune.space_protocol import SpaceView as SearchSpace
    from sweeps.tune.space_sections import WandbSpec

_NAME_SHORTHAND = ("prune.allocation", "prune.timing")
# metrics reported every epoch (an ASHA scheduler can only act on these) and every scalar
# metric of a finished trial: declared once, in pruning_core/record.py
#: a metric's ``needs`` (pruning_core/record.py) -> (is it met by the fixed config, an example)
_NEEDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "metrics.similarity": (lambda f: f.metrics.similarity is not None,
                           "fixed.metrics.similarity: {method: cka, layers: all}"),
    "metrics.speed": (lambda f: f.metrics.speed is not None,
                      "fixed.metrics.speed: {repeats: 10}"),
    "prune.granularity: channel": (lambda f: f.prune.granularity == "channel",
                                   "fixed.prune.granularity: channel"),
    "metrics.adversarial": (lambda f: f.metrics.adversarial is not None,
                            "fixed.metrics.adversarial: {attack: pgd}"),
}


def _check_metric_needs(metric: str, fixed: Any, space: SearchSpace) -> None:
    """An objective that only some configs produce needs that config (one line, the fix)."""
    need = BY_NAME[metric].needs if metric in BY_NAME else ""
    if not need:
        return
    met, example = _NEEDS[need]
    searched = need.split(":")[0] in space.params  # e.g. prune.granularity searched
    if not met(fixed) and not searched:
        raise ConfigError(f"objectives: {metric} needs {need.split(':')[0]} in the fixed "
                          f"config (e.g. {example})")




def check_wandb(spec: WandbSpec) -> None:
    """``wandb:`` as W&B itself checks it (its public ``wandb.Settings``): a project name W&B
    refuses (``a/b``, over 128 characters) fails now, in one line, not as a logged error in
    every trial. Nothing is checked with ``mode: disabled``."""
    if spec.mode == "disabled":
        return
    import wandb

    for field, key, value in (("project", "project", spec.project),
                              ("entity", "entity", spec.entity),
                              ("group", "run_group", spec.group)):
        if value is None:
            continue
        try:
            wandb.Settings(**{key: value})
        except Exception as exc:  # wandb's UsageError, pydantic's ValidationError
            errors = getattr(exc, "errors", None)
            msg = errors()[0]["msg"] if callable(errors) else str(exc)
            first = (msg.strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ConfigError(f"wandb.{field}: W&B refuses it ({first})") from None



def validate_space(space: SearchSpace, n: int = 32, seed: int = 0) -> list[TrialConfig]:
    """Sample ``n`` configs (plus one per unseen choice value) and validate each as a TrialConfig.

    This is the pre-launch validation ``prunetune validate`` and ``prunetune sweep`` share:
    it also builds the sampler with its ``sampler.options`` (each checked against the sampler's
    signature) and asks it for a first suggestion on a throw-away study, checks that the
    results storage can be written, that an RDB ``study.storage`` has its driver and no query
    argument SQLAlchemy ignores, the ``wandb:`` settings as W&B checks them, and that trials
    asking for a GPU device get one (``resources.gpu``).
    Raises ``ConfigError`` naming the first config that fails and the params it drew.
    """
    plan = plan_sweep(space)
    _check_fixed(plan)
    sampler = make_sampler(space)  # its options checked against the sampler's signature
    _check_destinations(space)
    out = [_check_sampled(plan, sampled) for sampled in space.sample(n, seed=seed)]
    probe_sampler(space, sampler)
    return out


def _check_fixed(plan: SweepPlan) -> None:
    """The fixed config: the user's factories build, the objectives' needs are met, and the
    scheduler fits its plan."""
    space, fixed = plan.space, plan.fixed
    if is_import_path(fixed.model.name) or is_import_path(fixed.data.name):
        # the user's factories: build the model once here (on CPU), so one that raises, returns
        # no module or has nothing to prune fails now, not in every trial
        from pruning_core.trials.experiment import prunable_layers

        if not prunable_layers(fixed):
            raise ConfigError(f"model.name: {fixed.model.name!r} has no prunable layer matching "
                              "prune.include / prune.exclude")
    for metric in space.metrics:
        _check_metric_needs(metric, fixed, space)
    if space.scheduler is not None:
        # the ASHA-vs-plan check sweep runs as it builds the scheduler
        from sweeps.tune.plan_clock import scheduler_clock

        scheduler_clock(space.scheduler, plan.fixed)


def _check_destinations(space: SearchSpace) -> None:
    """Where the sweep writes: results storage, an RDB study, W&B."""
    # no storage: results/<name>, so a bad directory is the name's fault
    check_storage(space.results_dir, "storage" if space.storage else "name")
    if space.study.storage is not None and is_uri(space.study.storage):  # an RDB URL
        check_study_url(space.study.storage)
    check_wandb(space.wandb)


def _check_sampled(plan: SweepPlan, sampled: dict[str, Any]) -> TrialConfig:
    """One sampled config as a TrialConfig; ``ConfigError`` names the params it drew."""
    try:
        cfg = plan.trial_config(sampled)
    except ConfigError as exc:
        drawn = {k: v for k, v in flat_drawn(sampled).items() if "layer_sparsity/" not in k}
        raise ConfigError(f"params: a sampled config is invalid: {exc} (drawn: {drawn})") \
            from None
    if cfg.train.device.startswith("cuda") and plan.space.resources.gpu == 0:
        raise ConfigError(f"train.device: {cfg.train.device!r} but resources.gpu is 0, so "
                          "trials get no GPU; set resources.gpu (e.g. 1 or 0.5) or "
                          "train.device: auto")
    return cfg
