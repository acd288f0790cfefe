"""The searched parameters of a space (``params:``): one pydantic model per ``type``.

``choice``, ``float`` and ``int`` are Optuna's distributions; ``per_layer`` and ``depth_ramp``
are the layer-wise sparsity forms (``sweeps/tune/define_by_run.py`` turns them into Optuna
parameters).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

# one strict base for every model a user writes (extra keys refused, inf / nan refused, no
# booleans as numbers); ``pruning_core.config`` defines it
from pruning_core.config import Strict

#: the ``type`` tags of a param
PARAM_TAGS = frozenset({"choice", "float", "int", "per_layer", "depth_ramp"})


class BaseParam(Strict):
    #: ``{other.key: value or [values]}``: sample this param only when all conditions hold
    when: dict[str, Any] = Field(default_factory=dict)

    def conditions(self) -> dict[str, list[Any]]:
        return {k: v if isinstance(v, list) else [v] for k, v in self.when.items()}


class ChoiceParam(BaseParam):
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


class _Range(BaseParam):
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


class DepthRampParam(BaseParam):
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

