"""The pack-compatibility rule, the split into packs, and ``budget.pack: auto``'s decision."""

from __future__ import annotations

import pytest

from pruning_core.packing import (
    PACK_FIELDS,
    StepTiming,
    choose_packed,
    decide,
    measure_steps,
    pack_key,
    run_pack,
    split_packs,
)

from .helpers import config, solo


def test_members_may_differ_in_what_the_rule_leaves_free():
    a = config()
    b = config(seed=7, train__lr=0.1, train__weight_decay=1e-3, train__momentum=0.5,
               train__lr_schedule="cosine", prune__criterion="grasp", prune__sparsity=0.5,
               prune__schedule="exponential", prune__steps=3, prune__allocation="erk",
               data__label_noise=0.1, prune__timing={"name": "before"})
    assert pack_key(a) == pack_key(b) is not None


@pytest.mark.parametrize("change", [
    {"model__options": {"channels": 8}}, {"data__batch_size": 16}, {"data__train_limit": 64},
    {"train__epochs": 3}, {"train__optimizer": "sgd"}, {"prune__timing": {"name": "after"}},
    {"train__amp": "bf16"}, {"model__name": "mlp"}, {"prune__granularity": "channel",
                                                      "prune__compact": False},
])
def test_what_fixes_shapes_and_loop_splits_packs(change):
    assert pack_key(config(**change)) != pack_key(config())


def test_the_rule_is_declared_once():
    assert "model.name" in PACK_FIELDS and "data.batch_size" in PACK_FIELDS
    assert "prune.criterion" not in PACK_FIELDS and "seed" not in PACK_FIELDS
    assert pack_key(config(prune__granularity="channel")) is None  # compacted: runs alone


def test_split_keeps_every_config_once_in_order():
    cfgs = [config(), config(data__batch_size=16), config(seed=1),
            config(prune__granularity="channel"), config(data__batch_size=16, seed=2),
            config(prune__granularity="channel", seed=3)]
    assert split_packs(cfgs) == [[0, 2], [1, 4], [3], [5]]


def test_incompatible_configs_run_in_sub_packs_and_nothing_is_dropped():
    cfgs = [config(train__epochs=1), config(train__epochs=1, data__batch_size=64, seed=1),
            config(train__epochs=1, seed=2, prune__criterion="magnitude")]
    results = run_pack(cfgs, batched=True)
    assert len(results) == 3 and all(r.status == "ok" for r in results)
    for cfg, r in zip(cfgs, results, strict=True):
        s, _ = solo(cfg)
        assert r.layer_sparsity == s.layer_sparsity
        assert r.test_loss == pytest.approx(s.test_loss, rel=1e-4)


@pytest.mark.parametrize(("timing", "packed"), [
    (StepTiming(members=32, solo_s=0.010, packed_s=0.100), True),   # 3.2x
    (StepTiming(members=32, solo_s=0.010, packed_s=0.478), False),  # 0.67x (cnn1d, CPU)
    (StepTiming(members=8, solo_s=0.010, packed_s=0.080), False),   # a tie: never lose
    (StepTiming(members=1, solo_s=0.010, packed_s=0.001), False),   # nothing to pack
])
def test_decide_picks_the_faster(timing, packed):
    assert decide(timing) is packed


def test_decide_with_a_margin():
    t = StepTiming(members=4, solo_s=0.01, packed_s=0.03)  # 1.33x
    assert t.speedup == pytest.approx(4 / 3)
    assert decide(t) and not decide(t, min_speedup=1.5)


def test_choose_packed_times_the_pack_it_is_given():
    seen = []

    def measure(cfgs):
        seen.append(len(cfgs))
        return StepTiming(len(cfgs), 0.01, 0.02 if len(cfgs) > 4 else 0.5)

    assert choose_packed([config()] * 8, measure=measure) is True
    assert choose_packed([config()] * 3, measure=measure) is False
    assert choose_packed([config()], measure=measure) is False  # alone: nothing measured
    assert seen == [8, 3]
    # a step barely faster packed is noise on a loaded machine: one at a time
    assert choose_packed([config()] * 4, measure=lambda c: StepTiming(4, 0.01, 0.035)) is False
    assert choose_packed([config()] * 4, measure=lambda c: StepTiming(4, 0.01, 0.035),
                         min_speedup=1.0) is True


def test_measure_steps_times_both_ways():
    mlp = {"model__name": "mlp", "model__options": {"hidden": [16]}}
    cfgs = [config(**mlp), config(seed=1, **mlp)]
    t = measure_steps(cfgs, steps=1, warmup=0)
    assert t.members == 2 and t.solo_s > 0 and t.packed_s > 0
