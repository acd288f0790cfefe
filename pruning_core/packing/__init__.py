"""Trial packing: several trials of one network trained as one batched model.

The contract the sweep side builds on (``sweeps/tune``) is :func:`run_pack`. Today it runs the
members one after another through :func:`pruning_core.trials.experiment.run`, which is exactly what
a
pack must equal; the batched engine replaces the body, never the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..config import TrialConfig
from ..experiment import EpochReport, TrialResult, run

#: ``on_epoch(member, report)``: the member's index in the pack and its epoch report. Returning
#: ``True`` stops that member after this epoch (early stopping decides per member); its result
#: then has ``status == "stopped"`` and its last epoch's metrics. The others go on.
MemberEpoch = Callable[[int, EpochReport], bool | None]


class _StopMember(Exception):
    pass


def run_pack(cfgs: Sequence[TrialConfig], on_epoch: MemberEpoch | None = None,
             resume: Sequence[dict[str, Any] | None] | None = None,
             dense_cache: Any = None) -> list[TrialResult]:
    """Run every member of a pack; one :class:`TrialResult` per member, in order.

    ``resume[i]`` is member ``i``'s ``EpochReport.checkpoint()`` (or ``None``: from the start).
    A member that diverges or is doomed ends alone; its pack-mates are unaffected."""
    resume = list(resume) if resume is not None else [None] * len(cfgs)
    results: list[TrialResult] = []
    for i, cfg in enumerate(cfgs):
        results.append(_run_member(i, cfg, on_epoch, resume[i], dense_cache))
    return results


def _run_member(i: int, cfg: TrialConfig, on_epoch: MemberEpoch | None,
                state: dict[str, Any] | None, dense_cache: Any) -> TrialResult:
    last: list[EpochReport] = []

    def member_epoch(report: EpochReport) -> None:
        last[:] = [report]
        if on_epoch is not None and on_epoch(i, report):
            raise _StopMember

    try:
        return run(cfg, on_epoch=member_epoch, resume=state, dense_cache=dense_cache)
    except _StopMember:
        return stopped_result(cfg, last[0])


def stopped_result(cfg: TrialConfig, report: EpochReport) -> TrialResult:
    """The result of a member stopped early: its last epoch's metrics, status ``stopped``."""
    raise NotImplementedError("packing: per-member early stopping lands with the packed engine")
