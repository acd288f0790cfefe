"""Contract tests written once, run against every implementation (as ``optuna.testing`` does for
samplers). A new criterion is checked by one subclass::

    class TestMyCriterion(CriterionContract):
        name = "my_criterion"

``tests/pruning_core/test_contracts.py`` makes one subclass per registered criterion, allocation
and dense cache, so registering is enough to be checked. Imports pytest (a test dependency).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from .config import AllocationConfig
from .masking.allocation import ALLOCATIONS, AllocationContext
from .masking.criteria import CRITERIA
from .masking.criteria.base import ScoreContext
from .masking.targets import prunable_parameters


def small_net() -> nn.Module:
    """Conv + BatchNorm + Linear: buffers, two layer kinds, an input of shape (1, 8)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(1, 4, 3), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(24, 3))


def _snapshot(model: nn.Module) -> dict[str, Any]:
    return {"state": {k: v.clone() for k, v in model.state_dict().items()},
            "grad": [p.grad for p in model.parameters()],
            "requires_grad": [p.requires_grad for p in model.parameters()],
            "training": [m.training for m in model.modules()]}


class CriterionContract:
    """What every weight criterion promises (``pruning_core/masking/criteria/base.py``)."""

    name: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}
    input_shape: ClassVar[tuple[int, ...]] = (1, 8)
    make_model: ClassVar[Callable[[], nn.Module]] = staticmethod(small_net)

    def context(self, model: nn.Module, seed: int = 0) -> ScoreContext:
        params = prunable_parameters(model)
        gen = torch.Generator().manual_seed(7)
        batches = [(torch.randn(5, *self.input_shape, generator=gen),
                    torch.randint(0, 3, (5,), generator=gen)) for _ in range(2)]
        criterion = CRITERIA.get(self.name)
        return ScoreContext(model=model, params=params,
                            masks={n: torch.ones_like(p, dtype=torch.bool)
                                   for n, p in params.items()},
                            batches=batches, input_shape=self.input_shape,
                            loss_fn=nn.functional.cross_entropy,
                            generator=torch.Generator().manual_seed(seed),
                            options=criterion.options.model_validate(self.options))

    def scores(self, model: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
        return CRITERIA.get(self.name)(self.context(model, seed))

    def test_scores_are_shaped_like_the_weights_and_finite(self) -> None:
        model = self.make_model()
        scores = self.scores(model)
        params = prunable_parameters(model)
        assert set(scores) == set(params)
        for n, p in params.items():
            assert scores[n].shape == p.shape, n
            assert bool(torch.isfinite(scores[n]).all()), n
            if not CRITERIA.get(self.name).signed:
                assert bool((scores[n] >= 0).all()), f"{n}: unsigned criterion, negative score"

    def test_the_model_is_left_as_found(self) -> None:
        model = self.make_model()
        model.train()
        before = _snapshot(model)
        self.scores(model)
        after = _snapshot(model)
        for k, v in before["state"].items():
            assert torch.equal(v, after["state"][k]), f"{k} changed"
        assert all(g is None for g in after["grad"]), ".grad left behind"
        assert after["requires_grad"] == before["requires_grad"]
        assert after["training"] == before["training"]

    def test_the_same_seed_gives_the_same_scores(self) -> None:
        a = self.scores(self.make_model(), seed=3)
        b = self.scores(self.make_model(), seed=3)
        for n in a:
            assert torch.equal(a[n], b[n]), n


def allocation_net() -> nn.Module:
    """Three prunable layers of different sizes (48, 3072 and 96 weights), input (1, 8)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(1, 16, 3), nn.BatchNorm1d(16), nn.ReLU(), nn.Flatten(),
                         nn.Linear(96, 32), nn.ReLU(), nn.Linear(32, 3))


class AllocationContract:
    """What every allocation promises: exact total, caps (nesting) and floors respected. The
    context carries a real model and calibration batches, for allocations that read activations
    (OWL)."""

    name: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}

    def context(self, sparsity: float, kept: dict[str, int] | None = None) -> AllocationContext:
        model = allocation_net()
        params = prunable_parameters(model)
        gen = torch.Generator().manual_seed(0)
        scores = {n: torch.rand(p.shape, generator=gen) for n, p in params.items()}
        batches = [(torch.randn(16, 1, 8, generator=gen), torch.randint(0, 3, (16,),
                                                                        generator=gen))]
        return AllocationContext(
            shapes={n: tuple(p.shape) for n, p in params.items()},
            kept=kept or {n: p.numel() for n, p in params.items()}, sparsity=sparsity,
            final_sparsity=sparsity,
            options=AllocationConfig.model_validate({"name": self.name, **self.options}),
            scores=scores, masks={n: torch.ones_like(p, dtype=torch.bool)
                                  for n, p in params.items()},
            model=model, params=params, batches=batches)

    def counts(self, ctx: AllocationContext) -> dict[str, int]:
        return ALLOCATIONS.get(self.name)().keep_counts(ctx)

    @pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99])
    def test_counts_sum_exactly_to_the_target(self, sparsity: float) -> None:
        ctx = self.context(sparsity)
        allocation = ALLOCATIONS.get(self.name)()
        target = allocation.target_sparsity(dict(ctx.shapes), ctx.options, sparsity)
        ctx.sparsity = ctx.final_sparsity = target
        counts = self.counts(ctx)
        assert set(counts) == set(ctx.shapes)
        assert sum(counts.values()) == ctx.total_keep()
        for n, k in counts.items():
            assert 0 <= k <= ctx.sizes[n], n

    def test_a_second_step_never_regrows_a_layer(self) -> None:
        first = self.counts(self.context(0.5))
        second = self.counts(self.context(0.8, kept=first))
        assert all(second[n] <= first[n] for n in first)


class DenseCacheContract:
    """What a dense cache promises (``pruning_core/trials/dense_cache.py``): ``create`` runs once
    per key, and every later caller gets an equal state."""

    def make_cache(self, tmp_path: Any) -> Any:
        raise NotImplementedError

    def test_create_runs_once_per_key_and_the_state_comes_back(self, tmp_path: Any) -> None:
        cache = self.make_cache(tmp_path)
        calls: list[str] = []

        def create(tag: str) -> Callable[[], dict[str, Any]]:
            def make() -> dict[str, Any]:
                calls.append(tag)
                return {"model": {"w": torch.arange(6.0).view(2, 3)}, "done": 3}
            return make

        first = cache.get_or_create("k1", create("k1"))
        again = cache.get_or_create("k1", create("k1-again"))
        other = cache.get_or_create("k2", create("k2"))
        assert calls == ["k1", "k2"]
        for state in (first, again, other):
            assert state["done"] == 3
            assert torch.equal(state["model"]["w"], torch.arange(6.0).view(2, 3))
