"""A packed member's result equals ``experiment.run`` of its config (issue 20, item 2)."""

from __future__ import annotations

import math

from .helpers import assert_same, config, packed, solo


def _check(cfgs, test_examples=100):
    results, ckpts = packed(cfgs)
    assert len(results) == len(cfgs)
    for cfg, r, c in zip(cfgs, results, ckpts, strict=True):
        s, cs = solo(cfg)
        assert_same(s, cs, r, c, test_examples)
    return results


def test_cnn1d_members_differing_in_criterion_sparsity_seed_lr_equal_solo():
    cfgs = [config(),
            config(prune__criterion="magnitude", prune__sparsity=0.5, seed=1, train__lr=0.003,
                   train__weight_decay=1e-3),
            config(prune__criterion="synflow", prune__sparsity=0.95, seed=2,
                   prune__schedule="exponential", prune__steps=3,
                   prune__allocation={"name": "erk"})]
    results = _check(cfgs)
    assert [r.status for r in results] == ["ok"] * 3
    assert len({round(r.sparsity, 3) for r in results}) == 3  # really three different trials


def test_mlp_sgd_momentum_weight_decay_per_member_equal_solo():
    base = {"model__name": "mlp", "model__options": {"hidden": [64, 32]},
            "train__optimizer": "sgd", "train__lr": 0.05}
    cfgs = [config(**base),
            config(**base, train__momentum=0.0, seed=3, prune__criterion="random"),
            config(**{**base, "train__lr": 0.1}, train__weight_decay=5e-4, train__momentum=0.5,
                   train__lr_schedule="cosine", prune__sparsity=0.6)]
    _check(cfgs)


def test_adamw_members_equal_solo():
    cfgs = [config(train__optimizer="adamw", train__weight_decay=0.05),
            config(train__optimizer="adamw", train__weight_decay=0.0, seed=5, train__lr=0.002)]
    _check(cfgs)


def test_resnet_with_batchnorm_running_stats_per_member_equal_solo():
    base = {"model__name": "resnet20", "model__options": {"width": 0.25},
            "data__name": "synthetic",
            "data__options": {"num_train": 48, "num_test": 32, "shape": [3, 8, 8]},
            "data__batch_size": 16, "data__train_limit": None, "data__test_limit": None,
            "train__optimizer": "sgd", "train__lr": 0.05, "train__epochs": 1}
    cfgs = [config(**base), config(**base, seed=1, prune__criterion="magnitude",
                                   prune__sparsity=0.5)]
    results = _check(cfgs, test_examples=32)
    # the members' BatchNorm statistics are their own (different data and seeds)
    assert results[0].test_loss != results[1].test_loss


def test_during_plan_prunes_inside_training_per_member_equal_solo():
    cfgs = [config(prune__timing={"name": "during"}, prune__criterion="magnitude",
                   prune__schedule="exponential", prune__steps=2, train__epochs=3),
            config(prune__timing={"name": "during", "prune_epochs": [0, 2]},
                   prune__criterion="snip", prune__schedule="exponential", prune__steps=2,
                   train__epochs=3, seed=4, train__lr=0.003),
            config(prune__timing={"name": "during"}, train__epochs=3, prune__criterion="random",
                   seed=9)]
    results = _check(cfgs)
    assert all(math.isfinite(r.test_loss) for r in results)


def test_a_diverging_member_ends_alone_and_its_mates_equal_solo():
    cfgs = [config(train__optimizer="sgd", train__lr=0.05),
            config(train__optimizer="sgd", train__lr=1e6, seed=1),
            config(train__optimizer="sgd", train__lr=0.02, seed=2)]
    results = _check(cfgs)
    assert [r.status for r in results] == ["ok", "diverged", "ok"]
    assert results[1].diverged_epoch == 1 and "training loss is nan" in results[1].error


def test_language_model_members_count_per_token_as_solo():
    from pruning_core.packing.engine import batchable
    from pruning_core.trials.trial import Trial

    base = {"model__name": "gpt_tiny", "data__name": "stdlib_text", "data__batch_size": 8,
            "data__train_limit": 32, "data__test_limit": 16, "train__optimizer": "adamw",
            "train__lr": 0.003, "train__epochs": 1, "prune__criterion": "magnitude"}
    cfgs = [config(**base), config(**base, seed=1, prune__sparsity=0.5)]
    assert batchable(Trial(cfgs[0]))  # (B, vocab, T) logits go through the batched epoch
    _check(cfgs, test_examples=16)
