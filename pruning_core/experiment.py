"""``run(TrialConfig) -> TrialResult``: the one entry point sweeps call.

Builds data, model, masks and a plan (see ``timing.py``), executes the plan action by action,
reports after every training epoch, and can resume from the state after any epoch.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from . import rng
from .allocation import ALLOCATIONS
from .augment import CropFlip
from .checkpoints import load_weights
from .config import TrialConfig
from .data import DataBundle, black_pixel, dataset_spec, load_dataset, with_label_noise
from .dense_cache import DenseCache, cache_key, dense_prefix
from .effective import Connectivity, connectivity, effective_record
from .engine import Pruner
from .errors import ConfigError
from .loader import DeviceLoader, on_device
from .masks import MaskSet
from .metrics import flops, param_counts
from .models import create_model
from .reference import similarity_to_dense
from .schedules import sparsity_steps
from .structured.pruner import ChannelPruner
from .targets import LayerInfo, layer_infos, prunable_parameters
from .timing import (
    TIMINGS,
    ApplyVariant,
    Compact,
    NewOptimizer,
    Prune,
    Rewind,
    Snapshot,
    Train,
    with_compaction,
)
from .training import Diverged, EpochStats, evaluate, lr_at, make_optimizer, train_epoch
from .variants import VARIANTS

log = logging.getLogger(__name__)


@dataclass
class TrialResult:
    status: str  # "ok" | "diverged"
    test_accuracy: float
    test_loss: float
    train_accuracy: float
    train_loss: float
    sparsity: float
    target_sparsity: float
    layer_sparsity: dict[str, float]
    collapsed_layers: list[str]
    params: int
    params_kept: int
    flops_dense: int
    flops: int
    prune_time_s: float
    train_time_s: float
    epochs: int
    diverged_epoch: int | None = None
    error: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    #: metrics.similarity: {layer: similarity to the dense reference}, and their finite mean
    similarity: dict[str, float] = field(default_factory=dict)
    similarity_mean: float | None = None
    #: prune.granularity channel: the fraction of channels removed (``sparsity`` is weights)
    node_sparsity: float | None = None
    #: cumulative training FLOPs over the run (3 x forward per example seen; masked layers
    #: count their density, a compact model its real size)
    train_flops: int = 0
    #: metrics.speed: measured on the trial's device, final network and dense network
    latency_ms: float | None = None  # inference, one training-size batch
    latency_ms_batch1: float | None = None
    train_step_ms: float | None = None
    latency_ms_dense: float | None = None
    latency_ms_batch1_dense: float | None = None
    train_step_ms_dense: float | None = None
    #: median over alternating (dense, final) pairs of dense / final time (training step)
    speedup: float | None = None
    inference_speedup: float | None = None  # the same for inference (training-size batch)
    #: generalisation gap at the end: train - test accuracy, test - train loss
    gap_accuracy: float | None = None
    gap_loss: float | None = None
    #: pruning_core/effective.py: kept weights on some input -> output path, and the rest
    effective_sparsity: float | None = None
    disconnected_weights: int | None = None
    dead_units: int | None = None
    effective_params: int | None = None
    effective_flops: int | None = None
    layer_effective_sparsity: dict[str, float] = field(default_factory=dict)
    #: metrics.adversarial: accuracy under attack on the seeded test subset, and its settings
    adv_accuracy: float | None = None
    adversarial: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def metrics(self) -> dict[str, float | int | str]:
        """Scalar metrics only (what a sweep reports and optimises)."""
        return {k: v for k, v in self.to_dict().items()
                if isinstance(v, int | float | str) and not isinstance(v, bool)}


@dataclass
class EpochReport:
    epoch: int  # 1-based, counted over all training phases
    total_epochs: int  # training epochs in the whole plan (the last report has epoch == this)
    metrics: dict[str, float]
    _state: Callable[[], dict[str, Any]]
    #: the network's size as it trains now (``_Trial.size_metrics``): what a trial stopped
    #: before its end keeps (FLOPs, parameters, target sparsity); not part of ``history``
    sizes: dict[str, float] = field(default_factory=dict)

    def checkpoint(self) -> dict[str, Any]:
        """State to pass back as ``run(cfg, resume=...)``; ``torch.save``-able, weights_only."""
        return self._state()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def prunable_layers(cfg: TrialConfig) -> list[LayerInfo]:
    """The prunable layers ``cfg`` would prune (builds the model on CPU; reads no data)."""
    input_shape, num_classes = dataset_spec(cfg.data.name, root=cfg.data.root, seed=cfg.seed,
                                            **cfg.data.options)
    model = create_model(cfg.model.name, input_shape, num_classes, **cfg.model.options)
    return layer_infos(model, cfg.prune.include, cfg.prune.exclude)


def _bundle(cfg: TrialConfig) -> DataBundle:
    d = cfg.data
    bundle = load_dataset(d.name, root=d.root, seed=cfg.seed, train_limit=d.train_limit,
                          test_limit=d.test_limit, **d.options)
    if d.label_noise:
        bundle = with_label_noise(bundle, d.label_noise, cfg.seed)
    return bundle


def _loaders(cfg: TrialConfig, data: DataBundle, device: torch.device,
             gen: torch.Generator) -> tuple[Any, Any]:
    """Device-resident loaders for tensor datasets (every built-in one), DataLoaders for the
    user's other datasets; ``data.augment`` on the training split."""
    augment = None
    if cfg.data.augment == "crop_flip":
        if len(data.input_shape) != 3:
            raise ConfigError(f"data.augment: crop_flip needs image inputs (C, H, W); "
                              f"{cfg.data.name} gives {data.input_shape}")
        augment = CropFlip(padding=4, fill=black_pixel(cfg.data.name, **cfg.data.options))
    if on_device(data.train) and on_device(data.test):
        return (DeviceLoader(data.train, cfg.data.batch_size, device, gen, shuffle=True,
                             augment=augment),
                DeviceLoader(data.test, cfg.data.eval_batch_size, device))
    if augment is not None:
        raise ConfigError("data.augment: crop_flip needs a tensor dataset (every built-in one; "
                          "return TensorDatasets from your data factory)")
    return (DataLoader(data.train, batch_size=cfg.data.batch_size, shuffle=True, generator=gen),
            DataLoader(data.test, batch_size=cfg.data.eval_batch_size))


class _Trial:
    """The mutable state of one run; ``run`` below and the packed engine
    (``packing/engine.py``) drive it."""

    def __init__(self, cfg: TrialConfig) -> None:
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.device = resolve_device(cfg.train.device)
        self.data = _bundle(cfg)
        self.model: nn.Module = create_model(cfg.model.name, self.data.input_shape,
                                             self.data.num_classes, **cfg.model.options)
        if cfg.model.weights is not None:
            load_weights(self.model, cfg.model.weights, cfg.model.weights_strict)
        self.model.to(self.device)
        if cfg.train.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.loader_gen = torch.Generator().manual_seed(cfg.seed)
        self.train_loader, self.test_loader = _loaders(cfg, self.data, self.device,
                                                       self.loader_gen)
        self.pruner, self.masks, self.target = self._make_pruner()
        steps = sparsity_steps(cfg.prune.schedule, self.target, cfg.prune.steps) \
            if self.target > 0 else []
        self.plan = TIMINGS.get(cfg.prune.timing.name)(cfg, steps)
        if isinstance(self.pruner, ChannelPruner) and cfg.prune.compact:
            self.plan = with_compaction(self.plan)
        self.total_epochs = sum(isinstance(a, Train) for a in self.plan)
        #: after a Compact: the smaller model trains without masks; ``masks`` stays the record
        #: of what was removed (full-size shapes), and the dense model's size is kept here
        self.compacted = False
        self.compact_masks = _NO_MASKS
        self.dense_size: tuple[int, int] | None = None  # (parameters, FLOPs per example)
        self.train_flops = 0  # cumulative training FLOPs (3 x forward, per example seen)
        self._flops_now: int | None = None
        self._flops_dense = 0  # dense forward FLOPs per example (uncompacted model)
        self.optimizer = make_optimizer(self.model, cfg.train)
        # the training forward pass; compiled, it shares the (masked) parameters of self.model
        self.forward_model: nn.Module = torch.compile(self.model) if cfg.train.compile \
            else self.model
        self.snapshot: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, float]] = []
        self.done = 0  # actions completed
        self.train_time = 0.0
        self.last_train: EpochStats | None = None
        self.last_test: EpochStats | None = None

    def _make_pruner(self) -> tuple[Pruner | ChannelPruner, MaskSet, float]:
        """The prune step of ``prune.granularity``, its masks, and the final target sparsity
        (weights: what the allocation reaches; channels: node sparsity)."""
        cfg = self.cfg
        if cfg.prune.granularity == "channel":
            pruner = ChannelPruner.for_model(
                self.model, self.data.input_shape, cfg.prune.include, cfg.prune.exclude,
                criterion=cfg.prune.criterion, batches=self._score_batches(),
                criterion_options=cfg.prune.criterion_options, seed=cfg.seed)
            return pruner, pruner.masks, cfg.prune.sparsity
        params = prunable_parameters(self.model, cfg.prune.include, cfg.prune.exclude)
        masks = MaskSet(params)
        shapes = {n: tuple(p.shape) for n, p in params.items()}
        alloc = ALLOCATIONS.get(cfg.prune.allocation.name)()
        target = alloc.target_sparsity(shapes, cfg.prune.allocation, cfg.prune.sparsity)
        return Pruner(
            model=self.model, masks=masks, criterion=cfg.prune.criterion,
            allocation=cfg.prune.allocation, final_sparsity=target,
            batches=self._score_batches(), input_shape=self.data.input_shape,
            criterion_options=cfg.prune.criterion_options, seed=cfg.seed,
        ), masks, target

    def _score_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The data-driven criteria's batches: ``score_batches`` shuffled training batches,
        or (``score_samples_per_class``) a class-balanced set split into that many batches."""
        gen = torch.Generator().manual_seed(self.cfg.seed + 1)
        loader = DataLoader(self.data.train, batch_size=self.cfg.data.batch_size, shuffle=True,
                            generator=gen)
        per_class = self.cfg.prune.score_samples_per_class
        if per_class:
            x, y = balanced_set(loader, self.data.num_classes, per_class)
            return [(xb.to(self.device), yb.to(self.device)) for xb, yb in
                    zip(x.chunk(self.cfg.prune.score_batches),
                        y.chunk(self.cfg.prune.score_batches), strict=True)]
        out = []
        for x, y in loader:
            out.append((x.to(self.device), y.to(self.device)))
            if len(out) == self.cfg.prune.score_batches:
                break
        return out

    # ---- checkpoint ------------------------------------------------------------------------
    def state(self, done: int) -> dict[str, Any]:
        return {
            "done": done,
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "masks": {n: m.cpu().clone() for n, m in self.masks.masks.items()},
            "snapshot": self.snapshot,
            "history": list(self.history),
            "loader_rng": self.loader_gen.get_state(),
            "pruner_rng": self.pruner.generator.get_state(),
            "rng": rng.capture(),
            "prune_time_s": self.pruner.elapsed_s,
            "train_time_s": self.train_time,
            "train_flops": self.train_flops,
            **self._structure_state(),
        }

    def _structure_state(self) -> dict[str, Any]:
        if not isinstance(self.pruner, ChannelPruner):
            return {}
        return {"keep": {str(g): k.clone() for g, k in self.pruner.keep.items()},
                "compacted": self.compacted,
                "dense_size": list(self.dense_size) if self.dense_size else None}

    def restore(self, state: dict[str, Any]) -> None:
        if isinstance(self.pruner, ChannelPruner) and "keep" in state:
            self.pruner.set_keep({int(g): k for g, k in state["keep"].items()})
            self.masks.replace(state["masks"])  # CNIP: weights pruned inside kept channels
            if state["compacted"]:  # rebuild the smaller model first: the weights are its own
                self._compact(carry_optimizer=False)
                self.dense_size = tuple(state["dense_size"])  # type: ignore[assignment]
                self.optimizer = make_optimizer(self.model, self.cfg.train)
        else:
            self.masks.replace(state["masks"])
        self.model.load_state_dict(state["model"])
        self.active_masks().apply()
        self.optimizer.load_state_dict(state["optimizer"])
        self.train_flops = state.get("train_flops", 0)
        self.snapshot = state["snapshot"]
        self.history = list(state["history"])
        self.loader_gen.set_state(state["loader_rng"])
        if "pruner_rng" in state:  # checkpoints written before 0.2 lack the random states
            self.pruner.generator.set_state(state["pruner_rng"])
            rng.restore(state["rng"])
        self.pruner.elapsed_s = state["prune_time_s"]
        self.train_time = state["train_time_s"]
        self.done = state["done"]

    # ---- actions ---------------------------------------------------------------------------
    def execute(self, action: Any, on_epoch: Callable[[EpochReport], None] | None) -> None:
        if isinstance(action, Prune):
            self.pruner.step(action.sparsity)
            self._flops_now = None
            self._after_prune()
        elif isinstance(action, Compact):
            self._compact(carry_optimizer=True)
        elif isinstance(action, NewOptimizer):
            self.optimizer = make_optimizer(self.model, self.cfg.train)
        elif isinstance(action, Snapshot):
            self.snapshot = {k: v.detach().cpu().clone()
                             for k, v in self.model.state_dict().items()}
        elif isinstance(action, Rewind):
            self.model.load_state_dict(self.snapshot)
            self.masks.apply()
        elif isinstance(action, ApplyVariant):
            VARIANTS.get(self.cfg.prune.variant)(self.model, self.masks, self.cfg.seed)
        elif isinstance(action, Train):
            self._train(action, on_epoch)

    def _after_prune(self) -> None:
        """``prune.remove_disconnected`` and the doomed-trial screen, on the masks just made."""
        screen, remove = self.cfg.prune.screen, self.cfg.prune.remove_disconnected
        if not (screen.enabled or remove) or self.compacted:
            return
        conn = connectivity(self.model, self.masks, self.data.input_shape)
        if remove and conn.disconnected:
            log.info("removing %d disconnected weights", conn.disconnected)
            self.masks.update(conn.masks)
            self.masks.apply()
        if screen.enabled:
            reason = doomed_reason(conn, self.masks, screen.min_density)
            if reason is not None:
                raise _Doomed(reason)

    # ---- structure ---------------------------------------------------------------------------
    def active_masks(self) -> MaskSet:
        """The masks training keeps zero; once the model is compact, only weights pruned
        inside kept channels (CNIP), sliced to the compact shapes."""
        return self.compact_masks if self.compacted else self.masks

    def _count_flops(self) -> int:
        """Effective forward FLOPs per example of the network as it trains now (counted once
        per change of masks or model; the dense count too while the model is uncompacted)."""
        if self._flops_now is None:
            dense, self._flops_now = flops(self.model, self.data.input_shape,
                                           self.active_masks())
            if not self.compacted:
                self._flops_dense = dense
        return self._flops_now

    def _compact(self, carry_optimizer: bool) -> None:
        """Replace the model by its compact form (the kept channels only); ``masks`` stays the
        full-size record. The optimiser's state is sliced to the kept channels."""
        from .structured import compact_optimizer_state, keep_indices, rebuild, slice_plan

        assert isinstance(self.pruner, ChannelPruner)
        dense = self.model
        self.dense_size = (sum(p.numel() for p in dense.parameters()),
                           flops(dense, self.data.input_shape, _NO_MASKS)[0])
        indices = keep_indices(dense, self.pruner.groups, self.pruner.keep)
        small = rebuild(dense, indices)
        plan = slice_plan(dense, indices)
        sliced = {}
        for name, mask in self.masks.masks.items():
            for dim, idx in plan.get(name, []):
                mask = mask.index_select(dim, idx.to(mask.device))
            if not bool(mask.all()):
                sliced[name] = mask
        self.compact_masks = MaskSet({n: small.get_parameter(n) for n in sliced}, sliced) \
            if sliced else _NO_MASKS
        if self.cfg.train.channels_last:
            small.to(memory_format=torch.channels_last)
        if carry_optimizer:
            self.optimizer = compact_optimizer_state(self.optimizer, dense, small, indices)
        self.model, self.compacted, self._flops_now = small, True, None
        self.forward_model = torch.compile(small) if self.cfg.train.compile else small
        self.compact_indices = indices
        log.info("compacted: %d -> %d parameters", self.dense_size[0],
                 sum(p.numel() for p in small.parameters()))

    def _train(self, action: Train, on_epoch: Callable[[EpochReport], None] | None) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.cfg.train, action.epoch, action.epochs)
        start = time.perf_counter()
        epoch = len(self.history) + 1
        flops_now = self._count_flops()
        try:
            self.last_train = train_epoch(self.forward_model, self.train_loader, self.optimizer,
                                          self.active_masks(), self.device,
                                          amp=self.cfg.train.amp,
                                          channels_last=self.cfg.train.channels_last)
        except Diverged as exc:
            raise _DivergedAt(epoch, str(exc)) from None
        self.finish_epoch(time.perf_counter() - start, flops_now, on_epoch)

    def finish_epoch(self, seconds: float, flops_now: int,
                     on_epoch: Callable[[EpochReport], None] | None) -> None:
        """After a training epoch (``last_train`` set): count it, evaluate, record, report.
        Also the packed engine's (``pruning_core/packing``), which trains the epoch itself."""
        epoch = len(self.history) + 1
        self.train_time += seconds
        self.train_flops += 3 * flops_now * len(self.data.train)  # forward + 2x backward
        self.last_test = evaluate(self.model, self.test_loader, self.device)
        metrics = {
            "epoch": epoch,
            "train_loss": self.last_train.loss, "train_accuracy": self.last_train.accuracy,
            "test_loss": self.last_test.loss, "test_accuracy": self.last_test.accuracy,
            "sparsity": self.masks.sparsity(),
            "gap_accuracy": self.last_train.accuracy - self.last_test.accuracy,
            "gap_loss": self.last_test.loss - self.last_train.loss,
        }
        self.history.append(metrics)
        if on_epoch is not None:  # the state a report carries is *after* this action
            on_epoch(EpochReport(epoch, self.total_epochs, dict(metrics),
                                 lambda: self.state(self.done + 1), self.size_metrics()))

    def size_metrics(self) -> dict[str, float]:
        """The network as it trains now: parameters, forward FLOPs per example, training
        FLOPs so far, collapsed layers, the target (and node sparsity for channel runs), under
        the names of ``TrialResult``. Counted as ``_result`` counts them at the end."""
        effective = self._count_flops()
        if self.compacted and self.dense_size is not None:
            params, dense_flops = self.dense_size
            cm = self.compact_masks
            kept = sum(p.numel() for p in self.model.parameters()) - (cm.numel() - cm.kept())
        else:
            (params, kept), dense_flops = param_counts(self.model, self.masks), self._flops_dense
        out: dict[str, float] = {
            "target_sparsity": self.target, "params": params, "params_kept": kept,
            "flops_dense": dense_flops, "flops": effective,
            "train_flops": self.train_flops, "n_collapsed": len(self.masks.collapsed())}
        if isinstance(self.pruner, ChannelPruner):
            out["node_sparsity"] = self.pruner.node_sparsity()
        return out


#: an empty mask set (nothing to zero): a compact model, or counting dense FLOPs
_NO_MASKS = MaskSet({})


def balanced_set(batches: Any, num_classes: int,
                 per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` examples of each class met in ``batches`` (shuffled training
    batches), grouped by class in class order: GraSP's ``GraSP_fetch_data``
    (github.com/alecwangcq/GraSP, ``pruner/GraSP.py``). A class with fewer examples gives
    what it has."""
    xs: list[list[torch.Tensor]] = [[] for _ in range(num_classes)]
    for x, y in batches:
        for xi, yi in zip(x, y.tolist(), strict=True):
            if 0 <= yi < num_classes and len(xs[yi]) < per_class:
                xs[yi].append(xi)
        if all(len(c) == per_class for c in xs):
            break
    x_out = torch.stack([xi for c in xs for xi in c])
    y_out = torch.tensor([k for k, c in enumerate(xs) for _ in c])
    return x_out, y_out


class _DivergedAt(Diverged):
    def __init__(self, epoch: int, msg: str) -> None:
        super().__init__(msg)
        self.epoch = epoch


class _Doomed(Exception):
    """The screen found masks no training can rescue (``prune.screen``)."""


def doomed_reason(conn: Connectivity, masks: MaskSet, min_density: float) -> str | None:
    """Why masks are doomed (``prune.screen``), or None: no input -> output path, or an
    effective density below ``min_density``."""
    if not conn.has_path:
        empty = masks.collapsed()
        where = f" ({len(empty)} empty: {', '.join(empty[:3])}{'...' if len(empty) > 3 else ''})" \
            if empty else ""
        return f"doomed: no input->output path{where}"
    density = 1.0 - conn.effective_sparsity
    if density < min_density:
        return (f"doomed: effective density {density:.4g} below "
                f"prune.screen.min_density {min_density:g}")
    return None


def _start_from_dense(trial: _Trial, cache: DenseCache,
                      on_epoch: Callable[[EpochReport], None] | None) -> None:
    """Run the plan's dense prefix once per cache key, or load the state another trial left."""
    n = dense_prefix(trial.plan)
    if n == 0:
        return

    def create() -> dict[str, Any]:
        while trial.done < n:
            trial.execute(trial.plan[trial.done], on_epoch)
            trial.done += 1
        return trial.state(n)

    state = cache.get_or_create(cache_key(trial.cfg, trial.plan, n), create)
    if trial.done < n:  # another trial trained it: continue from its state, bit for bit
        trial.restore(state)
        if on_epoch is not None:  # report the shared epochs too: schedulers count every one
            for metrics in trial.history:
                on_epoch(EpochReport(int(metrics["epoch"]), trial.total_epochs, dict(metrics),
                                     lambda: state, trial.size_metrics()))


def run(cfg: TrialConfig, on_epoch: Callable[[EpochReport], None] | None = None,
        resume: dict[str, Any] | None = None, masks_out: str | Path | None = None,
        dense_cache: DenseCache | None = None,
        weights_out: str | Path | None = None,
        compact_out: str | Path | None = None) -> TrialResult:
    """Run one trial: prune and train as ``cfg`` says. NaN losses give status ``diverged``.

    ``masks_out``: also save the final masks there (safetensors, no pickle).
    ``dense_cache``: share the dense training before the first prune with other trials (see
    ``dense_cache.py``); the result is the same, bit for bit, as training it here.
    ``weights_out``: save the final (masked) weights there (safetensors; ``model.weights``
    reads it back); a compacted trial writes its compact model (see ``compact_out``).
    ``compact_out``: ``prune.granularity: channel`` only: save the compact network there
    (safetensors weights plus the spec that rebuilds it; compacted now if the trial kept
    masks). ``pruning_core.structured.load_compact`` or ``model.weights`` read it."""
    _check_export(cfg, compact_out is not None or (
        weights_out is not None and cfg.prune.granularity == "channel" and cfg.prune.compact))
    trial = _Trial(cfg)
    if resume is not None:
        trial.restore(resume)
    status, diverged_epoch, error = "ok", None, None
    try:
        if resume is None and dense_cache is not None:
            _start_from_dense(trial, dense_cache, on_epoch)
        while trial.done < len(trial.plan):
            trial.execute(trial.plan[trial.done], on_epoch)
            trial.done += 1
    except _DivergedAt as exc:
        status, diverged_epoch, error = "diverged", exc.epoch, f"epoch {exc.epoch}: {exc}"
        log.warning("trial diverged at epoch %d", exc.epoch)
    except _Doomed as exc:
        status, error = "doomed", str(exc)
        log.warning("trial ended before training: %s", exc)
    if masks_out is not None:
        Path(masks_out).parent.mkdir(parents=True, exist_ok=True)  # as --json: parents made
        trial.masks.save(masks_out)
    if weights_out is not None:
        if trial.compacted:  # the smaller network, with what rebuilds it (model.weights reads it)
            _export_compact(trial, weights_out)
        else:
            from safetensors.torch import save_file

            Path(weights_out).parent.mkdir(parents=True, exist_ok=True)
            save_file({k: v.detach().cpu().contiguous()
                       for k, v in trial.model.state_dict().items()}, str(weights_out))
    if compact_out is not None:
        _export_compact(trial, compact_out)
    return finish_trial(trial, status, diverged_epoch, error, dense_cache)


def finish_trial(trial: _Trial, status: str, diverged_epoch: int | None, error: str | None,
                 dense_cache: DenseCache | None = None) -> TrialResult:
    """The result of a trial whose plan has ended: the end metrics (similarity, speed,
    adversarial accuracy) of a trial that trained, then :class:`TrialResult`."""
    cfg = trial.cfg
    similarity: dict[str, float] = {}
    if cfg.metrics.similarity is not None and status == "ok":
        similarity = similarity_to_dense(trial, dense_cache)
    result = _result(trial, status, diverged_epoch, error, similarity)
    if cfg.metrics.speed is not None and status == "ok":
        _measure_speed(trial, result)
    if cfg.metrics.adversarial is not None and status == "ok":
        _measure_adversarial(trial, result)
    return result


def _measure_adversarial(trial: _Trial, result: TrialResult) -> None:
    """metrics.adversarial: accuracy under attack on the seeded test subset (the same
    examples for every trial of a seed), in the data's valid input range."""
    from .adversarial import adversarial_accuracy, input_bounds

    cfg = trial.cfg
    bounds = input_bounds(trial.data.test, cfg.data.name, **cfg.data.options)
    adv = adversarial_accuracy(trial.model, trial.data.test, cfg.metrics.adversarial,
                               seed=cfg.seed, device=trial.device, bounds=bounds)
    result.adv_accuracy = adv.adv_accuracy
    result.adversarial = {**adv.settings, "clean_accuracy": adv.clean_accuracy,
                          "time_s": adv.time_s}


@dataclass
class ScreenOutcome:
    """What the screen says of a config before any training (``screen_config``)."""

    verdict: str  # "doomed" | "ok" | "unscreened" (its masks are made after training starts)
    reason: str | None
    effective_sparsity: float | None
    sparsity: float | None


def screen_config(cfg: TrialConfig) -> ScreenOutcome:
    """Build ``cfg``'s masks without training and apply the doomed-trial screen to them (with
    ``prune.screen`` on whatever the config says). Plans that train before their first prune
    (``after``, ``imp``, ``during`` past epoch 0) are ``unscreened``: their masks depend on
    the training."""
    cfg = cfg.model_copy(update={"prune": cfg.prune.model_copy(
        update={"screen": cfg.prune.screen.model_copy(update={"enabled": True})})})
    trial = _Trial(cfg)
    try:
        for action in trial.plan:
            if isinstance(action, Train):
                break
            trial.execute(action, None)
    except _Doomed as exc:
        return ScreenOutcome("doomed", str(exc), 1.0, trial.masks.sparsity())
    if not any(isinstance(a, Prune) for a in trial.plan[: _first_train(trial.plan)]):
        return ScreenOutcome("unscreened", "prunes after training starts", None, None)
    conn = connectivity(trial.model, trial.masks, trial.data.input_shape)
    return ScreenOutcome("ok", None, conn.effective_sparsity, trial.masks.sparsity())


def _first_train(plan: list[Any]) -> int:
    return next((i for i, a in enumerate(plan) if isinstance(a, Train)), len(plan))


def _check_export(cfg: TrialConfig, compact_file: bool) -> None:
    """Before any work: can this run write a compact-model file?"""
    if not compact_file:
        return
    if cfg.prune.granularity != "channel":
        raise ConfigError("--export-compact needs prune.granularity: channel (weight pruning "
                          "leaves the network its full size; use --weights-out)")
    if cfg.model.weights is not None:
        from .structured.export import compact_indices

        if compact_indices(cfg.model.weights) is not None:
            raise ConfigError("model.weights: the run starts from a compact model; writing a "
                              "compact model of it is not supported yet (prune it with "
                              "prune.compact: false and --masks instead)")


def _export_compact(trial: _Trial, path: str | Path) -> None:
    from .structured import keep_indices, rebuild
    from .structured.export import save_compact

    assert isinstance(trial.pruner, ChannelPruner)
    if trial.compacted:
        model, indices = trial.model, trial.compact_indices
    else:
        indices = keep_indices(trial.model, trial.pruner.groups, trial.pruner.keep)
        model = rebuild(trial.model, indices)
    spec = {"model": {"name": trial.cfg.model.name, "options": trial.cfg.model.options},
            "input_shape": list(trial.data.input_shape), "num_classes": trial.data.num_classes}
    save_compact(path, model, indices, spec)


def _measure_speed(trial: _Trial, result: TrialResult) -> None:
    """metrics.speed: the final network against a freshly built dense one, on the device."""
    from .structured.speed import compare_speed

    cfg, shape = trial.cfg, trial.data.input_shape
    opts = {"warmup": cfg.metrics.speed.warmup, "repeats": cfg.metrics.speed.repeats}
    dense = create_model(cfg.model.name, shape, trial.data.num_classes,
                         **cfg.model.options).to(trial.device)
    if cfg.train.channels_last:
        dense.to(memory_format=torch.channels_last)
    pair = compare_speed(trial.model, dense, shape, cfg.data.batch_size, trial.device, **opts)
    final, base = pair.candidate, pair.baseline
    result.latency_ms, result.latency_ms_batch1 = (final.latency_ms_train_batch,
                                                   final.latency_ms_batch1)
    result.train_step_ms = final.train_step_ms
    result.latency_ms_dense, result.latency_ms_batch1_dense = (base.latency_ms_train_batch,
                                                               base.latency_ms_batch1)
    result.train_step_ms_dense = base.train_step_ms
    result.speedup, result.inference_speedup = pair.ratio_train_step, pair.ratio_latency


def _result(trial: _Trial, status: str, diverged_epoch: int | None,
            error: str | None, similarity: dict[str, float]) -> TrialResult:
    test = trial.last_test or evaluate(trial.model, trial.test_loader, trial.device)
    train = trial.last_train or EpochStats(float("nan"), float("nan"))
    if trial.compacted and trial.dense_size is not None:  # the model is really smaller
        params, dense_flops = trial.dense_size
        cm = trial.compact_masks
        kept = sum(p.numel() for p in trial.model.parameters()) - (cm.numel() - cm.kept())
        eff_flops = flops(trial.model, trial.data.input_shape, cm)[1]
    else:
        params, kept = param_counts(trial.model, trial.masks)
        dense_flops, eff_flops = flops(trial.model, trial.data.input_shape, trial.masks)
    return TrialResult(
        status=status, test_accuracy=test.accuracy, test_loss=test.loss,
        train_accuracy=train.accuracy, train_loss=train.loss,
        sparsity=trial.masks.sparsity(), target_sparsity=trial.target,
        layer_sparsity=trial.masks.layer_sparsity(), collapsed_layers=trial.masks.collapsed(),
        params=params, params_kept=kept, flops_dense=dense_flops, flops=eff_flops,
        prune_time_s=trial.pruner.elapsed_s, train_time_s=trial.train_time,
        epochs=len(trial.history), diverged_epoch=diverged_epoch, error=error,
        history=trial.history, similarity=similarity,
        similarity_mean=_finite_mean(similarity.values()),
        node_sparsity=trial.pruner.node_sparsity()
        if isinstance(trial.pruner, ChannelPruner) else None,
        train_flops=trial.train_flops,
        gap_accuracy=train.accuracy - test.accuracy, gap_loss=test.loss - train.loss,
        **_connectivity_fields(trial),
    )


def _connectivity_fields(trial: _Trial) -> dict[str, Any]:
    """Effective sparsity and the rest (``effective.effective_record``) of the final
    network: the compact model with its leftover masks once compacted."""
    if not trial.compacted:
        return effective_record(trial.model, trial.masks, trial.data.input_shape)
    params = prunable_parameters(trial.model)
    cm = trial.compact_masks
    live = MaskSet(params, {n: cm[n] if n in cm.masks else torch.ones_like(p, dtype=torch.bool)
                            for n, p in params.items()})
    out = effective_record(trial.model, live, trial.data.input_shape)
    out["effective_sparsity"] = 1.0 - (trial.masks.kept() - out["disconnected_weights"]) \
        / trial.masks.numel()
    out["layer_effective_sparsity"] = {}  # compact shapes: per-layer figures would mislead
    return out


def _finite_mean(values: Any) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None
