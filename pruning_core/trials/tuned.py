"""Tuned sparsity schedules: a versioned YAML that prunes the same way again.

A ``Schedule`` holds everything a trial used to prune (criterion and options, schedule, steps,
timing, allocation, target) plus the per-layer sparsities it reached, each with the layer's kind
and normalised depth, and provenance. Applied to

- **the same model** (same prunable layer names and shapes): the trial's own allocation is reused,
  so the same seed reproduces its masks exactly;
- **a related model** (ResNet-20 -> ResNet-32, VGG-11 -> VGG-16): each target layer takes the
  sparsity interpolated over normalised depth among source layers of the same kind, then all
  densities are rescaled together (water-filling, capped at dense) so the total hits the target;
  the result runs as an ``explicit`` allocation;
- **structured choices** (``prune.granularity: channel``): the criterion, schedule, timing and
  node sparsity apply to any model as they are (channel selection is one global ranking), so a
  schedule carries them unchanged; ``layers`` then records the weight sparsity reached.

Loading uses ``yaml.safe_load`` only, so parsing a schedule never executes code. A schedule is
untrusted input (see SECURITY.md): ``prunetune apply`` also refuses to read a dataset directory a
schedule names (``trial.data.root``) unless the user names the data; dataset files are read by
loaders that never unpickle arbitrary objects.

The ``prune:`` section is the one copy of how to prune: ``trial:`` holds the rest of the source
trial's config, and both :meth:`Schedule.trial_config` (the CLI) and :meth:`Schedule.apply_to`
(the Python API) prune as ``prune:`` says, so editing it takes effect everywhere. Files written
before this rule also carry ``trial.prune``; such a file is read only when both copies agree.
"""

from __future__ import annotations

import bisect
import copy
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import ConfigDict, Field, ValidationError, model_validator
from torch import nn

from ..base.errors import ConfigError
from ..config import (
    NoBoolNumbers,
    PruneConfig,
    TrialConfig,
    format_validation_error,
    read_yaml_file,
    set_dotted,
)
from ..masking.allocation import reached_sparsity, water_fill
from ..masking.engine import Pruner
from ..masking.masks import MaskSet
from ..masking.schedules import sparsity_steps
from ..masking.targets import LayerInfo, layer_infos, prunable_parameters
from .registries import load_trial_config

FORMAT = "prunetune-schedule"
VERSION = 1


class LayerEntry(NoBoolNumbers):  # a boolean is not a depth, a size or a sparsity
    """One prunable layer of the source model. ``kind``, ``numel`` and ``shape`` are all null
    in a names-only schedule: exported where the model's code was not importable, from the
    layer names and sparsities of the results row alone (see :attr:`Schedule.names_only`)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    kind: str | None
    depth: float = Field(ge=0, le=1)
    numel: int | None = Field(ge=1)
    shape: list[int] | None
    sparsity: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _geometry_all_or_none(self) -> LayerEntry:
        known = [v is not None for v in (self.kind, self.numel, self.shape)]
        if any(known) and not all(known):
            raise ValueError("kind, numel and shape are given together, or all null (a "
                             "names-only schedule); fill in all three or set all three to null")
        return self


class Provenance(NoBoolNumbers):
    model_config = ConfigDict(extra="allow")
    sweep: str | None = None
    trial_id: str | None = None
    model: str
    dataset: str
    seed: int = 0
    metrics: dict[str, Any] = Field(default_factory=dict)
    prunetune_version: str | None = None


class Schedule(NoBoolNumbers):
    model_config = ConfigDict(extra="forbid")
    format: str = FORMAT
    version: int = Field(default=VERSION, ge=1, le=VERSION, strict=True)
    prune: PruneConfig
    layers: list[LayerEntry]
    #: the source trial's config except ``prune`` (reproduction on the same model and data)
    trial: dict[str, Any]
    provenance: Provenance

    # ---- persistence -----------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> Schedule:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"schedule {path}: no such file")
        try:
            data = read_yaml_file(path, "schedule", mapping=False)[0]  # guarded reader
        except yaml.YAMLError as exc:
            raise ConfigError(f"schedule {path}: not valid YAML ({exc})".replace("\n", " ")) \
                from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: Any, where: str = "schedule") -> Schedule:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{where}: not a prunetune schedule (expected format: {FORMAT})")
        version = data.get("version")
        if type(version) is not int or version < 1:  # bool is an int subclass: refused too
            raise ConfigError(
                f"{where}: version {version!r} is not a schedule version; expected a whole "
                f"number from 1 to {VERSION} (this prunetune writes version: {VERSION})"
            )
        if version > VERSION:
            raise ConfigError(
                f"{where}: schedule version {version} is newer than this prunetune reads "
                f"(≤ {VERSION}); upgrade prunetune"
            )
        try:
            schedule = cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"{where}: {format_validation_error(exc)}") from None
        schedule._drop_trial_prune(where)
        return schedule

    def _drop_trial_prune(self, where: str) -> None:
        """Keep ``prune:`` as the only copy: a ``trial.prune`` (files from older exports) must
        say the same, then it is dropped; if the two disagree the file is refused."""
        if not isinstance(self.trial, dict) or "prune" not in self.trial:
            return
        try:
            old = PruneConfig.model_validate(self.trial["prune"]).model_dump(mode="json")
        except ValidationError as exc:
            raise ConfigError(f"{where}: trial.prune: {format_validation_error(exc)}") from None
        new = self.prune.model_dump(mode="json")
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if diff:
            raise ConfigError(
                f"{where}: prune: and trial.prune disagree on {', '.join(diff)}; prune: is the "
                "one that is applied: delete the trial.prune section (or make it equal)"
            )
        self.trial = {k: v for k, v in self.trial.items() if k != "prune"}

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def from_trial(cls, cfg: TrialConfig, layers: list[LayerInfo] | None,
                   layer_sparsity: dict[str, float], provenance: dict[str, Any]) -> Schedule:
        """``layers``: the source model's prunable layers; ``None`` where the model cannot be
        built (its code is not importable here): a names-only schedule, its layers taken from
        ``layer_sparsity`` in order (the network's order), without kinds or shapes."""
        if layers is None:
            if not layer_sparsity:
                raise ConfigError("trial has no per-layer sparsity (layer_sparsity is empty); "
                                  "export a trial that finished pruning")
            n = len(layer_sparsity)
            entries = [LayerEntry(name=name, kind=None, depth=i / (n - 1) if n > 1 else 0.0,
                                  numel=None, shape=None, sparsity=float(sp))
                       for i, (name, sp) in enumerate(layer_sparsity.items())]
            trial = {k: v for k, v in cfg.model_dump(mode="json").items() if k != "prune"}
            return cls(prune=cfg.prune, layers=entries, trial=trial,
                       provenance=Provenance(**provenance))
        missing = [info.name for info in layers if info.name not in layer_sparsity]
        if missing:
            raise ConfigError(f"trial has no per-layer sparsity for {missing}")
        entries = [LayerEntry(name=i.name, kind=i.kind, depth=i.depth, numel=i.numel,
                              shape=list(i.shape), sparsity=float(layer_sparsity[i.name]))
                   for i in layers]
        trial = {k: v for k, v in cfg.model_dump(mode="json").items() if k != "prune"}
        return cls(prune=cfg.prune, layers=entries, trial=trial,
                   provenance=Provenance(**provenance))

    # ---- application -----------------------------------------------------------------------
    @property
    def names_only(self) -> bool:
        """Exported without the model (its code was not importable): layer names and
        sparsities, no kinds or shapes. Applies to a model with the same prunable layers only."""
        return any(entry.numel is None for entry in self.layers)

    @property
    def target_sparsity(self) -> float:
        if self.names_only:  # no sizes to weigh by: the sparsity the source trial reached
            reached = self.provenance.metrics.get("sparsity")
            if isinstance(reached, int | float) and not isinstance(reached, bool) \
                    and 0 <= reached <= 1:
                return float(reached)
            return self.prune.sparsity
        sizes = [entry.numel or 0 for entry in self.layers]
        return sum(e.sparsity * n for e, n in zip(self.layers, sizes, strict=True)) / sum(sizes)

    def target_text(self) -> str:
        """The target as messages print it, naming the kind of sparsity: ``target weight
        sparsity 0.8606``; for channel pruning the target is node sparsity (cnip: weights and
        nodes together), with the weight sparsity the source trial reached."""
        if self.prune.granularity == "channel":
            kind = "weight+node" if self.prune.criterion == "cnip" else "node"
            return (f"target {kind} sparsity {self.prune.sparsity:.4f} (weight sparsity "
                    f"{self.target_sparsity:.4f} reached)")
        return f"target weight sparsity {self.target_sparsity:.4f}"

    def matches(self, layers: list[LayerInfo]) -> bool:
        """The same prunable layers: names and shapes (names only in a names-only schedule)."""
        if self.names_only:
            return [i.name for i in layers] == [e.name for e in self.layers]
        return [(i.name, list(i.shape)) for i in layers] == [(e.name, e.shape)
                                                             for e in self.layers]

    def map_to(self, layers: list[LayerInfo]) -> dict[str, float]:
        """Per-layer sparsities for another model's layers, hitting the same total sparsity."""
        if self.names_only:
            own = {e.name for e in self.layers}
            other = next((i.name for i in layers if i.name not in own), None)
            differ = (f"{other} is not one of its {len(own)} layers" if other else
                      f"{len(layers)} layers, not its {len(own)}")
            raise ConfigError(
                f"schedule: layers hold names only (exported where {self.provenance.model} "
                f"was not importable) and the target model's prunable layers differ ({differ}): "
                "apply it to the source model, or export it again where the model's code "
                "imports to map it onto another model")
        by_kind: dict[str, list[LayerEntry]] = {}
        for e in self.layers:
            by_kind.setdefault(e.kind or "other", []).append(e)
        raw: dict[str, float] = {}
        for info in layers:
            src = sorted(by_kind.get(info.kind, []), key=lambda e: e.depth)
            if not src:
                raise ConfigError(
                    f"schedule: no sensible mapping: target layer {info.name} is {info.kind!r} "
                    f"but the schedule's model ({self.provenance.model}) has only "
                    f"{sorted(by_kind)} layers; export a schedule from a model with "
                    f"{info.kind} layers"
                )
            raw[info.name] = _interpolate(src, info.depth)
        sizes = {i.name: i.numel for i in layers}
        total_keep = round((1.0 - self.target_sparsity) * sum(sizes.values()))
        # rescale all densities by one factor (capped at dense) so the total is exact
        # (floors of one weight: a mapped layer never collapses)
        keep = water_fill({n: sizes[n] * (1.0 - raw[n]) + 1e-12 for n in sizes},
                          dict.fromkeys(sizes, 1), sizes, total_keep)
        return {n: 1.0 - keep[n] / sizes[n] for n in sizes}

    def trial_config(self, layers: list[LayerInfo] | None = None,
                     overrides: dict[str, Any] | None = None) -> TrialConfig:
        """The trial config that prunes this way. ``layers``: the target model's prunable layers
        (``None`` or identical to the source: reproduce the source trial exactly)."""
        data = copy.deepcopy(self.trial)
        data["prune"] = self.prune.model_dump(mode="json")  # the one copy (see module doc)
        for key, value in (overrides or {}).items():
            set_dotted(data, key, value)
        cfg = load_trial_config(data)
        if self.prune.granularity == "channel":
            return cfg  # a global node-sparsity target: the same choices fit any model
        if layers is not None and not self.matches(layers):
            vec = self.map_to(layers)
            alloc = cfg.prune.allocation.model_copy(
                update={"name": "explicit", "layer_sparsity": vec})
            cfg = load_trial_config({**cfg.model_dump(mode="json"),
                                     "prune": {**cfg.prune.model_dump(mode="json"),
                                               "allocation": alloc.model_dump(mode="json")}})
        return cfg


    def apply_to(self, model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]],
              input_shape: tuple[int, ...], seed: int | None = None) -> MaskSet:
        """Prune ``model`` now (at its current weights) the way this schedule says; returns the
        masks (call ``masks.apply()`` after every optimiser step while training)."""
        include, exclude = self.prune.include, self.prune.exclude
        if self.prune.granularity == "channel":
            return self._apply_channels(model, batches, input_shape, seed)
        layers = layer_infos(model, include, exclude)
        alloc = self.prune.allocation
        if not self.matches(layers):
            alloc = alloc.model_copy(update={"name": "explicit",
                                             "layer_sparsity": self.map_to(layers)})
        masks = MaskSet(prunable_parameters(model, include, exclude))
        shapes = {i.name: i.shape for i in layers}
        target = reached_sparsity(alloc, shapes, self.prune.sparsity)
        pruner = Pruner(model=model, masks=masks, criterion=self.prune.criterion,
                        allocation=alloc, final_sparsity=target, batches=batches,
                        input_shape=input_shape, criterion_options=self.prune.criterion_options,
                        seed=self.provenance.seed if seed is None else seed,
                        exclude_zero_layers=not self.prune.prune_zero_layers)
        for s in sparsity_steps(self.prune.schedule, target, self.prune.steps):
            pruner.step(s)
        return masks


    def _apply_channels(self, model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]],
                        input_shape: tuple[int, ...], seed: int | None) -> MaskSet:
        """``granularity: channel``: the same criterion, schedule and node sparsity on
        ``model``'s own channel groups (no per-layer map: channel selection is global)."""
        from ..structured.pruner import ChannelPruner

        pruner = ChannelPruner.for_model(
            model, input_shape, self.prune.include, self.prune.exclude,
            criterion=self.prune.criterion, batches=batches,
            criterion_options=self.prune.criterion_options,
            seed=self.provenance.seed if seed is None else seed)
        for s in sparsity_steps(self.prune.schedule, self.prune.sparsity, self.prune.steps):
            pruner.step(s)
        return pruner.masks


def _interpolate(src: list[LayerEntry], depth: float) -> float:
    """Linear interpolation of sparsity over normalised depth (constant beyond the ends)."""
    depths = [e.depth for e in src]
    i = bisect.bisect_left(depths, depth)
    if i == 0:
        return src[0].sparsity
    if i == len(src):
        return src[-1].sparsity
    lo, hi = src[i - 1], src[i]
    if hi.depth == lo.depth:
        return hi.sparsity
    t = (depth - lo.depth) / (hi.depth - lo.depth)
    return lo.sparsity + t * (hi.sparsity - lo.sparsity)

