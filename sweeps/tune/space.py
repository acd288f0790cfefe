"""Search spaces: YAML -> validated ``SearchSpace`` -> OptunaSearch define-by-run function.

A space names the objectives, the sampler, the budget, per-trial resources, an optional ASHA
scheduler, the ``fixed`` trial settings and the searched ``params``. Param keys are dotted
``TrialConfig`` keys (``prune.criterion``); Optuna sees them with ``/`` (Ray unflattens on ``/``).

This module holds the space itself and its parsing; the rest lives one idea a module, and every
name is importable from here as before (tests, docs and pickled sweeps name them here):

- ``space_params``: the searched params (``choice``, ``float``, ``int``, ``per_layer``,
  ``depth_ramp``); ``space_sections``: objectives, sampler, budget, resources, scheduler, study,
  W&B; ``storage_checks``: the ``storage`` / ``study.storage`` checks;
- ``space_keys``: trial-config dicts (``trial_dict``, dotted keys); ``define_by_run``: the
  compiled define-by-run function and config draws; ``samplers``: the sampler registry;
- ``space_validate``: pre-launch validation (``validate_space``); ``plan``: the fixed settings
  validated once (``SweepPlan``).
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError, field_validator, model_validator

from pruning_core.base.errors import ConfigError
from pruning_core.base.record import EPOCH_METRICS, FINAL_METRICS
from pruning_core.config import TrialConfig, read_text_file
from pruning_core.trials.registries import load_trial_config
from sweeps.results.objectives import Objective
from sweeps.tune.define_by_run import DefineByRun, depth_ramp, sample_configs
from sweeps.tune.plan import plan_sweep
from sweeps.tune.samplers import (
    LARGE_SWEEP,
    SAMPLER_RESERVED,
    SAMPLERS,
    make_sampler,
    probe_sampler,
    sampler_class,
)
from sweeps.tune.space_keys import (
    LAYERWISE_KEY,
    MISSING,
    SEARCH_KEY,
    canonical_key,
    dotted_keys,
    expand_dotted,
    fixed_value,
    merge_into,
    optuna_name,
    trial_dict,
    unflatten,
)
from sweeps.tune.space_params import (
    PARAM_TAGS,
    BaseParam,
    ChoiceParam,
    DepthRampParam,
    FloatParam,
    IntParam,
    Param,
    PerLayerParam,
    Strict,
)
from sweeps.tune.space_sections import (
    Budget,
    Resources,
    SamplerSpec,
    SchedulerSpec,
    StudySpec,
    WandbSpec,
)
from sweeps.tune.space_validate import _NEEDS, check_wandb, validate_space
from sweeps.tune.storage_checks import (
    RDB_DIALECTS,
    STORAGE_SCHEMES,
    check_storage,
    check_storage_syntax,
    check_study_storage,
    check_study_url,
)
from sweeps.tune.yaml_lines import load_with_lines, locate

if TYPE_CHECKING:
    import optuna

# the names these moved from (and ``_NEEDS``, which tests read), kept resolvable here
_Strict, _Param, _MISSING, _PARAM_TAGS = Strict, BaseParam, MISSING, PARAM_TAGS
_canonical, _dotted_keys, _fixed_value = canonical_key, dotted_keys, fixed_value
_expand, _merge = expand_dotted, merge_into

__all__ = [
    "EPOCH_METRICS",
    "LARGE_SWEEP",
    "LAYERWISE_KEY",
    "RDB_DIALECTS",
    "SAMPLERS",
    "SAMPLER_RESERVED",
    "SEARCH_KEY",
    "STORAGE_SCHEMES",
    "_NEEDS",
    "Budget",
    "ChoiceParam",
    "DefineByRun",
    "DepthRampParam",
    "FloatParam",
    "IntParam",
    "Objective",
    "Param",
    "PerLayerParam",
    "Resources",
    "SamplerSpec",
    "SchedulerSpec",
    "SearchSpace",
    "StudySpec",
    "WandbSpec",
    "check_storage",
    "check_storage_syntax",
    "check_study_storage",
    "check_study_url",
    "check_wandb",
    "depth_ramp",
    "load_space",
    "optuna_name",
    "parse_space",
    "probe_sampler",
    "sampler_class",
    "trial_dict",
    "unflatten",
    "validate_space",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SearchSpace(Strict):
    name: str
    objectives: list[Objective] = Field(min_length=1, max_length=3)
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    budget: Budget = Field(default_factory=Budget)
    resources: Resources = Field(default_factory=Resources)
    scheduler: SchedulerSpec | None = None
    fixed: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Param] = Field(default_factory=dict)
    #: results location: a local directory or a pyarrow filesystem URI (s3://, gs://, ...);
    #: default ``./results/<name>``
    storage: str | None = None
    wandb: WandbSpec = Field(default_factory=WandbSpec)
    study: StudySpec = Field(default_factory=StudySpec)

    @field_validator("storage")
    @classmethod
    def _storage_ok(cls, v: str | None) -> str | None:
        return None if v is None else check_storage_syntax(v)

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("use letters, digits, '_', '-', '.' (it names a directory)")
        return v

    @field_validator("objectives")
    @classmethod
    def _objectives_ok(cls, v: list[Objective]) -> list[Objective]:
        names = [o.metric for o in v]
        for n in names:
            if n not in FINAL_METRICS:
                from pruning_core.base.suggest import with_hint

                raise ValueError(with_hint(f"unknown metric {n!r}; valid: "
                                           f"{', '.join(sorted(FINAL_METRICS))}", n, FINAL_METRICS))
        if len(set(names)) != len(names):
            raise ValueError("an objective metric is listed twice")
        return v

    @field_validator("params", mode="before")
    @classmethod
    def _normalise_keys(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out = {}
        for key, p in v.items():
            if isinstance(p, dict) and isinstance(p.get("when"), dict):
                p = {**p, "when": {canonical_key(k): w for k, w in p["when"].items()}}
            out[canonical_key(str(key))] = p
        return out

    def problems(self) -> list[tuple[tuple[str, ...], str]]:
        """Checks across sections: (location, message) pairs; empty when the space is sound."""
        out: list[tuple[tuple[str, ...], str]] = []
        fixed_keys = dotted_keys(self.fixed)
        for key, p in self.params.items():
            loc = ("params", key)
            if isinstance(p, PerLayerParam | DepthRampParam) and key != LAYERWISE_KEY:
                out.append((loc, f"{p.type} params must be keyed {LAYERWISE_KEY}"))
            clash = [f for f in fixed_keys if f == key or f.startswith(key + ".")]
            if clash:
                out.append((loc, f"also set in fixed ({clash[0]}); set it in one place"))
            for dep, allowed in p.conditions().items():
                dloc = (*loc, "when", dep)
                if dep == key:
                    out.append((dloc, "a param cannot depend on itself"))
                elif dep in self.params:
                    choices = self.params[dep]
                    bad = [a for a in allowed if a not in getattr(choices, "values", allowed)]
                    if bad:
                        out.append((dloc, f"{bad[0]!r} is not one of {choices.values}"))  # type: ignore[union-attr]
                elif fixed_value(self.fixed, dep) is MISSING:
                    out.append((dloc, f"{dep!r} is neither a param nor a fixed setting"))
        try:
            self.param_order()
        except ValueError as exc:
            out.append((("params",), str(exc)))
        if self.sampler.name == "grid":
            try:
                self.grid()
            except ValueError as exc:
                out.append((("sampler", "name"), str(exc)))
        out.extend(self._scheduler_problems())
        if self.budget.pack != 1 and fixed_value(self.fixed, "metrics.keep_weights") is True:
            out.append((("budget", "pack"), f"pack: {self.budget.pack} does not keep weights "
                        "(metrics.keep_weights: true); set budget.pack: 1 to keep them"))
        return out

    @model_validator(mode="after")
    def _scheduler_defaults(self) -> SearchSpace:
        """ASHA's metric/mode where only one reading is possible: the single objective (when
        reported every epoch), and the mode of a named metric that is an objective."""
        s = self.scheduler
        if s is None or s.name != "asha":
            return self
        if s.metric is None and len(self.objectives) == 1 \
                and self.objectives[0].metric in EPOCH_METRICS:
            s.metric = self.objectives[0].metric
        if s.mode is None and s.metric in self.metrics:
            s.mode = self.modes[self.metrics.index(s.metric)]
        return self

    def _scheduler_problems(self) -> list[tuple[tuple[str, ...], str]]:
        s = self.scheduler
        if s is None:
            return []
        loc = ("scheduler",)
        if s.name == "dominated":
            if s.metric is not None or s.mode is not None:
                return [((*loc, "metric" if s.metric is not None else "mode"),
                         "name: dominated compares every objective; metric and mode are ASHA's")]
            if len(self.objectives) < 2:
                return [((*loc, "name"), "dominated needs two or more objectives; with one, "
                         "use name: asha")]
            late = [m for m in self.metrics if m not in EPOCH_METRICS]
            if late:
                return [((*loc, "name"), f"dominated compares the objectives at each rung, but "
                         f"{late[0]} is reported only when a trial ends; per-epoch metrics: "
                         f"{', '.join(sorted(EPOCH_METRICS))}")]
            return []
        if s.metric is None:
            if len(self.objectives) > 1:
                return [((*loc, "metric"), "with several objectives ASHA watches one metric "
                         "alone, which biases the front: name it (e.g. metric: test_accuracy, "
                         "mode: max), or use name: dominated to stop only trials dominated on "
                         "every objective")]
            return [((*loc, "metric"), f"the objective {self.metrics[0]} is reported only when "
                     f"a trial ends; name a per-epoch metric for ASHA "
                     f"({', '.join(sorted(EPOCH_METRICS))})")]
        if s.mode is None:
            return [((*loc, "mode"), f"{s.metric} is not an objective: give its mode (min or "
                     "max)")]
        return []

    # ------------------------------------------------------------------ derived
    @property
    def metrics(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def modes(self) -> list[str]:
        return [o.mode for o in self.objectives]

    @property
    def results_dir(self) -> str:
        return self.storage or str(Path("results") / self.name)

    def param_order(self) -> list[str]:
        """Params sorted so that each comes after the params its ``when`` refers to."""
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(key: str, chain: tuple[str, ...]) -> None:
            if state.get(key) == 2:
                return
            if state.get(key) == 1:
                raise ValueError(f"'when' cycle {' -> '.join((*chain, key))}")
            state[key] = 1
            for dep in self.params[key].when:
                if dep in self.params:
                    visit(dep, (*chain, key))
            state[key] = 2
            order.append(key)

        for key in self.params:
            visit(key, ())
        return order

    def grid(self) -> dict[str, list[Any]]:
        """The GridSampler search space (Optuna names); only choice/int params, no ``when``."""
        out: dict[str, list[Any]] = {}
        for key, p in self.params.items():
            if p.when:
                raise ValueError(f"params.{key}: the grid sampler does not support 'when'")
            if isinstance(p, ChoiceParam):
                out[optuna_name(key)] = list(p.values)
            elif isinstance(p, IntParam) and not p.log:
                out[optuna_name(key)] = list(range(p.low, p.high + 1, p.step))
            else:
                raise ValueError(
                    f"params.{key}: the grid sampler needs choice or int params, got {p.type}"
                )
        return out

    def base_config(self) -> dict[str, Any]:
        """The fixed settings as a nested dict (dotted keys in ``fixed`` expanded)."""
        out: dict[str, Any] = {}
        merge_into(out, expand_dotted(self.fixed))
        prune = out.setdefault("prune", {})
        if isinstance(prune, dict) and "screen" not in prune:  # fixed.prune.screen wins
            prune["screen"] = self.budget.screen.model_dump()
        return out

    @cached_property
    def layers(self) -> list[tuple[str, float]]:
        """(name, normalised depth) of the prunable layers of the fixed model."""
        if not any(isinstance(p, PerLayerParam | DepthRampParam) for p in self.params.values()):
            return []
        from pruning_core.trials.experiment import prunable_layers

        cfg = plan_sweep(self).fixed
        return [(info.name, float(info.depth)) for info in prunable_layers(cfg)]

    # ------------------------------------------------------------------ compile
    def define_by_run(self) -> DefineByRun:
        """The function OptunaSearch calls per trial (cheap: no compute; picklable)."""
        return DefineByRun(self)

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        """The space's Optuna sampler (``samplers.SAMPLERS``)."""
        return make_sampler(self)

    def sample(self, n: int, seed: int = 0) -> list[dict[str, Any]]:
        """Draw ``n`` sampled configs, running nothing (``define_by_run.sample_configs``)."""
        return sample_configs(self, n, seed)

    def trial_config(self, sampled: dict[str, Any]) -> TrialConfig:
        return load_trial_config(trial_dict(self.base_config(), sampled))


def _format_errors(exc: ValidationError, lines: dict[Any, int]) -> str:
    parts = []
    for err in exc.errors():
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            from pruning_core.config import unknown_key

            msg = unknown_key(tuple(err["loc"]), SearchSpace)
        elif err["type"] == "union_tag_invalid":
            msg = f"type must be one of: {', '.join(sorted(PARAM_TAGS))}"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        parts.append(f"{locate(tuple(err['loc']), lines, skip=PARAM_TAGS)}: {msg}")
    return "; ".join(parts)


def parse_space(data: Any, lines: dict[Any, int] | None = None) -> SearchSpace:
    """Validate a space dict; ``ConfigError`` names the field (and YAML line when known)."""
    lines = lines or {}
    if not isinstance(data, dict):
        raise ConfigError("a search space must be a YAML mapping (name, objectives, params, ...)")
    try:
        space = SearchSpace.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, lines)) from None
    problems = space.problems()
    if problems:
        raise ConfigError("; ".join(f"{_locate_raw(loc, lines)}: {m}" for loc, m in problems))
    return space


def _locate_raw(loc: tuple[str, ...], lines: dict[Any, int]) -> str:
    # keys were canonicalised (prune.allocation -> prune.allocation.name); find the YAML spelling
    if len(loc) >= 2 and ("params", loc[1]) not in lines and loc[1].endswith(".name"):
        loc = (loc[0], loc[1][: -len(".name")], *loc[2:])
    return locate(loc, lines)


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space YAML file."""
    p = Path(path)
    text = read_text_file(p, "search space")
    data, lines = load_with_lines(text, source=f"search space {p}")
    return parse_space(data, lines)

