"""The Optuna sampler of a sweep: ``sampler.name`` -> a registered factory -> the sampler, its
``sampler.options`` checked against the sampler's signature and probed on a first suggestion.

``SAMPLERS`` is a registry like every other axis (``pruning_core/registry.py``): a new sampler is
one ``SAMPLERS.add`` (and its name in ``SamplerSpec.name``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pruning_core.base.errors import ConfigError
from pruning_core.base.registry import Registry
from sweeps.tune.option_types import check_options

if TYPE_CHECKING:
    import optuna

    from sweeps.tune.space_protocol import SpaceView as SearchSpace

# the name the sampler note has always been logged under (users filter on it)
log = logging.getLogger("sweeps.tune.space")

#: a sweep with more trials than this and no sampler named gets NSGA-II, whose cost per trial
#: stays flat (multi-objective TPE's grows with the trials: 12-20 ms each at 1,000)
LARGE_SWEEP = 1000
#: sampler constructor arguments set elsewhere in the space -> where
SAMPLER_RESERVED = {"seed": "sampler.seed", "search_space": "params (the grid sampler's grid)"}


def _no_args(space: SearchSpace) -> tuple[Any, ...]:
    return ()


def _grid_args(space: SearchSpace) -> tuple[Any, ...]:
    return (space.grid(),)


@dataclass(frozen=True)
class SamplerFactory:
    """One sampler: its ``optuna.samplers`` class, and the positional arguments the space gives
    it before ``seed`` and the user's options (the grid sampler's grid)."""

    class_name: str
    args: Callable[[SearchSpace], tuple[Any, ...]] = _no_args

    def cls(self) -> type[optuna.samplers.BaseSampler]:
        import optuna

        return getattr(optuna.samplers, self.class_name)  # type: ignore[no-any-return]

    def build(self, space: SearchSpace, seed: int | None,
              options: dict[str, Any]) -> optuna.samplers.BaseSampler:
        return self.cls()(*self.args(space), seed=seed, **options)


#: ``sampler.name`` -> its factory
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")
SAMPLERS.add("tpe", SamplerFactory("TPESampler"))
SAMPLERS.add("nsga2", SamplerFactory("NSGAIISampler"))
SAMPLERS.add("gp", SamplerFactory("GPSampler"))
SAMPLERS.add("random", SamplerFactory("RandomSampler"))
SAMPLERS.add("grid", SamplerFactory("GridSampler", _grid_args))


def sampler_class(name: str) -> type[optuna.samplers.BaseSampler]:
    """The Optuna sampler class ``sampler.name`` stands for."""
    return SAMPLERS.get(name).cls()


def make_sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    """The space's sampler (NSGA-II for a large sweep that names none), options checked."""
    s = space.sampler
    opts = dict(s.options)
    if space.budget.num_samples > LARGE_SWEEP and not s.model_fields_set & {"name", "options"}:
        log.warning("sampler: nsga2 (no sampler named and %d trials > %d: NSGA-II's cost "
                    "per trial stays flat, TPE's grows); name one to choose",
                    space.budget.num_samples, LARGE_SWEEP)
        s = s.model_copy(update={"name": "nsga2"})
    factory = SAMPLERS.get(s.name)
    # each option's type against the constructor's signature: a value Optuna only stores
    # (n_startup_trials: "ten") would otherwise fail inside the sweep
    check_options(factory.cls(), opts, where="sampler.options", owner=s.name,
                  reserved=SAMPLER_RESERVED)
    try:
        return factory.build(space, s.seed, opts)
    except (TypeError, ValueError, OverflowError) as exc:
        what = "sampler.options" if opts else "sampler"
        raise ConfigError(f"{what}: {s.name} sampler refused it: {exc}".replace("\n", " ")) \
            from None


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
