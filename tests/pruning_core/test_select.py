import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pruning_core.masking.select import keep_topk, kth_largest, top_mask


def test_keeps_highest_and_never_revives():
    scores = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])
    mask = torch.tensor([False, True, True, True, True])
    new = keep_topk(scores, mask, 2)
    assert new.tolist() == [False, True, True, False, False]
    # asking for more than is kept returns only kept weights
    assert keep_topk(scores, mask, 5).tolist() == mask.tolist()


def test_ties_break_by_position_deterministically():
    scores = torch.zeros(6)
    mask = torch.ones(6, dtype=torch.bool)
    assert keep_topk(scores, mask, 3).tolist() == [True, True, True, False, False, False]


def test_nan_scores_rank_last_among_kept():
    scores = torch.tensor([float("nan"), 1.0, float("inf"), -float("inf")])
    new = keep_topk(scores, torch.ones(4, dtype=torch.bool), 3)
    assert new.tolist() == [False, True, True, True]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([-float("inf"), -1.0, 0.0, 0.5, 1.0, 2.0]), min_size=1,
                max_size=40), st.integers(0, 45))
def test_top_mask_equals_stable_sort_selection(values, k):
    flat = torch.tensor(values)
    expect = torch.zeros_like(flat, dtype=torch.bool)
    expect[torch.argsort(flat, descending=True, stable=True)[:k]] = True
    assert torch.equal(top_mask(flat, k), expect)


def test_float64_scores_are_ranked_in_float64():
    # distinct in float64, all +inf (one tie) in float32: a cast would keep by position
    scores = torch.tensor([1e300, 3e300, 2e300, 5e299], dtype=torch.float64)
    assert torch.isinf(scores.float()).all()
    new = keep_topk(scores, torch.ones(4, dtype=torch.bool), 2)
    assert new.tolist() == [False, True, True, False]


@pytest.mark.parametrize("seed", range(5))
def test_the_sort_threshold_cuda_uses_is_the_kthvalue_one(seed):
    g = torch.Generator().manual_seed(seed)
    flat = torch.randint(0, 20, (997,), generator=g).float()  # many ties
    flat[torch.randperm(997, generator=g)[:100]] = float("-inf")  # already pruned
    for k in (1, 2, 97, 500, 896, 897, 996):
        by_sort = kth_largest(flat, k, "sort")
        assert by_sort == kth_largest(flat, k, "kthvalue")
        assert by_sort == torch.sort(flat, descending=True).values[k - 1]  # by definition
