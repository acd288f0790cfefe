"""Trial packing: several trials of one network trained as one batched model.

The contract the sweep side builds on (``sweeps/tune``) is :func:`run_pack`: one
:class:`TrialResult` per member, each equal (to float tolerance, see docs/packing.md) to
:func:`pruning_core.trials.experiment.run` of that member's config. Configs are split into
compatible packs by :func:`pack_key` (``compat.py``); a pack trains batched (``engine.py``)
or, where that is not faster (:func:`choose_packed`), its members run one after another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..config import TrialConfig
from ..trials.experiment import run
from ..trials.result import EpochReport, TrialResult
from ..trials.trial import Trial
from .choose import StepTiming, choose_packed, decide, measure_steps
from .compat import PACK_FIELDS, pack_key, split_packs
from .engine import Member, StopMember, run_lockstep, share_data

__all__ = ["PACK_FIELDS", "MemberEpoch", "StepTiming", "choose_packed", "decide",
           "measure_steps", "pack_key", "run_pack", "split_packs", "stopped_result"]

#: ``on_epoch(member, report)``: the member's index in the pack and its epoch report. Returning
#: ``True`` stops that member after this epoch (early stopping decides per member); its result
#: then has ``status == "stopped"`` and its last epoch's metrics. The others go on.
MemberEpoch = Callable[[int, EpochReport], bool | None]


def run_pack(cfgs: Sequence[TrialConfig], on_epoch: MemberEpoch | None = None,
             resume: Sequence[dict[str, Any] | None] | None = None,
             dense_cache: Any = None, *, batched: bool | None = None,
             on_result: Callable[[int, TrialResult], None] | None = None) -> list[TrialResult]:
    """Run every member of a pack; one :class:`TrialResult` per member, in order.

    ``resume[i]`` is member ``i``'s ``EpochReport.checkpoint()`` (or ``None``: from the start).
    A member that diverges or is doomed ends alone; its pack-mates are unaffected.
    ``batched``: True trains each compatible group as one batched model, False runs every
    member one after another, None (``budget.pack: auto``) asks :func:`choose_packed`.
    ``on_result(member, result)`` is called as soon as a member's result is known (members run
    one after another: each as it ends; a batched group: when the group ends)."""
    resume = list(resume) if resume is not None else [None] * len(cfgs)
    results: list[TrialResult | None] = [None] * len(cfgs)
    for idx in split_packs(cfgs):
        group = [cfgs[i] for i in idx]
        use = batched if batched is not None else choose_packed(group)
        if use:
            out = _run_batched(idx, cfgs, on_epoch, resume, dense_cache)
            for i, r in zip(idx, out, strict=True):
                results[i] = r
                if on_result is not None:
                    on_result(i, r)
        else:
            for i in idx:
                results[i] = r = _run_member(i, cfgs[i], on_epoch, resume[i], dense_cache)
                if on_result is not None:
                    on_result(i, r)
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def _run_batched(idx: Sequence[int], cfgs: Sequence[TrialConfig], on_epoch: MemberEpoch | None,
                 resume: Sequence[dict[str, Any] | None],
                 dense_cache: Any) -> list[TrialResult]:
    members: list[Member] = []
    for i in idx:
        trial = Trial(cfgs[i])
        if resume[i] is not None:
            trial.restore(resume[i])  # type: ignore[arg-type]
        share_data(trial, [m.trial for m in members])
        members.append(Member(i, trial, _callback(i, on_epoch, members, len(members))))
    run_lockstep(members, dense_cache,
                 lambda m: stopped_result(m.trial.cfg, m.last_report),  # type: ignore[arg-type]
                 [resume[i] is not None for i in idx])
    return [m.result for m in members]  # type: ignore[misc]


def _callback(i: int, on_epoch: MemberEpoch | None, members: list[Member],
              slot: int) -> Callable[[EpochReport], None]:
    def member_epoch(report: EpochReport) -> None:
        members[slot].last_report = report
        if on_epoch is not None and on_epoch(i, report):
            raise StopMember

    return member_epoch


def _run_member(i: int, cfg: TrialConfig, on_epoch: MemberEpoch | None,
                state: dict[str, Any] | None, dense_cache: Any) -> TrialResult:
    last: list[EpochReport] = []

    def member_epoch(report: EpochReport) -> None:
        last[:] = [report]
        if on_epoch is not None and on_epoch(i, report):
            raise StopMember

    try:
        return run(cfg, on_epoch=member_epoch, resume=state, dense_cache=dense_cache)
    except StopMember:
        return stopped_result(cfg, last[0])


def stopped_result(cfg: TrialConfig, report: EpochReport) -> TrialResult:
    """The result of a member stopped early: its last epoch's metrics, status ``stopped``.

    Read from the report (metrics, sizes) and its checkpoint (masks, history, times); the end
    metrics (effective sparsity, similarity, speed, adversarial accuracy) stay unset, as for a
    trial a scheduler stops."""
    state = report.checkpoint()
    metrics, sizes = report.metrics, report.sizes
    masks = state["masks"]
    layer = {n: 1.0 - float(m.sum()) / m.numel() for n, m in masks.items()}
    return TrialResult(
        status="stopped", test_accuracy=metrics["test_accuracy"],
        test_loss=metrics["test_loss"], train_accuracy=metrics["train_accuracy"],
        train_loss=metrics["train_loss"], sparsity=metrics["sparsity"],
        target_sparsity=float(sizes["target_sparsity"]), layer_sparsity=layer,
        collapsed_layers=[n for n, m in masks.items() if not bool(m.any())],
        params=int(sizes["params"]), params_kept=int(sizes["params_kept"]),
        flops_dense=int(sizes["flops_dense"]), flops=int(sizes["flops"]),
        prune_time_s=state["prune_time_s"], train_time_s=state["train_time_s"],
        epochs=len(state["history"]), history=list(state["history"]),
        node_sparsity=sizes.get("node_sparsity"), train_flops=int(sizes["train_flops"]),
        gap_accuracy=metrics["gap_accuracy"], gap_loss=metrics["gap_loss"])
