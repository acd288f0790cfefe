import itertools

import pytest
import torch

from pruning_core.config import AllocationConfig
from pruning_core.masking.allocation import ALLOCATIONS
from pruning_core.masking.criteria import CRITERIA
from pruning_core.masking.engine import Pruner
from pruning_core.masking.masks import MaskSet
from pruning_core.masking.schedules import SCHEDULES, sparsity_steps
from pruning_core.masking.targets import prunable_parameters
from tests.conftest import tiny_convnet

ALLOCS = [n for n in ALLOCATIONS.names() if n != "explicit"]


def pruner(name, allocation, batches, final, seed=0):
    model = tiny_convnet()
    masks = MaskSet(prunable_parameters(model))
    return Pruner(model=model, masks=masks, criterion=name,
                  allocation=AllocationConfig(name=allocation), final_sparsity=final,
                  batches=batches, input_shape=(3, 8, 8), seed=seed)


def _compatible(name: str, allocation: str) -> bool:
    """LAMP squares scores: signed criteria are refused (tested in test_allocation.py)."""
    return not (ALLOCATIONS.get(allocation).needs_unsigned_scores and CRITERIA.get(name).signed)


PAIRS = [c for c in itertools.product(CRITERIA.names(), ALLOCS) if _compatible(*c)]


@pytest.mark.parametrize(("name", "allocation"), PAIRS)
def test_exact_keep_counts_nesting_and_zeroed_weights(name, allocation, batches):
    p = pruner(name, allocation, batches, 0.9)
    n = p.masks.numel()
    previous = {k: m.clone() for k, m in p.masks.masks.items()}
    for s in sparsity_steps("snip_it", 0.9, 3):
        p.step(s)
        assert p.masks.kept() == round((1 - s) * n)  # within one weight: exactly the rounding
        for k, m in p.masks.masks.items():
            assert not (m & ~previous[k]).any(), "a step revived a weight"
            assert (p.masks.params[k][~m] == 0).all()
        previous = {k: m.clone() for k, m in p.masks.masks.items()}


@pytest.mark.parametrize("schedule", SCHEDULES.names())
def test_every_schedule_reaches_target(schedule, batches):
    p = pruner("snip", "global", batches, 0.95)
    for s in sparsity_steps(schedule, 0.95, 4):
        p.step(s)
    assert abs(p.masks.sparsity() - 0.95) <= 1 / p.masks.numel()


@pytest.mark.parametrize("name", CRITERIA.names())
def test_deterministic_under_seed(name, batches):
    a, b = pruner(name, "global", batches, 0.8), pruner(name, "global", batches, 0.8)
    a.step(0.8)
    b.step(0.8)
    assert all(torch.equal(a.masks[k], b.masks[k]) for k in a.masks)


def test_iterative_rescoring_differs_from_one_shot(batches):
    """SNIP-it rescores the masked network at every step, so it is not one-shot SNIP."""
    one, it = pruner("snip", "global", batches, 0.95), pruner("snip", "global", batches, 0.95)
    one.step(0.95)
    for s in sparsity_steps("snip_it", 0.95, 5):
        it.step(s)
    assert one.masks.kept() == it.masks.kept()
    assert any(not torch.equal(one.masks[k], it.masks[k]) for k in one.masks)
