"""``run(TrialConfig) -> TrialResult``: the one entry point sweeps call.

Builds data, model, masks and a plan (see ``timing.py``), executes the plan action by action,
reports after every training epoch, and can resume from the state after any epoch.
"""


import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..base.errors import ConfigError
from ..config import TrialConfig
from ..masking.masks import MaskSet
from ..masking.targets import prunable_parameters
from ..measure.effective import effective_record
from ..measure.metrics import flops, param_counts, perplexity
from ..structured.pruner import ChannelPruner
from ..workloads.models import create_model
from .dense_cache import DenseCache, cache_key, dense_prefix
from .loop import EpochStats, evaluate
from .reference import similarity_to_dense
from .result import EpochReport, TrialResult
from .timing import (
    Prune,
    Train,
)
from .trial import (
    DivergedAt,
    Doomed,
    Trial,
    balanced_set,
    doomed_reason,
    prunable_layers,
    resolve_device,
)

log = logging.getLogger(__name__)


__all__ = ["EpochReport", "ScreenOutcome", "Trial", "TrialResult", "balanced_set",
           "doomed_reason", "prunable_layers", "resolve_device", "run", "screen_config"]


def _start_from_dense(trial: Trial, cache: DenseCache,
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
    trial = Trial(cfg)
    if resume is not None:
        trial.restore(resume)
    status, diverged_epoch, error = "ok", None, None
    try:
        if resume is None and dense_cache is not None:
            _start_from_dense(trial, dense_cache, on_epoch)
        while trial.done < len(trial.plan):
            trial.execute(trial.plan[trial.done], on_epoch)
            trial.done += 1
    except DivergedAt as exc:
        status, diverged_epoch, error = "diverged", exc.epoch, f"epoch {exc.epoch}: {exc}"
        log.warning("trial diverged at epoch %d", exc.epoch)
    except Doomed as exc:
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


def finish_trial(trial: Trial, status: str, diverged_epoch: int | None, error: str | None,
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


def _measure_adversarial(trial: Trial, result: TrialResult) -> None:
    """metrics.adversarial: accuracy under attack on the seeded test subset (the same
    examples for every trial of a seed), in the data's valid input range."""
    from ..measure.adversarial import adversarial_accuracy, input_bounds

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
    trial = Trial(cfg)
    try:
        for action in trial.plan:
            if isinstance(action, Train):
                break
            trial.execute(action, None)
    except Doomed as exc:
        return ScreenOutcome("doomed", str(exc), 1.0, trial.masks.sparsity())
    if not any(isinstance(a, Prune) for a in trial.plan[: _first_train(trial.plan)]):
        return ScreenOutcome("unscreened", "prunes after training starts", None, None)
    conn = trial.connectivity(trial.model, trial.masks, trial.data.input_shape)
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
        from ..structured.export import compact_indices

        if compact_indices(cfg.model.weights) is not None:
            raise ConfigError("model.weights: the run starts from a compact model; writing a "
                              "compact model of it is not supported yet (prune it with "
                              "prune.compact: false and --masks instead)")


def _export_compact(trial: Trial, path: str | Path) -> None:
    from ..structured import keep_indices, rebuild
    from ..structured.export import save_compact

    assert isinstance(trial.pruner, ChannelPruner)
    if trial.compacted:
        model, indices = trial.model, trial.compact_indices
    else:
        indices = keep_indices(trial.model, trial.pruner.groups, trial.pruner.keep)
        model = rebuild(trial.model, indices)
    spec = {"model": {"name": trial.cfg.model.name, "options": trial.cfg.model.options},
            "input_shape": list(trial.data.input_shape), "num_classes": trial.data.num_classes}
    save_compact(path, model, indices, spec)


def _measure_speed(trial: Trial, result: TrialResult) -> None:
    """metrics.speed: the final network against a freshly built dense one, on the device."""
    from ..structured.speed import compare_speed

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
    pattern = cfg.prune.pattern
    if pattern is not None and (pattern.n, pattern.m) == (2, 4):
        from ..measure.semistructured import nm_speedup

        nm = nm_speedup(trial.model, shape, cfg.data.batch_size, trial.device, **opts)
        result.nm_latency_ms, result.nm_latency_ms_dense = nm.latency_ms_nm, nm.latency_ms_dense
        result.nm_speedup, result.nm_speedup_note = nm.speedup, nm.note
    elif pattern is not None:
        result.nm_speedup_note = (f"{pattern.n}:{pattern.m} has no semi-structured kernel; "
                                  "torch.sparse runs 2:4 only")


def _result(trial: Trial, status: str, diverged_epoch: int | None,
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
        num_classes=trial.data.num_classes,
        history=trial.history, similarity=similarity,
        similarity_mean=_finite_mean(similarity.values()),
        node_sparsity=trial.pruner.size_metrics().get("node_sparsity"),
        train_flops=trial.train_flops,
        excluded_layers=list(getattr(trial.pruner, "excluded", [])),
        gap_accuracy=train.accuracy - test.accuracy, gap_loss=test.loss - train.loss,
        perplexity=perplexity(test.loss),
        **_connectivity_fields(trial),
    )


def _connectivity_fields(trial: Trial) -> dict[str, Any]:
    """Effective sparsity and the rest (``effective.effective_record``) of the final
    network: the compact model with its leftover masks once compacted."""
    if not trial.compacted:
        return effective_record(trial.model, trial.masks, trial.data.input_shape,
                                probe=trial.connectivity)
    params = prunable_parameters(trial.model)
    cm = trial.compact_masks
    live = MaskSet(params, {n: cm[n] if n in cm.masks else torch.ones_like(p, dtype=torch.bool)
                            for n, p in params.items()})
    out = effective_record(trial.model, live, trial.data.input_shape, probe=trial.connectivity)
    out["effective_sparsity"] = 1.0 - (trial.masks.kept() - out["disconnected_weights"]) \
        / trial.masks.numel()
    out["layer_effective_sparsity"] = {}  # compact shapes: per-layer figures would mislead
    return out


def _finite_mean(values: Any) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None
