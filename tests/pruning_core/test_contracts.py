"""The contract classes of ``pruning_core.testing`` run against every registered criterion,
allocation and dense cache: registering one is enough to have it checked."""

from __future__ import annotations

from typing import Any

from pruning_core.masking.allocation import ALLOCATIONS
from pruning_core.masking.criteria import CRITERIA
from pruning_core.testing import AllocationContract, CriterionContract, DenseCacheContract
from pruning_core.trials.dense_cache import LocalDenseCache
from pruning_core.trials.reference import MemoryCache

#: allocations that need options to mean anything: the options the contract runs them with
_ALLOCATION_OPTIONS: dict[str, dict[str, Any]] = {
    "explicit": {"layer_sparsity": {"0.weight": 0.5, "4.weight": 0.9, "6.weight": 0.2}},
}

for _name in CRITERIA.names():
    globals()[f"TestCriterion_{_name}"] = type(
        f"TestCriterion_{_name}", (CriterionContract,), {"name": _name})

for _name in ALLOCATIONS.names():
    globals()[f"TestAllocation_{_name}"] = type(
        f"TestAllocation_{_name}", (AllocationContract,),
        {"name": _name, "options": _ALLOCATION_OPTIONS.get(_name, {})})


class TestLocalDenseCache(DenseCacheContract):
    def make_cache(self, tmp_path: Any) -> Any:
        return LocalDenseCache(tmp_path / "dense")


class TestMemoryCache(DenseCacheContract):
    def make_cache(self, tmp_path: Any) -> Any:
        return MemoryCache()


def test_every_registered_name_has_a_contract_class() -> None:
    names = {k for k in globals() if k.startswith(("TestCriterion_", "TestAllocation_"))}
    assert len(names) == len(CRITERIA.names()) + len(ALLOCATIONS.names()) >= 10
