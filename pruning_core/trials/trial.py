"""One trial's mutable state: data, model, masks, pruner, optimizer and its plan of actions
(see ``timing.py``), executed action by action; the state after any action can be saved and
restored. :func:`pruning_core.trials.experiment.run` drives it."""


import copy
import logging
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..base import rng
from ..base.errors import ConfigError
from ..config import TrialConfig
from ..masking.allocation import reached_sparsity
from ..masking.engine import Pruner, PruneStep
from ..masking.masks import MaskSet
from ..masking.schedules import sparsity_steps
from ..masking.targets import LayerInfo, layer_infos, prunable_parameters
from ..masking.variants import VARIANTS
from ..measure.effective import Connectivity, ConnectivityMemo
from ..measure.metrics import flops, param_counts, perplexity
from ..structured.compact_file import load_weights
from ..structured.pruner import ChannelPruner
from ..workloads.augment import CropFlip
from ..workloads.data import DataBundle, black_pixel, dataset_spec, load_dataset, with_label_noise
from ..workloads.loader import DeviceLoader, on_device
from ..workloads.models import create_model
from .loop import Diverged, EpochStats, evaluate, lr_at, make_optimizer, train_epoch
from .result import EpochReport
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

log = logging.getLogger(__name__)


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


def load_bundle(cfg: TrialConfig) -> DataBundle:
    d = cfg.data
    bundle = load_dataset(d.name, root=d.root, seed=cfg.seed, train_limit=d.train_limit,
                          test_limit=d.test_limit, **d.options)
    if d.label_noise:
        bundle = with_label_noise(bundle, d.label_noise, cfg.seed)
    return bundle


def make_loaders(cfg: TrialConfig, data: DataBundle, device: torch.device,
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


class Trial:
    """The mutable state of one run (``experiment.run`` drives it; packing runs several)."""

    def __init__(self, cfg: TrialConfig) -> None:
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.device = resolve_device(cfg.train.device)
        self.data = load_bundle(cfg)
        self.model: nn.Module = create_model(cfg.model.name, self.data.input_shape,
                                             self.data.num_classes, **cfg.model.options)
        if cfg.model.weights is not None:
            load_weights(self.model, cfg.model.weights, cfg.model.weights_strict)
        self.model.to(self.device)
        if cfg.train.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.loader_gen = torch.Generator().manual_seed(cfg.seed)
        self.train_loader, self.test_loader = make_loaders(cfg, self.data, self.device,
                                                       self.loader_gen)
        self.pruner, self.masks, self.target = self._make_pruner()
        steps = sparsity_steps(cfg.prune.schedule, self.target, cfg.prune.steps) \
            if self.target > 0 else []
        self.plan = TIMINGS.get(cfg.prune.timing.name)(cfg, steps)
        if self.pruner.compacts and cfg.prune.compact:
            self.plan = with_compaction(self.plan)
        self.total_epochs = sum(isinstance(a, Train) for a in self.plan)
        #: after a Compact: the smaller model trains without masks; ``masks`` stays the record
        #: of what was removed (full-size shapes), and the dense model's size is kept here
        self.compacted = False
        self.compact_masks = NO_MASKS
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
        #: the connectivity probe, memoised: the screen's answer serves the record while the
        #: masks and the model's zeros are unchanged (``effective.ConnectivityMemo``)
        self.connectivity = ConnectivityMemo()

    def _make_pruner(self) -> tuple[PruneStep, MaskSet, float]:
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
        target = reached_sparsity(cfg.prune.allocation, shapes, cfg.prune.sparsity)
        return Pruner(
            model=self.model, masks=masks, criterion=cfg.prune.criterion,
            allocation=cfg.prune.allocation, final_sparsity=target,
            batches=self._score_batches(), input_shape=self.data.input_shape,
            criterion_options=cfg.prune.criterion_options, seed=cfg.seed,
            compare=cfg.prune.compare,
            pattern=(cfg.prune.pattern.n, cfg.prune.pattern.m) if cfg.prune.pattern else None,
            exclude_zero_layers=not cfg.prune.prune_zero_layers,
        ), masks, target

    def _score_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The data-driven criteria's batches: ``score_batches`` shuffled training batches,
        or (``score_samples_per_class``) a class-balanced set split into that many batches."""
        gen = torch.Generator().manual_seed(self.cfg.seed + 1)
        loader = DataLoader(self.data.train, batch_size=self.cfg.data.batch_size, shuffle=True,
                            generator=gen)
        per_class = self.cfg.prune.score_samples_per_class
        if per_class and torch.as_tensor(self.data.train[0][1]).dim() > 0:  # an LM: label per token
            raise ConfigError("prune.score_samples_per_class: needs one class label per example; "
                              f"{self.data.name} has one per token: unset it and use "
                              "prune.score_batches")
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
        structure = self.pruner.structure_state()
        if not structure:
            return {}
        return {**structure, "compacted": self.compacted,
                "dense_size": list(self.dense_size) if self.dense_size else None}

    def restore(self, state: dict[str, Any]) -> None:
        if self.pruner.restore_structure(state):
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
        conn = self.connectivity(self.model, self.masks, self.data.input_shape)
        if remove and conn.disconnected:
            log.info("removing %d disconnected weights", conn.disconnected)
            self.masks.update(conn.masks)
            self.masks.apply()
        if screen.enabled:
            reason = doomed_reason(conn, self.masks, screen.min_density)
            if reason is not None:
                raise Doomed(reason)

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
        from ..structured import compact_optimizer_state, keep_indices, rebuild, slice_plan

        assert isinstance(self.pruner, ChannelPruner)
        dense = self.model
        self.dense_size = (sum(p.numel() for p in dense.parameters()),
                           flops(dense, self.data.input_shape, NO_MASKS)[0])
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
            if sliced else NO_MASKS
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
            raise DivergedAt(epoch, str(exc)) from None
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
            "perplexity": perplexity(self.last_test.loss),
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
        out.update(self.pruner.size_metrics())
        return out


#: an empty mask set (nothing to zero): a compact model, or counting dense FLOPs
NO_MASKS = MaskSet({})


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


class DivergedAt(Diverged):
    def __init__(self, epoch: int, msg: str) -> None:
        super().__init__(msg)
        self.epoch = epoch


class Doomed(Exception):
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

