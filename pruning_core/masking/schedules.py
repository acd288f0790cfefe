"""Sparsity schedules: the sparsity reached after each pruning step.

Each schedule is a pure function ``(target, steps) -> list[float]``: increasing, ending at the
target, so masks nest (every step removes weights only from those still kept).
"""

from __future__ import annotations

from collections.abc import Callable

from ..base.registry import Registry

Schedule = Callable[[float, int], list[float]]
SCHEDULES: Registry[Schedule] = Registry("schedule")


@SCHEDULES.register("one_shot")
def one_shot(target: float, steps: int) -> list[float]:
    """All at once; ``steps`` is ignored."""
    return [target]


@SCHEDULES.register("linear")
def linear(target: float, steps: int) -> list[float]:
    """s * k / N for k = 1..N."""
    return [target * k / steps for k in range(1, steps + 1)]


@SCHEDULES.register("exponential")
def exponential(target: float, steps: int) -> list[float]:
    """SynFlow's: density_k = d^(k/N), d = 1 - s (equal *fractions* of what is left per step)."""
    density = 1.0 - target
    return [1.0 - density ** (k / steps) for k in range(1, steps + 1)]


@SCHEDULES.register("snip_it")
def snip_it(target: float, steps: int) -> list[float]:
    """SNIP-it: start at 50%, halve the remaining gap each step (S = steps), then the target.

    s_i = s - (s - 0.5) * 0.5^i for i = 0..S, then s. A target at or below 50% is one shot.
    """
    if target <= 0.5:
        return [target]
    out = [target - (target - 0.5) * 0.5**i for i in range(steps + 1)]
    return [*out, target]


@SCHEDULES.register("cubic")
def cubic(target: float, steps: int) -> list[float]:
    """Zhu & Gupta's gradual magnitude pruning: s_k = s (1 - (1 - k/N)^3), k = 1..N."""
    return [target * (1.0 - (1.0 - k / steps) ** 3) for k in range(1, steps + 1)]


def sparsity_steps(name: str, target: float, steps: int) -> list[float]:
    """The schedule's sparsities, with repeats removed (a repeated level would prune nothing)."""
    out: list[float] = []
    for s in SCHEDULES.get(name)(target, steps):
        if not out or s > out[-1] + 1e-12:
            out.append(s)
    return out
