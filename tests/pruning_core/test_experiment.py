import pytest
import torch
from safetensors.torch import load_file

from pruning_core.base.errors import ConfigError
from pruning_core.masking.criteria import CRITERIA
from pruning_core.trials.experiment import Trial, prunable_layers, run
from pruning_core.trials.registries import load_trial_config
from pruning_core.trials.timing import TIMINGS, NewOptimizer, Prune, Rewind, Snapshot, Train


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
    # imp: 2 dense epochs, then 2 levels that rewind to epoch 1 and retrain epoch 1 only
    expected_epochs = {"before": 2, "during": 2, "after": 3, "imp": 4}[timing]
    assert r.epochs == expected_epochs


def test_imp_plan_rewinds_to_snapshot_epoch():
    c = cfg(criterion="magnitude", schedule="exponential", steps=2,
            timing={"name": "imp", "rewind_epoch": 1})
    plan = TIMINGS.get("imp")(c, [0.5, 0.8])
    # open_lth: rewind to epoch k, then train epochs k..T-1 with the LR schedule resumed at k
    assert plan == [NewOptimizer(), Train(0, 2), Snapshot(), Train(1, 2),
                    Prune(0.5), Rewind(), NewOptimizer(), Train(1, 2),
                    Prune(0.8), Rewind(), NewOptimizer(), Train(1, 2)]


def test_imp_rewind_zero_is_the_original_lottery_ticket():
    c = cfg(criterion="magnitude", schedule="one_shot", timing={"name": "imp", "rewind_epoch": 0})
    plan = TIMINGS.get("imp")(c, [0.8])
    assert plan == [NewOptimizer(), Snapshot(), Train(0, 2), Train(1, 2),
                    Prune(0.8), Rewind(), NewOptimizer(), Train(0, 2), Train(1, 2)]


def test_imp_rewind_past_last_epoch_is_refused():
    c = cfg(criterion="magnitude", timing={"name": "imp", "rewind_epoch": 2})
    with pytest.raises(ConfigError, match="prune.timing.rewind_epoch"):
        TIMINGS.get("imp")(c, [0.8])


def test_imp_rewinds_kept_weights_bit_for_bit_and_resumes_the_lr_schedule():
    c = cfg(criterion="magnitude", schedule="one_shot", timing={"name": "imp", "rewind_epoch": 1})
    c.train.epochs, c.train.lr_schedule = 3, "step"  # lr/10 from epoch 2 (50 % of 3 epochs)
    trial = Trial(c)
    snapshot, lrs = None, []
    while trial.done < len(trial.plan):
        action = trial.plan[trial.done]
        trial.execute(action, None)
        trial.done += 1
        if isinstance(action, Snapshot):
            snapshot = {k: v.clone() for k, v in trial.model.state_dict().items()}
        if isinstance(action, Train):
            lrs.append(trial.optimizer.param_groups[0]["lr"])
        if isinstance(action, Rewind):
            state = trial.model.state_dict()
            for name, mask in trial.masks.masks.items():
                assert torch.equal(state[name][mask], snapshot[name][mask])  # kept: the snapshot
                assert (state[name][~mask] == 0).all()  # pruned: zero
            for k in state:  # biases and everything else: the snapshot, bit for bit
                if k not in trial.masks.masks:
                    assert torch.equal(state[k], snapshot[k]), k
    # dense epochs 0, 1, 2, then the level retrains epochs 1, 2 with the schedule resumed at 1
    assert lrs == pytest.approx([0.01, 0.01, 0.001, 0.01, 0.001])


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


def _without_times(result):
    return {k: v for k, v in result.to_dict().items() if not k.endswith("_time_s")}


@pytest.mark.parametrize("criterion", CRITERIA.names())
@pytest.mark.parametrize("timing", TIMINGS.names())
def test_resume_after_epoch_k_is_bit_exact(tmp_path, criterion, timing):
    """Every criterion x timing: a trial resumed from the checkpoint after epoch k ends with the
    same masks and metrics, bit for bit, as the uninterrupted run."""
    c = cfg(criterion=criterion, schedule="linear", steps=2,
            timing={"name": timing, "pretrain_epochs": 1, "rewind_epoch": 1,
                    **({"prune_epochs": [0, 1]} if timing == "during" else {})})
    c.train.epochs = 3
    c.data.train_limit = 256
    states = {}

    def keep(rep):
        path = tmp_path / f"ckpt{rep.epoch}.pt"
        torch.save(rep.checkpoint(), path)
        states[rep.epoch] = path

    full_masks, resumed_masks = tmp_path / "full.safetensors", tmp_path / "resumed.safetensors"
    full = run(c, on_epoch=keep, masks_out=full_masks)
    k = 1  # before the during trial's second prune event, inside IMP's dense phase, etc.
    resumed = run(c, resume=torch.load(states[k], weights_only=True), masks_out=resumed_masks)
    assert _without_times(resumed) == _without_times(full)
    a, b = load_file(full_masks), load_file(resumed_masks)
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def test_resume_restores_every_global_random_stream(tmp_path):
    """Draws from torch, numpy and Python's global generators after a resume continue the
    uninterrupted run's streams."""
    import random

    import numpy as np

    c = cfg(criterion="random")
    c.train.epochs = 2
    draws: dict[str, tuple] = {}

    def keep(rep):
        if rep.epoch == 1:
            torch.save(rep.checkpoint(), tmp_path / "c.pt")
            draws["full"] = (torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random())

    run(c, on_epoch=keep)
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    trial = Trial(c)
    torch.manual_seed(123), np.random.seed(123), random.seed(123)  # scramble
    trial.restore(state)
    assert (torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random()) \
        == draws["full"]


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
    assert seen == [(e, 4) for e in range(1, 5)]  # 2 epochs dense + 2 levels x 1 epoch


def test_epoch_reports_carry_the_size_a_stopped_trial_keeps():
    """Each epoch report says the network's size as it trains (what a trial stopped early
    keeps): for ``during`` it follows the prune events, and the last one equals the result's
    own count; ``train_flops`` grows by 3 x forward FLOPs x examples per epoch."""
    sizes = []
    c = cfg(criterion="magnitude", schedule="linear", steps=2,
            timing={"name": "during", "prune_epochs": [0, 1]})
    r = run(c, on_epoch=lambda rep: sizes.append(rep.sizes))
    assert [s["target_sparsity"] for s in sizes] == [0.8, 0.8]
    first, last = sizes
    dense = 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10  # weights and biases
    assert first["params"] == last["params"] == r.params == dense
    # linear schedule: 0.4 removed after the first event, 0.8 after the second
    assert first["params_kept"] == r.params - round(0.4 * (64 * 32 + 32 * 16 + 16 * 10))
    assert last["params_kept"] == r.params_kept < first["params_kept"]
    assert last["flops"] == r.flops < first["flops"] < first["flops_dense"] == r.flops_dense
    assert first["train_flops"] == 3 * first["flops"] * 512
    assert last["train_flops"] == first["train_flops"] + 3 * last["flops"] * 512 == r.train_flops
    assert first["n_collapsed"] == last["n_collapsed"] == 0
    assert "node_sparsity" not in last


def test_balanced_scoring_set_is_the_first_examples_of_each_class():
    """GraSP's official scoring set, by hand: walk the shuffled batches, keep the first
    ``per_class`` examples of each class, grouped by class."""
    from pruning_core.trials.experiment import balanced_set

    x = torch.arange(12, dtype=torch.float32).reshape(12, 1)
    y = torch.tensor([2, 0, 0, 1, 2, 0, 1, 1, 2, 0, 2, 1])
    batches = [(x[i:i + 4], y[i:i + 4]) for i in range(0, 12, 4)]
    bx, by = balanced_set(batches, num_classes=3, per_class=2)
    assert by.tolist() == [0, 0, 1, 1, 2, 2]
    assert bx.flatten().tolist() == [1, 2, 3, 6, 0, 4]  # class 0: 1, 2; class 1: 3, 6; ...
    short = balanced_set(batches, num_classes=4, per_class=2)  # class 3 never appears
    assert short[1].tolist() == [0, 0, 1, 1, 2, 2]


def test_score_samples_per_class_feeds_every_data_driven_criterion():
    c = cfg(criterion="grasp", score_samples_per_class=3, score_batches=2)
    trial = Trial(c)
    batches = trial._score_batches()
    assert [len(b[1]) for b in batches] == [15, 15]  # 10 digits x 3, in 2 batches
    labels = torch.cat([b[1] for b in batches]).tolist()
    assert labels == [k for k in range(10) for _ in range(3)]
    assert run(c).status == "ok"
