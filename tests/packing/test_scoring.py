"""Batched scoring: one vmapped pass scores a pack's members, and the masks stay the solo ones."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from pruning_core.config import AllocationConfig
from pruning_core.masking.engine import Pruner
from pruning_core.masking.masks import MaskSet
from pruning_core.packing import scoring, stopped_result
from pruning_core.packing.batched import StackedModels
from pruning_core.packing.engine import Member, run_lockstep
from pruning_core.packing.scoring import BATCHED, Ledger, _error, give_scores, scorable
from pruning_core.trials.timing import Train
from pruning_core.trials.trial import Trial

from .helpers import config


@pytest.fixture(autouse=True)
def batched_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests run the batched path on CPU (by default only CUDA batches SNIP/SynFlow)."""
    monkeypatch.setattr(scoring, "DEVICES", {"cpu", "cuda"})


def _trials(model: str, n: int, **over: Any) -> list[Trial]:
    extra: dict[str, Any] = {"model__name": model, **over}
    return [Trial(config(seed=s, **extra)) for s in range(n)]


def _prune_before_training(t: Trial) -> None:
    """The solo code: a trial's actions up to its first epoch."""
    while not isinstance(t.plan[t.done], Train):
        t.execute(t.plan[t.done], None)
        t.done += 1


@pytest.mark.parametrize("model", ["cnn1d", "mlp"])
@pytest.mark.parametrize("criterion,options", [
    ("snip", {}), ("snip", {"mode": "train", "estimator": "per_batch"}),
    ("synflow", {}), ("magnitude", {})])
def test_one_pass_gives_every_member_its_own_scores(model: str, criterion: str,
                                                    options: dict[str, Any]) -> None:
    trials = _trials(model, 3, prune__criterion=criterion, prune__criterion_options=options,
                     prune__score_batches=2)
    for t in trials[1:]:  # members already pruned differently: scores of masked networks
        t.pruner.step(0.3 + 0.2 * t.cfg.seed)
    pruners = [t.pruner for t in trials]
    names = list(pruners[0].masks.params)
    batched = BATCHED.get(criterion).fn(StackedModels([t.model for t in trials]), pruners, names)
    for k, p in enumerate(pruners):
        own = p.scores()
        mine = {n: batched[n][k] for n in names}
        if criterion == "magnitude":
            assert all(torch.equal(own[n], mine[n]) for n in names)
        else:  # another summation order: the last bits differ, nothing more
            assert max(_error(own, mine)) < 1e-4
        # another member's scores are not these (each member ran on its own weights)
        other = {n: batched[n][(k + 1) % 3] for n in names}
        assert max(_error(own, other)) > 1e-2


def _linear(weights: list[float]) -> tuple[nn.Linear, Pruner]:
    layer = nn.Linear(len(weights), 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weights]))
    masks = MaskSet({"weight": layer.weight})
    pruner = Pruner(model=layer, masks=masks, criterion="magnitude", batches=[],
                    input_shape=(len(weights),), allocation=AllocationConfig(name="global"),
                    final_sparsity=0.5)
    return layer, pruner


def test_given_scores_too_close_to_the_boundary_are_scored_again_alone() -> None:
    # |w| keeps weights 2 and 3 (2.99999 < 3.00001); scores off in the last digits swap the
    # boundary pair, and would keep 1 and 3
    _, pruner = _linear([1.0, 2.99999, 3.00001, 4.0])
    pruner.given = ({"weight": torch.tensor([[1.0, 3.00001, 2.99999, 4.0]])}, (1e-3, 1e-3))
    pruner.step(0.5)
    assert pruner.masks["weight"].tolist() == [[False, False, True, True]]
    assert (pruner.given_used, pruner.given_rescored) == (0, 1)


def test_given_scores_with_a_clear_margin_choose_the_masks() -> None:
    _, pruner = _linear([1.0, 2.0, 3.0, 4.0])
    # off by 1e-4 of the largest, within the claimed 1e-3: every kept score beats every
    # dropped one by far more than 2 x 4e-3, so these choose the solo masks without rescoring
    pruner.given = ({"weight": torch.tensor([[1.0004, 1.9996, 3.0004, 3.9996]])}, (0.0, 1e-3))
    pruner.step(0.5)
    assert pruner.masks["weight"].tolist() == [[False, False, True, True]]
    assert (pruner.given_used, pruner.given_rescored) == (1, 0)
    assert pruner.given is None  # used once


def test_scores_of_an_allocation_beyond_order_are_never_taken() -> None:
    trials = _trials("mlp", 2, prune__criterion="snip", prune__allocation={"name": "lamp"})
    assert not scorable(trials[0].pruner)
    assert give_scores([t.model for t in trials], [t.pruner for t in trials], [0.8, 0.8]) == 0
    assert all(t.pruner.given is None for t in trials)


def test_the_ledger_declines_a_criterion_whose_members_mostly_scored_again() -> None:
    trials = _trials("cnn1d", 3, prune__criterion="synflow")
    ledger = Ledger()
    pruners = [t.pruner for t in trials]
    assert give_scores([t.model for t in trials], pruners, [0.5] * 3, ledger) == 2  # 0: alone
    assert pruners[0].given is not None and pruners[0].given[1] == (0.0, 0.0)  # its own
    key = next(iter(ledger.last))
    for p in pruners:
        p.given = None
    pruners[1].given_rescored += 1
    pruners[2].given_rescored += 1  # as if both steps had found their scores too close
    assert give_scores([t.model for t in trials], pruners, [0.5] * 3, ledger) == 0
    assert key in ledger.declined and all(p.given is None for p in pruners)


def test_a_pack_scores_in_one_pass_and_every_member_keeps_its_solo_masks() -> None:
    over: dict[str, Any] = {"train__epochs": 1, "prune__schedule": "exponential",
                            "prune__steps": 2}
    cfgs = [config(seed=s, prune__criterion=c, prune__sparsity=sp, **over)
            for s, (c, sp) in enumerate([("snip", 0.8), ("snip", 0.75), ("snip", 0.7),
                                         ("synflow", 0.8), ("synflow", 0.6),
                                         ("magnitude", 0.75), ("magnitude", 0.5),
                                         ("random", 0.8)])]
    members = [Member(i, Trial(c), lambda r: None) for i, c in enumerate(cfgs)]
    run_lockstep(members, None, lambda m: stopped_result(m.trial.cfg, m.last_report),
                 [False] * len(members))
    used = [m.trial.pruner.given_used for m in members]
    # each group's first member takes its own scores; magnitude's are bitwise the solo ones
    # (two steps each); random scores alone. The others took batched scores where the check
    # let them, and scored alone where not: either way, the solo masks
    assert used[0] >= 1 and used[3] >= 1 and used[5:7] == [2, 2] and used[7] == 0
    for m, cfg in zip(members, cfgs, strict=True):
        alone = Trial(cfg)
        _prune_before_training(alone)
        assert m.trial.masks.masks.keys() == alone.masks.masks.keys()
        for name, mask in alone.masks.masks.items():
            assert torch.equal(m.trial.masks[name], mask), (cfg.prune.criterion, name)


def test_would_take_answers_the_check_without_pruning() -> None:
    _, pruner = _linear([1.0, 2.99999, 3.00001, 4.0])
    close = {"weight": torch.tensor([[1.0, 3.00001, 2.99999, 4.0]])}
    clear = {"weight": torch.tensor([[1.0, 2.0, 3.0, 4.0]])}
    assert not pruner.would_take(0.5, close, (1e-3, 1e-3))
    assert pruner.would_take(0.5, clear, (1e-3, 1e-3))
    assert bool(pruner.masks["weight"].all()) and pruner.given_used == pruner.given_rescored == 0


def test_on_cpu_by_default_only_exact_scores_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scoring, "DEVICES", {"cuda"})
    trials = {c: _trials("mlp", 1, prune__criterion=c)[0] for c in ("snip", "synflow",
                                                                     "magnitude")}
    assert {c: scorable(t.pruner) for c, t in trials.items()} == {
        "snip": False, "synflow": False, "magnitude": True}
