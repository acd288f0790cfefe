import pytest
import torch

from pruning_core.config import load_trial_config
from pruning_core.experiment import prunable_layers, run
from pruning_core.timing import TIMINGS, NewOptimizer, Prune, Rewind, Snapshot, Train


def cfg(**prune):
    base = {
        "seed": 0, "model": {"name": "mlp", "options": {"hidden": [32, 16]}},
        "data": {"name": "digits", "batch_size": 64, "train_limit": 512, "test_limit": 200},
        "train": {"epochs": 2, "optimizer": "adam", "lr": 0.01},
        "prune": {"criterion": "snip", "sparsity": 0.8, **prune},
    }
    return load_trial_config(base)


def test_run_before_training_reports_every_epoch_and_hits_target():
    seen = []
    r = run(cfg(schedule="snip_it", steps=2), on_epoch=lambda rep: seen.append(rep.metrics))
    assert r.status == "ok" and r.epochs == 2 and [m["epoch"] for m in seen] == [1, 2]
    n = sum(p for p in [64 * 32, 32 * 16, 16 * 10])
    assert abs(r.sparsity - 0.8) <= 1 / n
    assert r.target_sparsity == 0.8 and r.test_accuracy > 0.3
    assert set(r.layer_sparsity) == {"1.weight", "3.weight", "5.weight"}
    assert r.flops < r.flops_dense and r.params_kept < r.params
    assert r.prune_time_s > 0 and r.train_time_s > 0
    assert set(r.metrics()) >= {"test_accuracy", "sparsity", "params", "flops", "status"}


def test_same_seed_same_result_and_other_seed_differs():
    a, b, c = run(cfg()), run(cfg()), run(cfg().model_copy(update={"seed": 1}))
    assert a.test_accuracy == b.test_accuracy and a.layer_sparsity == b.layer_sparsity
    assert a.layer_sparsity != c.layer_sparsity


@pytest.mark.parametrize("timing", TIMINGS.names())
def test_every_timing_runs_and_reaches_sparsity(timing):
    extra = {"timing": {"name": timing, "pretrain_epochs": 1, "rewind_epoch": 1}}
    r = run(cfg(criterion="magnitude", schedule="linear", steps=2, **extra))
    assert r.status == "ok"
    assert r.sparsity == pytest.approx(0.8, abs=1e-3)
    expected_epochs = {"before": 2, "during": 2, "after": 3, "imp": 6}[timing]
    assert r.epochs == expected_epochs


def test_imp_plan_rewinds_to_snapshot_epoch():
    c = cfg(criterion="magnitude", schedule="exponential", steps=2,
            timing={"name": "imp", "rewind_epoch": 1})
    plan = TIMINGS.get("imp")(c, [0.5, 0.8])
    assert plan[:3] == [NewOptimizer(), Train(0, 2), Snapshot()]
    assert plan[4:7] == [Prune(0.5), Rewind(), NewOptimizer()]


def test_during_plan_fires_events_at_given_epochs():
    c = cfg(criterion="magnitude", schedule="cubic", steps=2,
            timing={"name": "during", "prune_epochs": [0, 1]})
    plan = TIMINGS.get("during")(c, [0.7, 0.8])
    assert plan == [NewOptimizer(), Prune(0.7), Train(0, 2), Prune(0.8), Train(1, 2)]


@pytest.mark.parametrize("variant", ["reinit", "random_sparse"])
def test_wacv_variants_keep_per_layer_sparsity(variant):
    base = run(cfg(criterion="magnitude", allocation="erk", timing={"name": "after",
                                                                    "pretrain_epochs": 1}))
    other = run(cfg(criterion="magnitude", allocation="erk", variant=variant,
                    timing={"name": "after", "pretrain_epochs": 1}))
    for name, s in base.layer_sparsity.items():
        assert other.layer_sparsity[name] == pytest.approx(s, abs=1e-9)
    assert other.test_accuracy != base.test_accuracy


def test_nan_loss_gives_diverged_status():
    c = cfg()
    c.train.optimizer = "sgd"
    c.train.lr = 1e12
    r = run(c)
    assert r.status == "diverged" and r.diverged_epoch == 1 and "epoch 1" in r.error


def test_resume_from_epoch_checkpoint_matches_uninterrupted(tmp_path):
    c = cfg(schedule="linear", steps=2)
    c.train.epochs = 3
    states = {}

    def keep(rep):
        if rep.epoch == 1:
            path = tmp_path / "ckpt.pt"
            torch.save(rep.checkpoint(), path)
            states[1] = torch.load(path, weights_only=True)

    full = run(c, on_epoch=keep)
    resumed = run(c, resume=states[1])
    assert resumed.history == full.history
    assert resumed.test_accuracy == full.test_accuracy
    assert resumed.layer_sparsity == full.layer_sparsity


def test_explicit_allocation_defines_the_target():
    vec = [0.5, 0.9, 0.0]
    r = run(cfg(allocation={"name": "explicit", "layer_sparsity": vec}, schedule="linear",
                steps=2))
    sizes = [64 * 32, 32 * 16, 16 * 10]
    assert r.target_sparsity == pytest.approx(sum(v * n for v, n in zip(vec, sizes, strict=True))
                                              / sum(sizes))
    assert list(r.layer_sparsity.values()) == pytest.approx(vec, abs=1e-3)


def test_prunable_layers_lists_model_order():
    names = [layer.name for layer in prunable_layers(cfg())]
    assert names == ["1.weight", "3.weight", "5.weight"]


def test_dense_run_with_zero_sparsity():
    r = run(cfg(sparsity=0.0))
    assert r.sparsity == 0.0 and r.flops == r.flops_dense


def test_reports_know_the_plans_total_epochs():
    seen = []
    c = cfg(criterion="magnitude", schedule="linear", steps=2,
            timing={"name": "imp", "rewind_epoch": 1})
    run(c, on_epoch=lambda rep: seen.append((rep.epoch, rep.total_epochs)))
    assert seen == [(e, 6) for e in range(1, 7)]  # 2 epochs dense + 2 levels x 2 epochs
