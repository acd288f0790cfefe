"""Typed trial configuration: the one place a dict becomes types.

``TrialConfig.model_validate(d)`` validates eagerly; every error names the dotted field.
Names (criterion, schedule, model, ...) are checked against their registries, so a typo in a
sweep space is caught on the laptop, not on the cluster.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Strict):
    name: str = "cnn1d"
    #: extra keyword arguments for the model builder (``hidden`` for mlp, ``width`` for vgg/resnet)
    options: dict[str, Any] = Field(default_factory=dict)


class DataConfig(_Strict):
    name: str = "mnist1d"
    #: directory holding a user-supplied dataset (cifar10, cifar100, mnist, fashion_mnist)
    root: str | None = None
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(1000, ge=1)
    #: keep only the first N training examples (quick runs); None = all
    train_limit: int | None = Field(None, ge=1)
    test_limit: int | None = Field(None, ge=1)
    #: dataset-specific keyword arguments (e.g. ``num_train`` for synthetic)
    options: dict[str, Any] = Field(default_factory=dict)


class TrainConfig(_Strict):
    epochs: int = Field(10, ge=0)
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = Field(1e-2, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    lr_schedule: Literal["constant", "cosine", "step"] = "constant"
    #: ``cuda``, ``cpu`` or ``auto`` (cuda when available)
    device: str = "auto"
    #: CPU threads for torch; None leaves torch's default
    threads: int | None = Field(None, ge=1)


class AllocationConfig(_Strict):
    """How a total sparsity is split over the prunable layers."""

    name: str = "global"
    #: explicit per-layer sparsities: {layer name: s} or [s per prunable layer, in model order]
    layer_sparsity: dict[str, float] | list[float] | None = None
    keep_first_dense: bool = False
    keep_last_dense: bool = False
    #: every prunable layer keeps at least this fraction of its weights
    min_density: float = Field(0.0, ge=0, le=1)
    #: ERK exponent (RigL's power_scale)
    erk_power: float = Field(1.0, ge=0)

    @field_validator("layer_sparsity")
    @classmethod
    def _in_range(cls, v: dict[str, float] | list[float] | None) -> Any:
        vals = v.values() if isinstance(v, dict) else (v or [])
        for s in vals:
            if not 0.0 <= s < 1.0:
                raise ValueError(f"layer sparsity {s} outside [0, 1); use a value like 0.9")
        return v


class TimingConfig(_Strict):
    """When pruning happens relative to training."""

    name: str = "before"
    #: ``during``: epochs at which prune events fire (each advances one schedule step);
    #: default: spread evenly over the first half of training
    prune_epochs: list[int] | None = None
    #: ``after``: epochs of dense training before pruning (fine-tuning then runs train.epochs)
    pretrain_epochs: int = Field(5, ge=0)
    #: ``imp``: epoch whose weights the kept weights rewind to (0 = original lottery ticket)
    rewind_epoch: int = Field(0, ge=0)


class PruneConfig(_Strict):
    criterion: str = "snip"
    #: criterion-specific options, validated by the criterion's own options model
    criterion_options: dict[str, Any] = Field(default_factory=dict)
    sparsity: float = Field(0.9, ge=0.0, lt=1.0)
    schedule: str = "one_shot"
    steps: int = Field(1, ge=1)
    allocation: AllocationConfig = Field(default_factory=AllocationConfig)
    timing: TimingConfig = Field(default_factory=TimingConfig)
    #: WACV 2020 variants: ``none``, ``reinit`` (keep mask, re-draw weights),
    #: ``random_sparse`` (random mask with the same per-layer sparsities)
    variant: str = "none"
    #: glob patterns on parameter names; default: weights of Conv/Linear layers
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)
    #: batches of training data used by data-driven criteria
    score_batches: int = Field(1, ge=1)

    @field_validator("allocation", mode="before")
    @classmethod
    def _allocation_shorthand(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @field_validator("timing", mode="before")
    @classmethod
    def _timing_shorthand(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v


class TrialConfig(_Strict):
    seed: int = 0
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    prune: PruneConfig = Field(default_factory=PruneConfig)
    #: free-form tags carried into results (sweep name, trial id, ...)
    tags: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names_exist(self) -> TrialConfig:
        # Imported here: the registries import torch-heavy modules.
        from . import registries

        registries.check_names(self)
        return self


def _loc(err: dict[str, Any]) -> str:
    return ".".join(str(p) for p in err["loc"]) or "<root>"


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``field.path: message``."""
    parts = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling)"
        parts.append(f"{_loc(err)}: {msg}" if err["loc"] else msg)
    return "; ".join(parts)


def load_trial_config(data: dict[str, Any]) -> TrialConfig:
    """Validate a dict; raise ``ConfigError`` with a one-line message naming the field(s)."""
    try:
        return TrialConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(d, "prune.sparsity", 0.9)`` creating nested dicts as needed."""
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            nxt = {"name": nxt}  # "allocation: erk" then "allocation.erk_power"
            node[p] = nxt
        node = nxt
    node[parts[-1]] = value


def flatten(d: dict[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Nested dict -> ``{"a.b": v}``; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key, sep))
        else:
            out[key] = v
    return out
