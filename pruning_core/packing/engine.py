"""The packed engine: K trials (``trials.trial.Trial``) run in lockstep, their epochs batched.

Each member is a solo trial: its plan, masks, pruner, optimiser, loaders and random streams are
its own. A round advances every live member through its non-training actions (prune events,
rewinds, new optimisers, with the member's own global random state swapped in) up to its next
``Train`` action (members waiting at a prune step whose criterion batches are scored in one
pass, ``scoring.py``; the others score alone), then trains that epoch for all of them as one
batched model (``batched.py``) and hands each member back to the solo code: evaluation,
history, the epoch report, checkpoints, early stopping and the final result.

A member ends alone: diverged (a non-finite mean training loss, as ``train_epoch`` says),
doomed (the screen), stopped (its ``on_epoch`` returned True), or at the end of its plan; the
pack goes on while any member trains. A member that cannot be batched (not a tensor dataset,
a compacted model, a ``torch.compile``d forward, a model with dropout) runs its plan on its own.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..base import rng
from ..trials.experiment import _start_from_dense, finish_trial
from ..trials.loop import lr_at
from ..trials.result import EpochReport, TrialResult
from ..trials.timing import Prune, Train
from ..trials.trial import DivergedAt, Doomed, Trial
from ..workloads.loader import DeviceLoader
from .batched import StackedModels, stacked_masks, train_packed_epoch
from .optim import BatchedOptimizer
from .scoring import Ledger, give_scores, scorable

log = logging.getLogger(__name__)


class StopMember(Exception):
    """Raised by a member's epoch callback when ``on_epoch`` asks to stop it."""


@dataclass
class Member:
    index: int
    trial: Trial
    on_epoch: Callable[[EpochReport], None]
    rng_state: dict[str, Any] = field(default_factory=rng.capture)
    result: TrialResult | None = None
    last_report: EpochReport | None = None

    @property
    def live(self) -> bool:
        return self.result is None


@contextmanager
def member_rng(m: Member) -> Iterator[None]:
    """The process-wide random state as this member alone would have it."""
    rng.restore(m.rng_state)
    try:
        yield
    finally:
        m.rng_state = rng.capture()


def batchable(trial: Trial) -> bool:
    """Whether this member's epochs can join a batched epoch."""
    return (isinstance(trial.train_loader, DeviceLoader) and not trial.compacted
            and not trial.cfg.train.compile
            and not any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0
                        for m in trial.model.modules()))


def share_data(trial: Trial, earlier: Sequence[Trial]) -> None:
    """Hold one copy of the data: where an earlier member's device-resident split has equal
    tensors (a dataset that does not depend on the seed, or the same seed), this member's
    loaders read those, inputs and labels apart (label noise changes only labels). A K-member
    CIFAR pack then holds one 0.6 GB split on the device, not K."""
    for loader_name in ("train_loader", "test_loader"):
        mine = getattr(trial, loader_name)
        if not isinstance(mine, DeviceLoader):
            continue
        for other in earlier:
            theirs = getattr(other, loader_name)
            if not isinstance(theirs, DeviceLoader):
                continue
            if mine.x is not theirs.x and _same(mine.x, theirs.x):
                mine.x = theirs.x
            if mine.y is not theirs.y and _same(mine.y, theirs.y):
                mine.y = theirs.y


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal tensors; a different dataset usually differs in its first elements (cheap)."""
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    return bool(torch.equal(a.flatten()[:1024], b.flatten()[:1024])) and bool(torch.equal(a, b))


def run_lockstep(members: Sequence[Member], dense_cache: Any,
                 stopped: Callable[[Member], TrialResult], resumed: Sequence[bool]) -> None:
    """Run every member to its end; each member's ``result`` is set."""
    for m, was_resumed in zip(members, resumed, strict=True):
        if not was_resumed and dense_cache is not None:
            _guard(m, lambda m=m: _start_from_dense(m.trial, dense_cache, m.on_epoch), stopped)
    ledger = Ledger()  # which criteria batch their scores in this pack
    while True:
        _advance_all(members, stopped, ledger)
        ready = [m for m in members if m.live]
        if not ready:
            return
        _train_round(ready, stopped)


def _guard(m: Member, work: Callable[[], None], stopped: Callable[[Member], TrialResult]) -> None:
    """Run a member's solo work; its end (diverged, doomed, stopped) ends only that member."""
    try:
        with member_rng(m):
            work()
    except StopMember:  # raised in the report of a Train action (its checkpoint is after it)
        m.result = stopped(m)
    except DivergedAt as exc:
        _end(m, "diverged", exc.epoch, f"epoch {exc.epoch}: {exc}")
    except Doomed as exc:
        _end(m, "doomed", None, str(exc))


def _end(m: Member, status: str, epoch: int | None, error: str | None) -> None:
    if status == "diverged":
        log.warning("member %d diverged at epoch %d", m.index, epoch)
    with member_rng(m):
        m.result = finish_trial(m.trial, status, epoch, error)


def _advance_all(members: Sequence[Member], stopped: Callable[[Member], TrialResult],
                 ledger: Ledger) -> None:
    """Bring every live member to its next ``Train`` (or its end). Members stop at each prune
    step their pruner could take batched scores for; those waiting at one are scored together
    (``scoring.give_scores``: one pass per criterion), then each takes its step. ``ledger``:
    the pack's record of which criteria batch (``scoring.Ledger``)."""
    while True:
        waiting = []
        for m in members:
            if m.live:
                _guard(m, lambda m=m: _advance(m), stopped)
            if m.live and _at_scorable_prune(m.trial):
                waiting.append(m)
        if not waiting:
            return
        give_scores([m.trial.model for m in waiting], [m.trial.pruner for m in waiting],
                    [m.trial.plan[m.trial.done].sparsity for m in waiting], ledger)
        for m in waiting:
            _guard(m, lambda m=m: _execute_next(m), stopped)


def _at_scorable_prune(t: Trial) -> bool:
    return (t.done < len(t.plan) and isinstance(t.plan[t.done], Prune) and batchable(t)
            and scorable(t.pruner))


def _execute_next(m: Member) -> None:
    t = m.trial
    t.execute(t.plan[t.done], m.on_epoch)
    t.done += 1


def _advance(m: Member) -> None:
    """Execute the member's actions up to its next ``Train`` (or its end), or up to a prune
    step that can be scored with its pack-mates; a member that cannot be batched runs its
    whole plan here."""
    t = m.trial
    solo = not batchable(t)
    while t.done < len(t.plan) and (solo or not isinstance(t.plan[t.done], Train)):
        if not solo and _at_scorable_prune(t):
            return
        _execute_next(m)
        solo = solo or not batchable(t)
    if t.done >= len(t.plan):
        m.result = finish_trial(t, "ok", None, None)


def _train_round(ready: Sequence[Member], stopped: Callable[[Member], TrialResult]) -> None:
    """One ``Train`` action of every member in ``ready``, as one batched epoch."""
    trials = [m.trial for m in ready]
    flops_now = []
    for t in trials:
        action = t.plan[t.done]
        for group in t.optimizer.param_groups:
            group["lr"] = lr_at(t.cfg.train, action.epoch, action.epochs)
        flops_now.append(t._count_flops())
    start = time.perf_counter()
    stack = StackedModels([t.model for t in trials])
    optimizer = BatchedOptimizer(trials[0].cfg.train.optimizer, [t.optimizer for t in trials],
                                 stack.names)
    optimizer.load(stack.params)
    masks = stacked_masks([t.active_masks() for t in trials], stack)
    stats = train_packed_epoch(stack, [t.train_loader for t in trials], optimizer, masks,
                               trials[0].device, amp=trials[0].cfg.train.amp)
    stack.write_back()
    optimizer.store()
    share = (time.perf_counter() - start) / len(trials)  # each member's share of the epoch
    for m, st, f in zip(ready, stats, flops_now, strict=True):
        epoch = len(m.trial.history) + 1
        if not math.isfinite(st.loss):  # as train_epoch raises Diverged, the epoch unrecorded
            _end(m, "diverged", epoch, f"epoch {epoch}: training loss is {st.loss}")
            continue
        m.trial.last_train = st

        def finish(m: Member = m, f: int = f) -> None:
            m.trial.finish_epoch(share, f, m.on_epoch)
            m.trial.done += 1

        _guard(m, finish, stopped)
