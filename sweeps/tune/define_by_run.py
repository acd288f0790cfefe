"""A search space compiled to what Optuna runs: the define-by-run function OptunaSearch calls per
trial (``DefineByRun``), and draws of sampled configs without running anything
(``sample_configs``, what validation and the config-column types use).

Layer-wise sparsity is searched in two forms, both written to
``prune.allocation = {name: explicit, layer_sparsity: {layer: s}}``:

- ``per_layer``: one Optuna parameter per prunable layer (expanded from the model);
- ``depth_ramp``: 2-3 parameters (start, end, optional curvature); layer ``i`` at normalised
  depth ``d`` gets ``start + (end - start) * d ** curvature``. Its parameters live under the
  ``search`` key of the trial config, which is recorded with the results and stripped before the
  dict becomes a ``TrialConfig``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sweeps.tune.space_keys import MISSING, SEARCH_KEY, fixed_value, optuna_name, unflatten
from sweeps.tune.space_params import (
    BaseParam,
    ChoiceParam,
    DepthRampParam,
    FloatParam,
    IntParam,
    PerLayerParam,
)

if TYPE_CHECKING:
    import optuna

    from sweeps.tune.space_protocol import SpaceView as SearchSpace


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



def _active(p: BaseParam, drawn: dict[str, Any], fixed: dict[str, Any]) -> bool:
    for dep, allowed in p.conditions().items():
        value = drawn[dep] if dep in drawn else fixed_value(fixed, dep)
        if value is MISSING or value not in allowed:
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



def sample_configs(space: SearchSpace, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Draw ``n`` sampled configs (as Ray would pass them) without running anything.

    Random sampling, plus one enqueued draw per choice value not yet seen, so every
    ``when`` branch gets exercised, and one at each end of every int and float range (a
    bound the trial config refuses, such as ``prune.steps`` above 10,000, is found now,
    not in the trials that draw it).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    fn = space.define_by_run()
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()

    def draw(enqueue: dict[str, Any] | None = None) -> None:
        if enqueue is not None:
            study.enqueue_trial(enqueue, skip_if_exists=False)
        trial = study.ask()
        extra = fn(trial) or {}
        flat = {**trial.params, **extra}
        seen.update((k, repr(v)) for k, v in flat.items())
        out.append(unflatten(flat))
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)

    for _ in range(n):
        draw()
    for key, p in space.params.items():
        if not isinstance(p, ChoiceParam):
            continue
        for v in p.values:
            if (optuna_name(key), repr(v)) not in seen:
                draw({optuna_name(key): v})
    for key, p in space.params.items():
        for v in _range_ends(p):
            draw({optuna_name(key): v})
    return out


def _range_ends(p: Any) -> tuple[float, ...]:
    """Both ends an int or float param can draw (an int's top on its step); none for others."""
    if isinstance(p, IntParam):
        return (p.low, p.low + (p.high - p.low) // p.step * p.step)
    if isinstance(p, FloatParam):
        return (p.low, p.high)
    return ()
