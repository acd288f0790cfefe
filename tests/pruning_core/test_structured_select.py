import logging
import re

import pytest
import torch
from torch import nn

from pruning_core.base.errors import ConfigError
from pruning_core.structured import (
    ChannelGroup,
    ChannelPruning,
    Member,
    groups,
    node_sparsity,
    prune_channels,
    rescaled_fraction,
    select_channels,
)


def _group(gid: int, size: int, layer: str) -> ChannelGroup:
    idx = torch.arange(size)
    return ChannelGroup(gid, size, (Member(layer, "out", idx, idx),))


GS = [_group(0, 3, "a"), _group(1, 2, "b")]


def test_global_topk_over_groups():
    scores = {0: torch.tensor([5.0, 1.0, 3.0]), 1: torch.tensor([4.0, 2.0])}
    keep = select_channels(scores, GS, 0.4)  # 5 channels, remove 2: keep 5, 4, 3
    assert keep[0].tolist() == [True, False, True] and keep[1].tolist() == [True, False]
    assert node_sparsity(GS, keep) == pytest.approx(0.4)


def test_ties_break_by_group_then_position():
    scores = {0: torch.ones(3), 1: torch.ones(2)}
    keep = select_channels(scores, GS, 0.4)
    # the first three positions win the tie; the floor then keeps group 1's first channel
    assert keep[0].tolist() == [True, True, True] and keep[1].tolist() == [True, False]


def test_nesting_never_revives_a_channel():
    scores = {0: torch.tensor([9.0, 1.0, 3.0]), 1: torch.tensor([4.0, 2.0])}
    before = {0: torch.tensor([False, True, True]), 1: torch.tensor([True, True])}
    keep = select_channels(scores, GS, 0.6, before)  # keep 2 of the 4 still kept: 4 and 3
    assert keep[0].tolist() == [False, False, True] and keep[1].tolist() == [True, False]


def test_never_empties_a_group_and_warns(caplog):
    scores = {0: torch.tensor([5.0, 6.0, 7.0]), 1: torch.tensor([0.1, 0.2])}
    with caplog.at_level(logging.WARNING):
        keep = select_channels(scores, GS, 0.8)  # keep 1 overall: 7.0, but group 1 keeps 0.2
    assert keep[0].tolist() == [False, False, True] and keep[1].tolist() == [False, True]
    assert "group 1 (b) would be emptied" in caplog.text


def test_bad_sparsity():
    with pytest.raises(ConfigError, match="sparsity"):
        select_channels({0: torch.ones(3), 1: torch.ones(2)}, GS, 1.0)


def test_rescaled_fraction_by_hand():
    # prune_now = (s_i - pruned) / (1 - pruned)
    assert rescaled_fraction(0.5, 0.0) == pytest.approx(0.5)
    assert rescaled_fraction(0.7, 0.5) == pytest.approx(0.2 / 0.5)
    assert rescaled_fraction(0.8, 0.7) == pytest.approx(0.1 / 0.3)
    assert rescaled_fraction(0.5, 0.6) == 0.0  # a floor already kept more: prune nothing


def test_snap_it_schedule_rescaled_to_what_is_left(caplog):
    # LeNet-300-100-like MLP with hidden (10, 10): group A = layer 1 (10 units, huge weights),
    # group B = layer 3 (10 units, tiny weights); l1_filter ranks all of A above all of B.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 10), nn.ReLU(), nn.Linear(10, 10),
                          nn.ReLU(), nn.Linear(10, 3))
    with torch.no_grad():
        model[1].weight.mul_(1000)
    gs = groups(model, (4,))
    a = next(g for g in gs if g.layers == ["1"])
    b = next(g for g in gs if g.layers == ["3"])
    cfg = ChannelPruning(criterion="l1_filter", sparsity=0.9, schedule="snip_it", steps=2,
                         input_shape=(4,))
    with caplog.at_level(logging.INFO, logger="pruning_core.structured"):
        keep = prune_channels(model, gs, cfg)
    # schedule 0.5, 0.7, 0.8, 0.9 over 20 channels; B is emptied every step and keeps one:
    # step 1: remove 10 (all of B)      -> keep 10 A + 1 B = 11, pruned 9/20  = 0.45
    # step 2: (0.7-0.45)/0.55 * 11 = 5  -> keep 6 A + 1 B  = 7,  pruned 13/20 = 0.65
    # step 3: (0.8-0.65)/0.35 * 7  = 3  -> keep 4 A + 1 B  = 5,  pruned 0.75
    # step 4: (0.9-0.75)/0.25 * 5  = 3  -> keep 2 A + 1 B  = 3,  pruned 0.85
    reached = [float(x) for x in re.findall(r"node sparsity (\d\.\d+)", caplog.text)]
    assert reached == pytest.approx([0.45, 0.65, 0.75, 0.85])
    assert int(keep[a.id].sum()) == 2 and int(keep[b.id].sum()) == 1
    # the two kept A units are those with the largest L1 rows
    best = model[1].weight.abs().sum(1).topk(2).indices.sort().values
    assert torch.nonzero(keep[a.id]).flatten().tolist() == best.tolist()
