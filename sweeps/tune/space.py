"""Search spaces: YAML -> validated ``SearchSpace`` -> OptunaSearch define-by-run function.

A space names the objectives, the sampler, the budget, per-trial resources, an optional ASHA
scheduler, the ``fixed`` trial settings and the searched ``params``. Param keys are dotted
``TrialConfig`` keys (``prune.criterion``); Optuna sees them with ``/`` (Ray unflattens on ``/``).

Layer-wise sparsity is searched in two forms, both written to
``prune.allocation = {name: explicit, layer_sparsity: {layer: s}}``:

- ``per_layer``: one Optuna parameter per prunable layer (expanded from the model);
- ``depth_ramp``: 2-3 parameters (start, end, optional curvature); layer ``i`` at normalised
  depth ``d`` gets ``start + (end - start) * d ** curvature``. Its parameters live under the
  ``search`` key of the trial config, which is recorded with the results and stripped before the
  dict becomes a ``TrialConfig``.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from pruning_core.config import (
    NoBoolNumbers,
    ScreenConfig,
    TrialConfig,
    load_trial_config,
    read_text_file,
)
from pruning_core.errors import ConfigError
from pruning_core.factories import is_import_path
from pruning_core.record import BY_NAME, EPOCH_METRICS, FINAL_METRICS
from sweeps.tune.option_types import check_options
from sweeps.tune.yaml_lines import load_with_lines, locate

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

#: a sweep with more trials than this and no sampler named gets NSGA-II, whose cost per trial
#: stays flat (multi-objective TPE's grows with the trials: 12-20 ms each at 1,000)
LARGE_SWEEP = 1000
#: the TrialConfig key the layer-wise forms fill in
LAYERWISE_KEY = "prune.allocation.layer_sparsity"
#: top-level trial-config key for search parameters that are not TrialConfig fields
SEARCH_KEY = "search"
#: fields that accept a plain string meaning ``{name: ...}``
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


_PARAM_TAGS = frozenset({"choice", "float", "int", "per_layer", "depth_ramp"})
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: URI schemes results can live under (pyarrow filesystems Ray Tune also writes to)
STORAGE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss", "file")
_BUCKETED = ("s3", "gs", "gcs", "abfs", "abfss")


def check_storage_syntax(storage: str) -> str:
    """``storage:`` is a local directory path or a URI of a supported scheme with a bucket.

    Raises ``ValueError`` (pydantic turns it into the field's message).
    """
    if not storage.strip():
        raise ValueError("empty; give a directory or a URI like s3://bucket/prefix")
    scheme, sep, rest = storage.partition("://")
    if not sep:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:(?![\\/])", storage) and len(scheme) > 1:
            raise ValueError(f"{storage!r} looks like a URI without '//'; use e.g. "
                             "s3://bucket/prefix or a directory path")
        return storage
    scheme = scheme.lower()
    if scheme not in STORAGE_SCHEMES:
        raise ValueError(f"unsupported URI scheme {scheme + '://'!r}; use a directory or one "
                         f"of {', '.join(x + '://' for x in STORAGE_SCHEMES)}")
    bucket = rest.split("?", 1)[0].split("/", 1)[0]
    if scheme in _BUCKETED and not bucket:
        raise ValueError(f"{scheme}:// needs a bucket, e.g. {scheme}://my-bucket/sweeps")
    if "#" in rest:  # pyarrow drops it, so two sweeps told apart by it would share results
        raise ValueError(f"a URI fragment ({'#' + rest.split('#', 1)[1]!r}) is not used by any "
                         "storage; remove it")
    if scheme == "file":
        if not rest.startswith("/"):
            raise ValueError("file:// needs an absolute path, e.g. file:///data/sweeps")
        _check_file_uri(storage, rest)
    # the query string of a remote URI holds pyarrow's filesystem options (endpoint_override,
    # region, scheme, ...): pyarrow refuses a key it does not know when validate writes there
    return storage


def _check_file_uri(storage: str, rest: str) -> None:
    """A ``file://`` URI must name the directory pyarrow (so Ray Tune) reads it as: the path
    after ``file://``, as written (prunetune's own files go there)."""
    if "?" in rest:
        raise ValueError(f"file:// takes no query string ({'?' + rest.split('?', 1)[1]!r} "
                         "would be ignored); remove it")
    import pyarrow.fs as pafs

    try:
        _, path = pafs.FileSystem.from_uri(storage)
    except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ValueError(f"pyarrow cannot read {storage!r} ({first}); give the directory "
                         "path itself, without file://") from None
    if path.rstrip("/") != rest.rstrip("/"):
        raise ValueError(f"pyarrow reads {storage!r} as {path!r} (percent-decoded); give the "
                         "directory path itself, without file://")


#: SQLAlchemy dialects Optuna's RDBStorage is documented and tested with
RDB_DIALECTS = ("sqlite", "postgresql", "mysql")


def check_study_storage(storage: str) -> str:
    """``study.storage`` is a journal file path or an RDB URL (``sqlite:///...``).

    Raises ``ValueError`` (pydantic turns it into the field's message).
    """
    if not storage.strip():
        raise ValueError("empty; give a journal file path or an RDB URL like sqlite:///study.db")
    scheme, sep, rest = storage.partition("://")
    if not sep:
        return storage
    dialect = scheme.split("+", 1)[0].lower()
    if dialect not in RDB_DIALECTS:
        raise ValueError(f"{scheme + '://'!r} is not an Optuna storage; give a local journal "
                         "file path (e.g. results/study.log) or an RDB URL "
                         f"({', '.join(d + '://' for d in RDB_DIALECTS)})")
    if "#" in rest:  # SQLAlchemy would make it part of the database name
        raise ValueError(f"a URL fragment ({'#' + rest.split('#', 1)[1]!r}) is not used by an "
                         "RDB URL; remove it")
    return storage


def check_study_url(url: str) -> None:
    """An RDB ``study.storage`` as SQLAlchemy reads it, without connecting: its driver is
    installed, and every query-string argument is one the driver takes (SQLAlchemy only warns,
    and ignores, one it does not: ``sqlite:///s.db?bogus=1``). ``ConfigError``, one line."""
    import warnings

    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, SAWarning

    scheme = url.partition("://")[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", SAWarning)
            sqlalchemy.create_engine(url).dispose()
    except SAWarning as exc:
        first = str(exc).split(" (Background", 1)[0].splitlines()[0][:300]
        raise ConfigError(f"study.storage: {first}") from None
    except ImportError as exc:
        raise ConfigError(f"study.storage: {scheme}:// needs its database driver ({exc}); "
                          "install it, or give a journal file path") from None
    except (ArgumentError, ValueError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        first = first.replace(url, "the URL")  # it may hold a password
        raise ConfigError(f"study.storage: SQLAlchemy cannot read the URL ({first})") from None


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


def probe_sampler(space: SearchSpace, sampler: optuna.samplers.BaseSampler) -> None:
    """A first suggestion from ``sampler`` on a throw-away in-memory study, through the space's
    define-by-run function (nothing trained, nothing stored): an option Optuna takes at
    construction but fails on when it first uses it fails here, in one line (the type check of
    ``make_sampler`` is the first line of defence; this is the second)."""
    import warnings

    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    directions = ["minimize" if m == "min" else "maximize" for m in space.modes]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = optuna.create_study(sampler=sampler, directions=directions)
            space.define_by_run()(study.ask())
    except Exception as exc:  # whatever the sampler raises on its options
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        what = "sampler.options" if space.sampler.options else "sampler"
        raise ConfigError(f"{what}: the {space.sampler.name} sampler failed on a first "
                          f"suggestion ({type(exc).__name__}: {first})") from None
    finally:
        optuna.logging.set_verbosity(verbosity)


class _Strict(NoBoolNumbers):
    # inf / nan pass pydantic's float checks but make Optuna (or a trial) fail later;
    # NoBoolNumbers: ``num_samples: true`` is not 1
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# ----------------------------------------------------------------------------- params
class _Param(_Strict):
    #: ``{other.key: value or [values]}``: sample this param only when all conditions hold
    when: dict[str, Any] = Field(default_factory=dict)

    def conditions(self) -> dict[str, list[Any]]:
        return {k: v if isinstance(v, list) else [v] for k, v in self.when.items()}


class ChoiceParam(_Param):
    type: Literal["choice"]
    values: list[Any] = Field(min_length=1)

    @field_validator("values")
    @classmethod
    def _hashable_scalars(cls, v: list[Any]) -> list[Any]:
        for x in v:
            if not (x is None or isinstance(x, bool | int | float | str)):
                raise ValueError(f"choice values must be scalars (str, number, bool), got {x!r}")
        if len(set(map(repr, v))) != len(v):
            raise ValueError("choice values must be distinct")
        return v


class _Range(_Param):
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        low, high = self.low, self.high  # type: ignore[attr-defined]
        if not low < high:
            raise ValueError(f"low ({low}) must be < high ({high})")
        if self.log and low <= 0:
            raise ValueError(f"log=true needs low > 0, got {low}")
        return self


class FloatParam(_Range):
    type: Literal["float"]
    low: float
    high: float


class IntParam(_Range):
    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _step_or_log(self) -> IntParam:
        if self.log and self.step != 1:  # Optuna's suggest_int refuses the pair
            raise ValueError("step and log=true cannot be combined; drop one of them")
        return self


class PerLayerParam(_Range):
    """One sparsity parameter per prunable layer of the (fixed) model."""

    type: Literal["per_layer"]
    low: float = Field(ge=0.0, lt=1.0)
    high: float = Field(gt=0.0, lt=1.0)


class DepthRampParam(_Param):
    """Layer sparsity ramped over normalised depth: 2-3 parameters for any depth."""

    type: Literal["depth_ramp"]
    start: tuple[float, float] = (0.3, 0.95)
    end: tuple[float, float] = (0.5, 0.99)
    #: optional [low, high] for the exponent on depth (log-uniform); None = linear ramp
    curvature: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _ranges(self) -> DepthRampParam:
        for field in ("start", "end"):
            low, high = getattr(self, field)
            if not 0.0 <= low < high < 1.0:
                raise ValueError(f"{field} must be [low, high] with 0 <= low < high < 1")
        if self.curvature is not None:
            low, high = self.curvature
            if not 0.0 < low < high:
                raise ValueError("curvature must be [low, high] with 0 < low < high")
        return self


Param = Annotated[
    ChoiceParam | FloatParam | IntParam | PerLayerParam | DepthRampParam,
    Field(discriminator="type"),
]


# ----------------------------------------------------------------------------- sections
class Objective(_Strict):
    metric: str
    mode: Literal["min", "max"]


#: the Optuna sampler class of each ``sampler.name``
SAMPLERS = {"tpe": "TPESampler", "nsga2": "NSGAIISampler", "gp": "GPSampler",
            "random": "RandomSampler", "grid": "GridSampler"}
#: sampler constructor arguments set elsewhere in the space -> where
SAMPLER_RESERVED = {"seed": "sampler.seed", "search_space": "params (the grid sampler's grid)"}


def sampler_class(name: str) -> type[optuna.samplers.BaseSampler]:
    """The Optuna sampler class ``sampler.name`` stands for."""
    import optuna

    return getattr(optuna.samplers, SAMPLERS[name])  # type: ignore[no-any-return]


class SamplerSpec(_Strict):
    name: Literal["tpe", "nsga2", "gp", "random", "grid"] = "tpe"
    seed: int | None = 0
    #: extra keyword arguments for the Optuna sampler (e.g. ``population_size`` for nsga2)
    options: dict[str, Any] = Field(default_factory=dict)


class Budget(_Strict):
    num_samples: int = Field(16, ge=1)
    #: trials running at once; None = as many as resources allow
    max_concurrent: int | None = Field(None, ge=1)
    time_budget_s: float | None = Field(None, gt=0)
    #: retries of a trial that raised before it is recorded as ``error``
    max_failures: int = Field(1, ge=0)
    #: seconds a trial keeps retrying (with backoff) a report its results storage refused
    #: (an S3 outage) before the report fails the trial; 0: fail at once
    storage_retry_s: float = Field(120.0, ge=0)
    #: end doomed trials before they train (``prune.screen`` of every trial; ``enabled:
    #: false`` turns it off): no input -> output path, or an effective density below
    #: ``min_density``; Optuna is told they are infeasible (``sweeps/tune/screen.py``)
    screen: ScreenConfig = Field(default_factory=ScreenConfig)
    #: sampled configs one Ray trial trains at once (``pruning_core.packing.run_pack``;
    #: docs/sweeps.md, "Packs"); 1: one config per trial; ``auto``: the engine's choice of up
    #: to ``PACK_AUTO`` members. ``num_samples`` still counts sampled configs.
    pack: Annotated[int, Field(ge=1)] | Literal["auto"] = 1

    def pack_size(self) -> int:
        """Members per Ray trial (``auto`` asks for ``PACK_AUTO``)."""
        return PACK_AUTO if self.pack == "auto" else int(self.pack)


#: the members a ``budget.pack: auto`` trial is given (the engine may run them in smaller packs)
PACK_AUTO = 8


class Resources(_Strict):
    cpu: float = Field(1.0, gt=0)
    #: fractional GPUs pack several trials on one device (e.g. 0.25 -> 4 per GPU)
    gpu: float = Field(0.0, ge=0)


class SchedulerSpec(_Strict):
    """Early stopping (docs/sweeps.md, "Early stopping").

    ``asha``: ASHA on one per-epoch ``metric``; with one objective it defaults to that
    objective, with several it must be named (it watches that metric alone).
    ``dominated``: stops a trial at a rung only when another trial at the same rung is strictly
    better on every objective (no ``metric``/``mode``: it reads the objectives).
    """

    name: Literal["asha", "dominated"] = "asha"
    metric: str | None = None
    mode: Literal["min", "max"] | None = None
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1)
    #: epochs of the fixed config's plan the scheduler considers (docs/sweeps.md); default: all
    max_t: int | None = Field(None, ge=1)

    @field_validator("metric")
    @classmethod
    def _per_epoch(cls, v: str | None) -> str | None:
        if v is not None and v not in EPOCH_METRICS:
            valid = ", ".join(sorted(EPOCH_METRICS))
            from pruning_core.suggest import with_hint

            raise ValueError(with_hint(f"ASHA acts on per-epoch metrics; got {v!r}, valid: {valid}",
                                       str(v), EPOCH_METRICS))
        return v

    def describe(self) -> str:
        """One line for the sweep's header table."""
        if self.name == "dominated":
            return "stop only trials dominated on every objective at a rung"
        return f"ASHA on {self.metric} ({self.mode})"


class StudySpec(_Strict):
    """Where the Optuna study lives (docs/sweeps.md, "The Optuna study").

    ``storage``: a journal file path (default ``<results>/study.log``; for results in object
    storage, ``results/<name>/study.log`` on the driver) or an RDB URL (``sqlite:///...``,
    ``postgresql://...``, ``mysql://...``). ``name``: the study's name (default: the sweep's).
    """

    storage: str | None = None
    name: str | None = Field(None, min_length=1)

    @field_validator("storage")
    @classmethod
    def _storage_ok(cls, v: str | None) -> str | None:
        return None if v is None else check_study_storage(v)


class WandbSpec(_Strict):
    project: str = "prunetune"
    entity: str | None = None
    #: default: the sweep name
    group: str | None = None
    mode: Literal["offline", "online", "disabled"] = "offline"


class SearchSpace(_Strict):
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
                from pruning_core.suggest import with_hint

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
                p = {**p, "when": {_canonical(k): w for k, w in p["when"].items()}}
            out[_canonical(str(key))] = p
        return out

    def problems(self) -> list[tuple[tuple[str, ...], str]]:
        """Checks across sections: (location, message) pairs; empty when the space is sound."""
        out: list[tuple[tuple[str, ...], str]] = []
        fixed_keys = _dotted_keys(self.fixed)
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
                elif _fixed_value(self.fixed, dep) is _MISSING:
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
        if self.scheduler is not None and self.budget.pack != 1:
            out.append((("budget", "pack"), f"pack: {self.budget.pack} cannot be used with "
                        f"scheduler: {self.scheduler.name} (Ray's schedulers stop whole packs, "
                        "not members); remove scheduler or set budget.pack: 1"))
        if self.budget.pack != 1 and _fixed_value(self.fixed, "metrics.keep_weights") is True:
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
        _merge(out, _expand(self.fixed))
        prune = out.setdefault("prune", {})
        if isinstance(prune, dict) and "screen" not in prune:  # fixed.prune.screen wins
            prune["screen"] = self.budget.screen.model_dump()
        return out

    @cached_property
    def layers(self) -> list[tuple[str, float]]:
        """(name, normalised depth) of the prunable layers of the fixed model."""
        if not any(isinstance(p, PerLayerParam | DepthRampParam) for p in self.params.values()):
            return []
        from pruning_core.experiment import prunable_layers

        cfg = load_trial_config(self.base_config())
        return [(info.name, float(info.depth)) for info in prunable_layers(cfg)]

    # ------------------------------------------------------------------ compile
    def define_by_run(self) -> DefineByRun:
        """The function OptunaSearch calls per trial (cheap: no compute; picklable)."""
        return DefineByRun(self)

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        s = self.sampler
        opts = dict(s.options)
        if self.budget.num_samples > LARGE_SWEEP and not s.model_fields_set & {"name", "options"}:
            log.warning("sampler: nsga2 (no sampler named and %d trials > %d: NSGA-II's cost "
                        "per trial stays flat, TPE's grows); name one to choose",
                        self.budget.num_samples, LARGE_SWEEP)
            s = s.model_copy(update={"name": "nsga2"})
        cls = sampler_class(s.name)
        # each option's type against the constructor's signature: a value Optuna only stores
        # (n_startup_trials: "ten") would otherwise fail inside the sweep
        check_options(cls, opts, where="sampler.options", owner=s.name,
                      reserved=SAMPLER_RESERVED)
        try:
            if s.name == "grid":
                return cls(self.grid(), seed=s.seed, **opts)
            return cls(seed=s.seed, **opts)
        except (TypeError, ValueError, OverflowError) as exc:
            what = "sampler.options" if opts else "sampler"
            raise ConfigError(f"{what}: {s.name} sampler refused it: {exc}".replace("\n", " ")) \
                from None

    def sample(self, n: int, seed: int = 0) -> list[dict[str, Any]]:
        """Draw ``n`` sampled configs (as Ray would pass them) without running anything.

        Random sampling, plus one enqueued draw per choice value not yet seen, so every
        ``when`` branch gets exercised, and one at each end of every int and float range (a
        bound the trial config refuses, such as ``prune.steps`` above 10,000, is found now,
        not in the trials that draw it).
        """
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        fn = self.define_by_run()
        out: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()

        def draw() -> None:
            trial = study.ask()
            extra = fn(trial) or {}
            flat = {**trial.params, **extra}
            seen.update((k, repr(v)) for k, v in flat.items())
            out.append(unflatten(flat))
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)

        for _ in range(n):
            draw()
        for key, p in self.params.items():
            if not isinstance(p, ChoiceParam):
                continue
            for v in p.values:
                if (optuna_name(key), repr(v)) not in seen:
                    study.enqueue_trial({optuna_name(key): v}, skip_if_exists=False)
                    draw()
        for key, p in self.params.items():
            if isinstance(p, IntParam):
                ends: tuple[float, ...] = (p.low, p.low + (p.high - p.low) // p.step * p.step)
            elif isinstance(p, FloatParam):
                ends = (p.low, p.high)
            else:
                continue
            for v in ends:
                study.enqueue_trial({optuna_name(key): v}, skip_if_exists=False)
                draw()
        return out

    def trial_config(self, sampled: dict[str, Any]) -> TrialConfig:
        return load_trial_config(trial_dict(self.base_config(), sampled))


class DefineByRun:
    """``trial -> constants``: suggests every active param; a plain class so Tune can pickle it
    with the searcher state."""

    def __init__(self, space: SearchSpace) -> None:
        self.order = space.param_order()
        self.params = dict(space.params)
        self.fixed = space.base_config()
        self.layers = space.layers

    def __call__(self, trial: optuna.trial.Trial) -> dict[str, Any] | None:
        drawn: dict[str, Any] = {}
        constants: dict[str, Any] = {}
        for key in self.order:
            p = self.params[key]
            if _active(p, drawn, self.fixed):
                drawn[key] = _suggest(trial, key, p, self.layers, constants)
        return constants or None


# ----------------------------------------------------------------------------- helpers
class _Missing:
    pass


_MISSING = _Missing()


def _canonical(key: str) -> str:
    """``prune.allocation`` -> ``prune.allocation.name`` (the string shorthand's field)."""
    return f"{key}.name" if key in _NAME_SHORTHAND else key


def optuna_name(key: str) -> str:
    return key.replace(".", "/")


def _dotted_keys(d: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.extend(_dotted_keys(v, key))
        elif f"{key}" in _NAME_SHORTHAND and isinstance(v, str):
            out.append(f"{key}.name")
        else:
            out.append(key)
    return out


def _fixed_value(fixed: dict[str, Any], key: str) -> Any:
    node: Any = fixed
    for part in key.split("."):
        if isinstance(node, str) and part == "name":
            return node
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _active(p: _Param, drawn: dict[str, Any], fixed: dict[str, Any]) -> bool:
    for dep, allowed in p.conditions().items():
        value = drawn[dep] if dep in drawn else _fixed_value(fixed, dep)
        if value is _MISSING or value not in allowed:
            return False
    return True


def _suggest(
    trial: optuna.trial.Trial,
    key: str,
    p: Any,
    layers: list[tuple[str, float]],
    constants: dict[str, Any],
) -> Any:
    name = optuna_name(key)
    if isinstance(p, ChoiceParam):
        return trial.suggest_categorical(name, p.values)
    if isinstance(p, FloatParam):
        return trial.suggest_float(name, p.low, p.high, log=p.log)
    if isinstance(p, IntParam):
        return trial.suggest_int(name, p.low, p.high, step=p.step, log=p.log)
    constants[optuna_name("prune.allocation.name")] = "explicit"
    if isinstance(p, PerLayerParam):
        return {
            layer: trial.suggest_float(f"{name}/{layer}", p.low, p.high, log=p.log)
            for layer, _ in layers
        }
    assert isinstance(p, DepthRampParam)
    prefix = f"{SEARCH_KEY}/layer_ramp"
    start = trial.suggest_float(f"{prefix}/start", *p.start)
    end = trial.suggest_float(f"{prefix}/end", *p.end)
    power = 1.0
    if p.curvature is not None:
        power = trial.suggest_float(f"{prefix}/curvature", *p.curvature, log=True)
    ramp = depth_ramp([d for _, d in layers], start, end, power)
    for (layer, _), s in zip(layers, ramp, strict=True):
        constants[f"{name}/{layer}"] = s
    return dict(zip([n for n, _ in layers], ramp, strict=True))


def depth_ramp(depths: list[float], start: float, end: float, power: float = 1.0) -> list[float]:
    """Sparsity per layer: ``start + (end - start) * depth ** power``, clipped to [0, 0.999]."""
    return [min(0.999, max(0.0, start + (end - start) * (d**power))) for d in depths]


def unflatten(flat: dict[str, Any], sep: str = "/") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split(sep)
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _expand(d: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys -> nested dicts: ``{"train.lr": 1}`` -> ``{"train": {"lr": 1}}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        v = _expand(v) if isinstance(v, dict) else v
        parts = str(k).split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if isinstance(node.get(parts[-1]), dict) and isinstance(v, dict):
            _merge(node[parts[-1]], v)
        else:
            node[parts[-1]] = v
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> None:
    """Deep-merge ``over`` into ``base``; a string meets a dict as ``{name: string}``."""
    for k, v in over.items():
        cur = base.get(k)
        if isinstance(v, dict):
            if isinstance(cur, str):
                cur = base[k] = {"name": cur}
            if isinstance(cur, dict):
                _merge(cur, v)
                continue
            base[k] = copy.deepcopy(v)
        elif isinstance(v, str) and isinstance(cur, dict) and k in ("allocation", "timing"):
            cur["name"] = v
        else:
            base[k] = copy.deepcopy(v)


def trial_dict(base: dict[str, Any], sampled: dict[str, Any]) -> dict[str, Any]:
    """Fixed settings + one sampled config (nested, as Ray passes it) -> TrialConfig dict."""
    out = copy.deepcopy(base)
    _merge(out, {k: v for k, v in sampled.items() if k != SEARCH_KEY})
    return out


def _format_errors(exc: ValidationError, lines: dict[Any, int]) -> str:
    parts = []
    for err in exc.errors():
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            from pruning_core.config import unknown_key

            msg = unknown_key(tuple(err["loc"]), SearchSpace)
        elif err["type"] == "union_tag_invalid":
            msg = f"type must be one of: {', '.join(sorted(_PARAM_TAGS))}"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        parts.append(f"{locate(tuple(err['loc']), lines, skip=_PARAM_TAGS)}: {msg}")
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
    base = space.base_config()
    try:
        fixed = load_trial_config(base)
    except ConfigError as exc:
        raise ConfigError(f"fixed: {exc}") from None
    if is_import_path(fixed.model.name) or is_import_path(fixed.data.name):
        # the user's factories: build the model once here (on CPU), so one that raises, returns
        # no module or has nothing to prune fails now, not in every trial
        from pruning_core.experiment import prunable_layers

        if not prunable_layers(fixed):
            raise ConfigError(f"model.name: {fixed.model.name!r} has no prunable layer matching "
                              "prune.include / prune.exclude")
    for metric in space.metrics:
        _check_metric_needs(metric, fixed, space)
    if space.scheduler is not None:
        # the ASHA-vs-plan check sweep runs as it builds the scheduler
        from sweeps.tune.plan_clock import scheduler_clock

        scheduler_clock(space.scheduler, base)
    sampler = space.make_sampler()  # its options checked against the sampler's signature
    # no storage: results/<name>, so a bad directory is the name's fault
    check_storage(space.results_dir, "storage" if space.storage else "name")
    if space.study.storage is not None and "://" in space.study.storage:
        check_study_url(space.study.storage)
    check_wandb(space.wandb)
    out = []
    for sampled in space.sample(n, seed=seed):
        try:
            cfg = load_trial_config(trial_dict(base, sampled))
        except ConfigError as exc:
            drawn = {k: v for k, v in _flat_drawn(sampled).items() if "layer_sparsity/" not in k}
            raise ConfigError(f"params: a sampled config is invalid: {exc} (drawn: {drawn})") \
                from None
        if cfg.train.device.startswith("cuda") and space.resources.gpu == 0:
            raise ConfigError(f"train.device: {cfg.train.device!r} but resources.gpu is 0, so "
                              "trials get no GPU; set resources.gpu (e.g. 1 or 0.5) or "
                              "train.device: auto")
        out.append(cfg)
    probe_sampler(space, sampler)
    return out


def check_storage(results_dir: str, option: str = "storage") -> None:
    """The results location can be written: a local directory is probed for real; for a URI
    (syntax checked by the schema) an ``endpoint_override`` must answer; credentials and
    buckets are checked by the object store when the sweep writes."""
    if "://" in results_dir and not results_dir.lower().startswith("file://"):
        _check_endpoint(results_dir)
        _probe_remote(results_dir)
        return
    from sweeps.results.outputs import check_output

    local = results_dir[len("file://"):] if "://" in results_dir else results_dir
    try:
        check_output(option, Path(local), directory=True)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace(f"{option} ", f"{option}: ", 1)) from None


def _probe_remote(uri: str) -> None:
    """Write and delete a small object under ``uri`` through pyarrow (what Ray Tune writes
    with), so a missing bucket or missing credentials fail here, before any trial, in one line."""
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        fs.create_dir(path)  # what Ray Tune does first with the storage path
        probe = f"{path.rstrip('/')}/.prunetune-write-probe"
        with fs.open_output_stream(probe) as out:
            out.write(b"ok")
        fs.delete_file(probe)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowException subclasses are among these
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        if "query parameter" in first:  # pyarrow's "Unexpected query parameter in S3 URI"
            raise ConfigError(f"storage: {first}; the query string holds pyarrow's filesystem "
                              "options only (docs/sweeps.md): remove it") from None
        raise ConfigError(f"storage: cannot write to {uri.split('?', 1)[0]} ({first}); check "
                          "that the bucket exists and the credentials may write to it") from None


def _check_endpoint(uri: str, timeout: float = 5.0) -> None:
    """An S3-compatible ``?endpoint_override=host:port`` must answer a TCP connect (an
    unreachable endpoint otherwise fails the sweep only after Ray has started)."""
    import socket
    from urllib.parse import parse_qs, urlsplit

    endpoint = (parse_qs(urlsplit(uri).query).get("endpoint_override") or [""])[0]
    if not endpoint:
        return
    scheme, sep, rest = endpoint.partition("://")
    rest = rest if sep else endpoint
    host, _, port = rest.split("/", 1)[0].rpartition(":")
    if not host or not port.isdigit():
        host, port = rest.split("/", 1)[0], "443" if scheme == "https" else "80"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        why = (exc.strerror or str(exc) or "timed out").lower()
        raise ConfigError(f"storage: endpoint_override {endpoint} does not answer ({why}); "
                          "start the object store or fix the endpoint") from None


def _flat_drawn(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}/{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flat_drawn(v, key))
        else:
            out[key.replace("/", ".")] = v
    return out
