"""The measurements a trial repeats are computed once: the FLOP counting pass per network
structure (a pack's members share it), the connectivity probe while nothing it reads changed."""

from __future__ import annotations

import torch
from torch import nn

from pruning_core.config import TrialConfig
from pruning_core.masking.masks import MaskSet
from pruning_core.masking.targets import prunable_parameters
from pruning_core.measure import metrics
from pruning_core.measure.effective import ConnectivityMemo, connectivity
from pruning_core.measure.metrics import clear_flop_counts, flops
from pruning_core.trials.experiment import run


def _counting(model: nn.Module) -> list[int]:
    """A list that grows by one each time ``model`` runs a forward pass."""
    calls: list[int] = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls


def _mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 20, bias=False), nn.ReLU(), nn.Linear(20, 5, bias=False))


def test_models_of_one_structure_share_one_counting_pass_and_masks_still_count() -> None:
    clear_flop_counts()
    a, b = _mlp(0), _mlp(1)  # a pack's members: one architecture, other weights
    ca, cb = _counting(a), _counting(b)
    ma, mb = MaskSet(prunable_parameters(a)), MaskSet(prunable_parameters(b))
    half = torch.zeros(20, 10, dtype=torch.bool)
    half[:5] = True  # a quarter of layer 0 kept: 300 of its 400 FLOPs removed
    mb.update({"0.weight": half})
    assert flops(a, (10,), ma) == (600, 600)  # 2·(10·20 + 20·5), hand count
    assert flops(b, (10,), mb) == (600, 300)
    assert flops(a, (10,), ma) == (600, 600)
    assert (len(ca), len(cb)) == (1, 0)  # b reused a's pass; a's second call too
    clear_flop_counts()
    assert flops(b, (10,), mb) == (600, 300)  # counted afresh: the same figures
    assert len(cb) == 1


def test_a_different_structure_with_equal_shapes_is_counted_on_its_own() -> None:
    clear_flop_counts()
    torch.manual_seed(0)
    s1 = nn.Sequential(nn.Conv1d(2, 4, 3, stride=1, bias=False))
    s2 = nn.Sequential(nn.Conv1d(2, 4, 3, stride=2, bias=False))  # same weight shape
    m1, m2 = MaskSet(prunable_parameters(s1)), MaskSet(prunable_parameters(s2))
    # 2·Cout·Cin·k·Lout: Lout = 8 (stride 1) and 4 (stride 2) on 10 inputs
    assert flops(s1, (2, 10), m1)[0] == 2 * 4 * 2 * 3 * 8
    assert flops(s2, (2, 10), m2)[0] == 2 * 4 * 2 * 3 * 4
    assert flops(s1, (2, 12), m1)[0] == 2 * 4 * 2 * 3 * 10  # another input shape: recounted


def test_the_count_cache_is_bounded() -> None:
    clear_flop_counts()
    for width in range(metrics._COUNTS_KEPT + 5):
        model = nn.Sequential(nn.Linear(3, width + 1, bias=False))
        assert flops(model, (3,), MaskSet(prunable_parameters(model)))[0] == 2 * 3 * (width + 1)
    assert len(metrics._COUNTS) == metrics._COUNTS_KEPT


def _net() -> tuple[nn.Module, MaskSet]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3))
    masks = MaskSet({n: p for n, p in model.named_parameters() if n.endswith("weight")
                     and n != "4.weight"})
    return model, masks


def test_the_memo_answers_again_only_while_what_the_probe_reads_is_unchanged() -> None:
    model, masks = _net()
    memo = ConnectivityMemo()
    calls = _counting(model)  # the probe is a deep copy: the hook runs on it too
    first = memo(model, masks, (4,))
    assert memo(model, masks, (4,)) is first and len(calls) == 1
    assert first.disconnected == 0
    # other masks: probed again (36 weights kept in layer 2 before, 30 now)
    cut = torch.ones(6, 6, dtype=torch.bool)
    cut[0] = False
    masks.update({"2.weight": cut})
    second = memo(model, masks, (4,))
    assert second is not first and second.kept == first.kept - 6 and len(calls) == 2
    # a weight nobody prunes (4.weight) becoming zero cuts a path: hidden unit 1 of layer 2
    # then feeds nothing, so its 6 kept input weights are disconnected
    with torch.no_grad():
        model[4].weight[:, 1] = 0.0
    third = memo(model, masks, (4,))
    fresh = connectivity(model, masks, (4,))
    assert third is not second and third.disconnected == fresh.disconnected == 6
    assert memo(model, masks, (4,)) is third
    other, _ = _net()  # equal weights and masks, another model object: probed again
    assert memo(other, masks, (4,)) is not third


def test_a_trial_pruned_before_training_probes_once_and_records_the_same_figures() -> None:
    cfg = TrialConfig.model_validate({
        "seed": 0, "model": {"name": "mlp"},
        "data": {"name": "mnist1d", "batch_size": 32, "train_limit": 64, "test_limit": 32},
        "train": {"epochs": 1, "optimizer": "adam", "lr": 0.01},
        "prune": {"criterion": "snip", "sparsity": 0.95}})
    import pruning_core.measure.effective as effective

    seen: list[int] = []
    real = effective.connectivity

    def counted(*args, **kw):  # a fault of no effect: counts the probes a trial runs
        seen.append(1)
        return real(*args, **kw)

    effective.connectivity = counted
    try:
        result = run(cfg)
    finally:
        effective.connectivity = real
    assert result.status == "ok" and len(seen) == 1  # the screen's probe served the record
    assert result.effective_sparsity is not None
    assert result.effective_sparsity >= result.sparsity
