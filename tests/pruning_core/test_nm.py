"""N:M semi-structured sparsity: exact groups for every criterion (also after training steps),
config rules, the 2:4 export's checks and its honest CPU answer."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from pruning_core.base.errors import ConfigError
from pruning_core.config import AllocationConfig, PruneConfig
from pruning_core.masking.compare import check_pattern, n_of_m, nm_groups_ok
from pruning_core.masking.engine import Pruner
from pruning_core.masking.masks import MaskSet
from pruning_core.masking.targets import prunable_parameters
from pruning_core.measure.semistructured import (
    check_semi_structured,
    eligible_layers,
    nm_speedup,
    to_semi_structured,
)

CRITERIA_UNDER_TEST = ["magnitude", "random", "snip", "synflow", "grasp", "wanda", "sparsegpt"]


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 8), nn.ReLU(),
                         nn.Linear(8, 4))


def _group_counts(w: torch.Tensor, m: int) -> torch.Tensor:
    return (w.detach().reshape(w.shape[0], -1, m) != 0).sum(-1)


@pytest.mark.parametrize("criterion", CRITERIA_UNDER_TEST)
def test_every_group_keeps_exactly_n_also_after_training(criterion):
    for seed, (n, m) in enumerate([(2, 4), (1, 4), (3, 4), (1, 2), (4, 8)]):
        net = _net(seed)
        masks = MaskSet(prunable_parameters(net))
        gen = torch.Generator().manual_seed(seed)
        x, y = torch.randn(32, 16, generator=gen), torch.randint(0, 4, (32,), generator=gen)
        p = Pruner(model=net, masks=masks, criterion=criterion, allocation=AllocationConfig(),
                   final_sparsity=1 - n / m, batches=[(x, y)], input_shape=(16,),
                   seed=seed, pattern=(n, m))
        p.step(1 - n / m)
        assert masks.sparsity() == pytest.approx(1 - n / m)
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
        for _ in range(3):  # training steps with mask enforcement (masks.apply after step)
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
            masks.apply()
        for name, w in masks.params.items():
            assert torch.all(_group_counts(masks[name], m) == n), (criterion, n, m, name)
            assert torch.all(_group_counts(w, m) == n), (criterion, n, m, name)


def test_n_of_m_picks_the_best_n_with_ties_to_the_lower_position():
    scores = torch.tensor([[4.0, 1.0, 3.0, 2.0, 1.0, 1.0, 1.0, 1.0]])
    mask = n_of_m(scores, torch.ones_like(scores, dtype=torch.bool), 0, (2, 4))
    assert mask.int().tolist() == [[1, 0, 1, 0, 1, 1, 0, 0]]


def test_n_of_m_on_conv_groups_input_channels_times_kernel():
    scores = torch.arange(2 * 2 * 2 * 1, dtype=torch.float32).reshape(2, 2, 2, 1)  # rows of 4
    mask = n_of_m(scores, torch.ones_like(scores, dtype=torch.bool), 0, (1, 2))
    assert mask.reshape(2, 4).int().tolist() == [[0, 1, 0, 1], [0, 1, 0, 1]]


def test_pattern_sets_sparsity_and_refuses_mismatches_in_one_line():
    assert PruneConfig(pattern={"n": 2, "m": 4}).sparsity == 0.5
    assert PruneConfig(pattern={"n": 3, "m": 3}).sparsity == 0.0
    assert PruneConfig(pattern={"n": 2, "m": 4}, sparsity=0.5).pattern.n == 2
    bad = [({"pattern": {"n": 5, "m": 4}}, "n=5 is more than m=4"),
           ({"pattern": {"n": 0, "m": 4}}, "greater than or equal to 1"),
           ({"pattern": {"n": 2, "m": 4}, "sparsity": 0.9}, "differs from 1 - n/m = 0.5000"),
           ({"pattern": {"n": 2, "m": 4}, "steps": 3}, "set steps: 1"),
           ({"pattern": {"n": 2, "m": 4}, "compare": "row"}, "remove compare"),
           ({"pattern": {"n": 2, "m": 4}, "granularity": "channel"}, "granularity: weight"),
           ({"compare": "nm"}, "compare: nm needs pattern"),
           ({"compare": "row", "granularity": "channel"}, "channel pruning ranks whole")]
    for kw, message in bad:
        with pytest.raises(ValidationError, match=message):
            PruneConfig(**kw)


def test_a_row_length_not_divisible_by_m_is_one_line_naming_the_layer():
    with pytest.raises(ConfigError, match=r"^prune.pattern: fc has rows of 10 weights"):
        check_pattern({"fc": (3, 10)}, (2, 4))
    check_pattern({"conv": (8, 3, 2, 2)}, (2, 4))  # 3*2*2 = 12 inputs per row


def test_unknown_comparison_group_is_named():
    from pruning_core.trials.registries import load_trial_config

    with pytest.raises(ConfigError, match="prune.compare: unknown comparison group 'rows'"):
        load_trial_config({"prune": {"compare": "rows"}})


# ---- 2:4 export -----------------------------------------------------------------------------

def _two_four(rows: int = 32, cols: int = 64, dtype: torch.dtype = torch.float16) -> torch.Tensor:
    w = torch.randn(rows, cols)
    mask = n_of_m(w.abs(), torch.ones_like(w, dtype=torch.bool), 0, (2, 4))
    return (w * mask).to(dtype)


def test_semi_structured_check_accepts_2_4_and_names_each_violation():
    check_semi_structured("fc.weight", _two_four())
    check_semi_structured("fc.weight", _two_four(dtype=torch.bfloat16))
    dense = _two_four()
    dense[3, 4:8] = 1.0
    cases = [(dense, "fc.weight row 3, inputs 4-7 hold 4 nonzeros; 2:4 allows at most 2"),
             (_two_four(dtype=torch.float32), "is torch.float32; convert the model to float16"),
             (_two_four(rows=16), r"has shape \(16, 64\); rows must be a multiple of 32"),
             (torch.zeros(32, 64, 1, dtype=torch.float16), "is 3-D")]
    for w, message in cases:
        with pytest.raises(ConfigError, match=message):
            check_semi_structured("fc.weight", w)


def test_export_off_cuda_is_one_clear_line_and_changes_nothing():
    net = nn.Sequential(nn.Linear(64, 32)).half()
    with torch.no_grad():
        net[0].weight.copy_(_two_four())
    before = net[0].weight.detach().clone()
    with pytest.raises(ConfigError) as exc:
        to_semi_structured(net)
    msg = str(exc.value)
    assert "\n" not in msg and "no semi-structured sparse kernel on cpu" in msg
    assert torch.equal(net[0].weight, before) and not net[0].weight.is_sparse


def test_export_checks_the_format_before_the_device():
    net = nn.Sequential(nn.Linear(64, 32)).half()  # dense: not 2:4
    with pytest.raises(ConfigError, match="2:4 allows at most 2"):
        to_semi_structured(net)


def test_nm_speedup_on_cpu_is_recorded_as_unmeasured_with_the_reason():
    net = nn.Sequential(nn.Linear(64, 32))
    with torch.no_grad():
        net[0].weight.copy_(_two_four(dtype=torch.float32))
    assert eligible_layers(net) == ["0"]
    speed = nm_speedup(net, (64,), 8, "cpu")
    assert speed.speedup is None and speed.latency_ms_nm is None
    assert "no semi-structured sparse kernel on cpu" in speed.note


def test_nm_groups_ok_counts_nonzeros():
    w = torch.tensor([[1.0, 0.0, 2.0, 0.0, 1.0, 1.0, 1.0, 0.0]])
    assert nm_groups_ok(w, 2, 4).tolist() == [[True, False]]


@pytest.mark.parametrize(("pattern", "note"), [
    ({"n": 2, "m": 4}, "no semi-structured sparse kernel on cpu"),
    ({"n": 1, "m": 4}, "1:4 has no semi-structured kernel"),
])
def test_a_trial_records_the_nm_speedup_as_unmeasured_on_cpu(pattern, note):
    from pruning_core.trials.experiment import run
    from pruning_core.trials.registries import load_trial_config

    c = load_trial_config({
        "seed": 0, "model": {"name": "mlp", "options": {"hidden": [32, 16]}},
        "data": {"name": "digits", "batch_size": 64, "train_limit": 256, "test_limit": 100},
        "train": {"epochs": 1, "device": "cpu"},
        "prune": {"criterion": "wanda", "pattern": pattern,
                  "timing": {"name": "after", "pretrain_epochs": 1}},
        "metrics": {"speed": {"warmup": 0, "repeats": 1}},
    })
    r = run(c)
    assert r.status == "ok" and r.sparsity == pytest.approx(1 - pattern["n"] / pattern["m"])
    assert r.nm_speedup is None and r.nm_latency_ms is None and note in r.nm_speedup_note
    assert r.speedup is not None  # the channel-style speed-up is still measured


def test_a_pattern_written_as_text_is_n_of_m():
    """A sweep's choice values are scalars: ``"2:4"`` and ``"none"`` stand for the mapping."""
    assert PruneConfig.model_validate({"pattern": "2:4"}).pattern.model_dump() == {"n": 2, "m": 4}
    assert PruneConfig.model_validate({"pattern": "2:4"}).sparsity == 0.5
    assert PruneConfig.model_validate({"pattern": "none", "sparsity": 0.7}).pattern is None
    with pytest.raises(ValidationError, match="pattern: '2-4' is not N:M"):
        PruneConfig.model_validate({"pattern": "2-4"})
