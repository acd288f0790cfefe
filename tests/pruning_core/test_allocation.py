import math

import pytest
import torch

from pruning_core.base.errors import ConfigError
from pruning_core.config import AllocationConfig
from pruning_core.masking.allocation import (
    ALLOCATIONS,
    AllocationContext,
    largest_remainder,
    water_fill,
)

SHAPES = {"conv1": (8, 3, 3, 3), "conv2": (16, 8, 3, 3), "fc1": (32, 16), "fc2": (10, 32)}
SIZES = {n: math.prod(s) for n, s in SHAPES.items()}
N = sum(SIZES.values())


def ctx(sparsity, options=None, kept=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    scores = {n: torch.rand(s, generator=g) for n, s in SHAPES.items()}
    masks = {n: torch.ones(s, dtype=torch.bool) for n, s in SHAPES.items()}
    return AllocationContext(
        shapes=SHAPES, kept=kept or dict(SIZES), sparsity=sparsity, final_sparsity=sparsity,
        options=options or AllocationConfig(), scores=scores, masks=masks,
    )


#: owl reads a model's activations, which these contexts lack: tests/pruning_core/test_owl.py
SCORE_BASED = [n for n in ALLOCATIONS.names() if n not in ("explicit", "owl")]


@pytest.mark.parametrize("name", SCORE_BASED)
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.97])
def test_total_keep_is_exact(name, sparsity):
    counts = ALLOCATIONS.get(name)().keep_counts(ctx(sparsity, AllocationConfig(name=name)))
    assert sum(counts.values()) == round((1 - sparsity) * N)
    assert all(0 <= counts[n] <= SIZES[n] for n in SHAPES)


@pytest.mark.parametrize("name", SCORE_BASED)
def test_dense_first_last_and_min_density(name):
    opts = AllocationConfig(name=name, keep_first_dense=True, keep_last_dense=True,
                            min_density=0.05)
    counts = ALLOCATIONS.get(name)().keep_counts(ctx(0.7, opts))
    assert counts["conv1"] == SIZES["conv1"] and counts["fc2"] == SIZES["fc2"]
    assert all(counts[n] >= math.ceil(0.05 * SIZES[n]) for n in SHAPES)
    assert sum(counts.values()) == round(0.3 * N)


@pytest.mark.parametrize("name", SCORE_BASED)
def test_nesting_cap(name):
    kept = {n: v // 2 for n, v in SIZES.items()}  # every layer already half pruned
    counts = ALLOCATIONS.get(name)().keep_counts(ctx(0.8, AllocationConfig(name=name), kept))
    assert all(counts[n] <= kept[n] for n in SHAPES)
    assert sum(counts.values()) == round(0.2 * N)


def test_uniform_gives_each_layer_the_target():
    counts = ALLOCATIONS.get("uniform")().keep_counts(ctx(0.75))
    for n, size in SIZES.items():
        assert abs(counts[n] - 0.25 * size) <= 1


@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_erk_against_hand_computation(sparsity):
    # ERK: density_l = eps * (sum(shape)/prod(shape)); solve eps for 90% sparsity; any layer with
    # density > 1 is made dense and eps re-solved.
    raw = {n: sum(s) / math.prod(s) for n, s in SHAPES.items()}
    budget = round((1 - sparsity) * N)
    dense: set[str] = set()
    while True:
        eps = (budget - sum(SIZES[n] for n in dense)) / sum(
            raw[n] * SIZES[n] for n in SHAPES if n not in dense)
        over = {n for n in SHAPES if n not in dense and eps * raw[n] > 1}
        if not over:
            break
        dense |= over
    expect = {n: SIZES[n] if n in dense else eps * raw[n] * SIZES[n] for n in SHAPES}
    counts = ALLOCATIONS.get("erk")().keep_counts(ctx(sparsity, AllocationConfig(name="erk")))
    for n in SHAPES:
        assert abs(counts[n] - expect[n]) <= 1, (n, counts[n], expect[n])
    # at 50% the small first conv overflows (density > 1): the redistribution path is exercised
    assert (sparsity == 0.5) == bool(dense)


def test_global_keeps_the_globally_best():
    c = ctx(0.9)
    # make every score of fc1 larger than any other: fc1 must be kept first
    c.scores["fc1"] = c.scores["fc1"] + 10
    counts = ALLOCATIONS.get("global")().keep_counts(c)
    k = round(0.1 * N)
    assert counts["fc1"] == min(SIZES["fc1"], k)


def test_global_min_density_prevents_collapse():
    c = ctx(0.95, AllocationConfig(min_density=0.02))
    c.scores["conv1"] = c.scores["conv1"] - 10  # conv1 would collapse under one threshold
    bare = ctx(0.95)
    bare.scores["conv1"] = bare.scores["conv1"] - 10
    assert ALLOCATIONS.get("global")().keep_counts(bare)["conv1"] == 0  # collapses without it
    counts = ALLOCATIONS.get("global")().keep_counts(c)
    assert counts["conv1"] == math.ceil(0.02 * SIZES["conv1"])
    assert sum(counts.values()) == round(0.05 * N)


def test_explicit_by_name_and_position():
    vec = {"conv1": 0.5, "conv2": 0.9, "fc1": 0.8, "fc2": 0.0}
    alloc = ALLOCATIONS.get("explicit")()
    opts = AllocationConfig(name="explicit", layer_sparsity=vec)
    target = alloc.target_sparsity(SHAPES, opts, 0.3)
    assert target == pytest.approx(sum(vec[n] * SIZES[n] for n in SHAPES) / N)
    c = ctx(target, opts)
    counts = alloc.keep_counts(c)
    assert counts == {n: round(SIZES[n] * (1 - vec[n])) for n in SHAPES}
    by_pos = AllocationConfig(name="explicit", layer_sparsity=list(vec.values()))
    assert alloc.keep_counts(ctx(target, by_pos)) == counts
    # an intermediate schedule step scales every layer proportionally
    half = ctx(target / 2, opts)
    half.final_sparsity = target
    assert alloc.keep_counts(half)["conv2"] == round(SIZES["conv2"] * (1 - 0.45))


def test_explicit_errors_name_the_field():
    alloc = ALLOCATIONS.get("explicit")()
    with pytest.raises(ConfigError, match="layer_sparsity: 2 values for 4 prunable layers"):
        alloc.target_sparsity(SHAPES, AllocationConfig(name="explicit",
                                                       layer_sparsity=[0.1, 0.2]), 0.5)
    with pytest.raises(ConfigError, match="unknown layers \\['fc9'\\]"):
        alloc.target_sparsity(SHAPES, AllocationConfig(
            name="explicit", layer_sparsity={**dict.fromkeys(SHAPES, 0.5), "fc9": 0.1}), 0.5)
    with pytest.raises(ConfigError, match="layer_sparsity: required"):
        alloc.target_sparsity(SHAPES, AllocationConfig(name="explicit"), 0.5)


@pytest.mark.parametrize("name", SCORE_BASED)
def test_impossible_budget_is_a_config_error(name):
    opts = AllocationConfig(name=name, keep_first_dense=True, keep_last_dense=True)
    with pytest.raises(ConfigError, match="prune.sparsity"):
        ALLOCATIONS.get(name)().keep_counts(ctx(0.995, opts))


def test_water_fill_and_rounding_helpers():
    out = water_fill({"a": 1.0, "b": 1.0, "c": 2.0}, {"a": 0, "b": 0, "c": 0},
                     {"a": 10, "b": 1, "c": 100}, 21)
    # b overflows its cap of 1; the other 20 split 1:2 between a and c
    assert out["b"] == 1 and sum(out.values()) == 21 and abs(out["c"] - 2 * out["a"]) <= 2
    assert largest_remainder({"a": 1.5, "b": 1.5, "c": 1.0}, {"a": 5, "b": 5, "c": 5}, 4) == {
        "a": 2, "b": 1, "c": 1}


def test_lamp_scores_and_no_collapse():
    from pruning_core.masking.allocation import LAMP

    w = torch.tensor([1.0, 3.0, 2.0])
    # sorted ascending 1, 2, 3: LAMP = 1/(1+4+9), 4/(4+9), 9/9
    assert LAMP().transform(w, torch.ones(3, dtype=torch.bool)).tolist() == pytest.approx(
        [1 / 14, 1.0, 4 / 13])
    c = ctx(0.99)
    c.scores["conv1"] = c.scores["conv1"] * 1e-6  # tiny scores: a global threshold kills conv1
    assert ALLOCATIONS.get("global")().keep_counts(c)["conv1"] == 0
    counts = ALLOCATIONS.get("lamp")().keep_counts(c)
    assert all(v >= 1 for v in counts.values()) and sum(counts.values()) == round(0.01 * N)


def test_lamp_refuses_signed_scores():
    from pruning_core.masking.allocation import LAMP

    # squared, -5 would outrank 3: GraSP's most harmful weight would be kept first
    with pytest.raises(ConfigError, match="prune.allocation: lamp needs non-negative"):
        LAMP().transform(torch.tensor([-5.0, 3.0, 1.0]), torch.ones(3, dtype=torch.bool))


def test_lamp_with_a_signed_criterion_is_a_config_error():
    from torch import nn

    from pruning_core.masking.engine import Pruner
    from pruning_core.masking.masks import MaskSet
    from pruning_core.masking.targets import prunable_parameters

    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with pytest.raises(ConfigError, match="grasp scores are signed"):
        Pruner(model=model, masks=MaskSet(prunable_parameters(model)), criterion="grasp",
               allocation=AllocationConfig(name="lamp"), final_sparsity=0.5, batches=[],
               input_shape=(4,))


def test_lamp_keeps_float64_scores_beyond_float32_range():
    from pruning_core.masking.allocation import LAMP

    w = torch.tensor([1e300, 3e300, 2e300], dtype=torch.float64)
    out = LAMP().transform(w, torch.ones(3, dtype=torch.bool))
    assert out.dtype == torch.float64
    assert out.tolist() == pytest.approx([1 / 14, 1.0, 4 / 13])  # same as [1, 3, 2]
