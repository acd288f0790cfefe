"""The sections of a search space besides ``params``: objectives, sampler, budget, resources,
scheduler, study and W&B (``SearchSpace`` in ``sweeps/tune/space.py`` holds them)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from pruning_core.base.record import EPOCH_METRICS
from pruning_core.config import ScreenConfig
from sweeps.tune.space_params import Strict
from sweeps.tune.storage_checks import check_study_storage


class SamplerSpec(Strict):
    name: Literal["tpe", "nsga2", "gp", "random", "grid"] = "tpe"
    seed: int | None = 0
    #: extra keyword arguments for the Optuna sampler (e.g. ``population_size`` for nsga2)
    options: dict[str, Any] = Field(default_factory=dict)


class Budget(Strict):
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
    #: checkpoints Ray keeps per trial (2, as before); null keeps every one. Ray deletes a
    #: trial's old checkpoints before its experiment snapshot reaches the results storage, so
    #: with a bound a driver killed in that window resumes a trial whose checkpoint is gone
    #: (it ends ``error``: "Could not recover from checkpoint"); null trades disk (epochs x the
    #: trial's state) for a resume that always finds its checkpoint
    keep_checkpoints: int | None = Field(2, ge=1)

    def pack_size(self) -> int:
        """Members per Ray trial (``auto`` asks for ``PACK_AUTO``)."""
        return PACK_AUTO if self.pack == "auto" else int(self.pack)


#: the members a ``budget.pack: auto`` trial is given (the engine may run them in smaller packs)
PACK_AUTO = 8


class Resources(Strict):
    cpu: float = Field(1.0, gt=0)
    #: fractional GPUs pack several trials on one device (e.g. 0.25 -> 4 per GPU)
    gpu: float = Field(0.0, ge=0)


class SchedulerSpec(Strict):
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
            from pruning_core.base.suggest import with_hint

            raise ValueError(with_hint(f"ASHA acts on per-epoch metrics; got {v!r}, valid: {valid}",
                                       str(v), EPOCH_METRICS))
        return v

    def describe(self) -> str:
        """One line for the sweep's header table."""
        if self.name == "dominated":
            return "stop only trials dominated on every objective at a rung"
        return f"ASHA on {self.metric} ({self.mode})"


class StudySpec(Strict):
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


class WandbSpec(Strict):
    project: str = "prunetune"
    entity: str | None = None
    #: default: the sweep name
    group: str | None = None
    mode: Literal["offline", "online", "disabled"] = "offline"

