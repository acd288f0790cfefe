"""Per-member endings and resume inside a pack, and the `prunetune run` reference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pruning_core.packing import run_pack
from pruning_core.trials.experiment import run

from .helpers import assert_same, config, packed, solo

ROOT = Path(__file__).resolve().parents[2]


def test_on_epoch_true_stops_that_member_alone():
    cfgs = [config(train__epochs=3), config(train__epochs=3, seed=1, prune__sparsity=0.5),
            config(train__epochs=3, seed=2, prune__criterion="magnitude")]
    reports: dict[int, list[int]] = {0: [], 1: [], 2: []}

    def on_epoch(i, report):
        reports[i].append(report.epoch)
        return i == 1 and report.epoch == 1  # stop member 1 after its first epoch

    results = run_pack(cfgs, on_epoch=on_epoch, batched=True)
    assert reports == {0: [1, 2, 3], 1: [1], 2: [1, 2, 3]}
    assert [r.status for r in results] == ["ok", "stopped", "ok"]
    stopped = results[1]
    assert stopped.epochs == 1 and len(stopped.history) == 1
    epoch1 = stopped.history[0]
    assert stopped.test_accuracy == epoch1["test_accuracy"]
    assert stopped.train_loss == epoch1["train_loss"] and stopped.sparsity == epoch1["sparsity"]
    assert stopped.params_kept < stopped.params and stopped.train_flops > 0
    assert stopped.layer_sparsity and stopped.target_sparsity == pytest.approx(0.5)
    # the same stop through the one-at-a-time path (experiment.run) ends the same way
    seq = run_pack([cfgs[1]], on_epoch=lambda i, r: r.epoch == 1, batched=False)[0]
    assert seq.status == "stopped" and seq.epochs == 1
    assert seq.layer_sparsity == stopped.layer_sparsity
    assert seq.test_loss == pytest.approx(stopped.test_loss, rel=1e-4)
    # its pack-mates equal their uninterrupted solo runs
    for i in (0, 2):
        s, _ = solo(cfgs[i])
        assert_same(s, None, results[i], None)


def test_resume_from_member_checkpoints_equals_the_uninterrupted_pack():
    cfgs = [config(train__epochs=3, prune__timing={"name": "during"},
                   prune__criterion="random", prune__schedule="exponential", prune__steps=2),
            config(train__epochs=3, seed=1, train__optimizer="sgd", train__lr=0.05),
            config(train__epochs=3, seed=2, prune__criterion="magnitude")]
    whole, whole_ckpts = packed(cfgs)
    at_epoch: dict[int, dict] = {}

    def keep_first(i, report):
        if report.epoch == 1:
            at_epoch[i] = report.checkpoint()
        return report.epoch == 1  # "killed" after the first epoch

    run_pack(cfgs, on_epoch=keep_first, batched=True)
    # member 2 lost its checkpoint: it starts again from scratch
    resumed, resumed_ckpts = packed(cfgs, resume=[at_epoch[0], at_epoch[1], None])
    for a, ca, b, cb in zip(whole, whole_ckpts, resumed, resumed_ckpts, strict=True):
        assert b.status == "ok" and b.epochs == 3
        assert_same(a, ca, b, cb)
    for i in (0, 1):  # the resumed members went on from the very state they were stopped in
        assert resumed[i].history[0] == pytest.approx(whole[i].history[0])


@pytest.mark.slow
def test_member_equals_prunetune_run_json(tmp_path):
    cfg = config(seed=3, prune__criterion="magnitude", prune__sparsity=0.7,
                 train__optimizer="sgd", train__lr=0.05, train__threads=1)
    mates = [config(seed=4, train__threads=1), cfg, config(seed=5, train__threads=1)]
    path = tmp_path / "trial.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    out = tmp_path / "result.json"
    p = subprocess.run([sys.executable, "-m", "sweeps.cli", "run", str(path), "--json", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    cli = json.loads(out.read_text())
    torch.set_num_threads(1)
    member = run_pack(mates, batched=True)[1].to_dict()
    assert cli["status"] == member["status"] == "ok"
    assert cli["layer_sparsity"] == member["layer_sparsity"]
    assert cli["sparsity"] == member["sparsity"] and cli["params_kept"] == member["params_kept"]
    assert abs(cli["test_accuracy"] - member["test_accuracy"]) <= 0.01 + 1e-12
    assert member["test_loss"] == pytest.approx(cli["test_loss"], rel=1e-4)
    for a, b in zip(cli["history"], member["history"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)


def test_members_with_the_same_data_hold_one_copy():
    from pruning_core.packing.engine import share_data
    from pruning_core.trials.trial import Trial

    a, b = Trial(config()), Trial(config(seed=1))
    noisy = Trial(config(seed=2, data__label_noise=0.2))
    share_data(b, [a])
    share_data(noisy, [a, b])
    assert b.train_loader.x is a.train_loader.x and b.test_loader.y is a.test_loader.y
    assert noisy.train_loader.y is not a.train_loader.y  # its own labels
    assert noisy.train_loader.x is a.train_loader.x


def test_members_whose_plans_differ_in_length_end_apart():
    # IMP: one retraining phase per level, so 2 and 3 levels train 2 x 2 and 2 x 3 epochs;
    # the pack goes on with the longer member after the shorter one ends
    cfgs = [config(prune__timing={"name": "imp"}, prune__criterion="magnitude",
                   prune__schedule="exponential", prune__steps=1),
            config(prune__timing={"name": "imp"}, prune__criterion="magnitude",
                   prune__schedule="exponential", prune__steps=2, seed=1)]
    results, ckpts = packed(cfgs)
    assert [r.epochs for r in results] == [4, 6]
    for cfg, r, c in zip(cfgs, results, ckpts, strict=True):
        s, cs = solo(cfg)
        assert_same(s, cs, r, c)


def test_dense_cache_prefix_is_shared_as_in_solo_runs(tmp_path):
    from pruning_core.trials.dense_cache import LocalDenseCache

    cfgs = [config(prune__timing={"name": "after", "pretrain_epochs": 1},
                   prune__criterion="magnitude", train__epochs=1),
            config(prune__timing={"name": "after", "pretrain_epochs": 1},
                   prune__criterion="magnitude", prune__sparsity=0.5, train__epochs=1)]
    results = run_pack(cfgs, batched=True, dense_cache=LocalDenseCache(tmp_path / "cache"))
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1  # one dense prefix (same seed)
    for cfg, r in zip(cfgs, results, strict=True):
        s = run(cfg, dense_cache=LocalDenseCache(tmp_path / "solo_cache"))
        assert r.status == s.status == "ok" and r.epochs == s.epochs == 2
        assert r.layer_sparsity == s.layer_sparsity
        assert r.test_loss == pytest.approx(s.test_loss, rel=1e-4)


def test_what_cannot_be_batched_runs_alone():
    from torch import nn

    from pruning_core.packing.engine import batchable
    from pruning_core.trials.trial import Trial

    trial = Trial(config(model__name="mlp", model__options={"hidden": [8]}))
    assert batchable(trial)
    trial.model.append(nn.Dropout(0.1))  # vmap would draw other dropout masks than a solo run
    assert not batchable(trial)
    trial.model[-1].p = 0.0
    assert batchable(trial)
    trial.compacted = True  # a compacted model has shapes of its own
    assert not batchable(trial)
