"""What the space's helper modules read of a ``SearchSpace``, as a Protocol.

``define_by_run``, ``plan``, ``samplers`` and ``space_validate`` sit below ``space.py`` (which
re-exports them); annotating with this Protocol instead of importing ``SearchSpace`` keeps them
below it even for the type checker (issue 17: no circle, type-only imports included).
"""

from __future__ import annotations

from typing import Any, Protocol


class SpaceView(Protocol):
    params: Any
    param_order: Any
    objectives: Any
    sampler: Any
    budget: Any
    resources: Any
    scheduler: Any
    study: Any
    wandb: Any
    metrics: Any
    grid: Any
    results_dir: Any
    storage: Any

    @property
    def modes(self) -> Any: ...

    def base_config(self) -> dict[str, Any]: ...

    def define_by_run(self) -> Any: ...

    def layers(self, *args: Any, **kwargs: Any) -> Any: ...

    def sample(self, *args: Any, **kwargs: Any) -> Any: ...
