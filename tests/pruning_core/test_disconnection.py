"""Disconnection and overfitting in a real trial (issue 18): effective sparsity in the record,
``prune.remove_disconnected``, doomed trials ended before training, the generalisation gap."""

from __future__ import annotations

from typing import Any

import pytest

from pruning_core.trials.experiment import run
from pruning_core.trials.registries import load_trial_config

# digits (8x8), an MLP 64 -> 16 -> 10: 1,024 + 160 prunable weights
BASE: dict[str, Any] = {
    "seed": 0, "model": {"name": "mlp", "options": {"hidden": [16]}},
    "data": {"name": "digits", "batch_size": 64, "train_limit": 256, "test_limit": 128},
    "train": {"epochs": 2, "lr": 0.05, "device": "cpu"},
    "prune": {"criterion": "random", "sparsity": 0.5,
              "allocation": {"name": "explicit", "layer_sparsity": [0.5, 0.999]}},
}


def _cfg(**prune: Any) -> Any:
    return load_trial_config({**BASE, "prune": {**BASE["prune"], **prune}})


def test_a_trial_without_a_path_is_doomed_before_it_trains() -> None:
    # 0.999 of 160 weights keeps round(0.16) = 0: the classifier is empty, no path is left
    res = run(_cfg())
    assert res.status == "doomed" and res.epochs == 0 and res.history == []
    assert res.error is not None and res.error.startswith("doomed: no input->output path")
    assert "3.weight" in res.error and res.collapsed_layers == ["3.weight"]
    assert res.effective_sparsity == 1.0 and res.disconnected_weights == 512
    assert res.train_time_s == 0.0


def test_the_screen_is_off_with_one_line_and_the_same_trial_trains() -> None:
    res = run(_cfg(screen={"enabled": False}))
    assert res.status == "ok" and res.epochs == 2
    assert res.effective_sparsity == 1.0  # trained, still disconnected: the record says so


def test_a_min_density_threshold_dooms_a_connected_but_too_sparse_trial() -> None:
    layer = [0.5, 0.5]
    res = run(_cfg(allocation={"name": "explicit", "layer_sparsity": layer},
                   screen={"min_density": 0.6}))
    assert res.status == "doomed" and "below prune.screen.min_density 0.6" in str(res.error)


def test_remove_disconnected_makes_the_reported_sparsity_the_effective_one() -> None:
    alloc = {"name": "explicit", "layer_sparsity": [0.9, 0.9]}
    plain = run(_cfg(allocation=alloc))
    assert plain.status == "ok" and plain.disconnected_weights is not None
    assert plain.disconnected_weights > 0  # random 90 % leaves hidden units fed or feeding nothing
    assert plain.effective_sparsity > plain.sparsity
    assert plain.effective_params == plain.params_kept - plain.disconnected_weights
    assert plain.effective_flops <= plain.flops
    removed = run(_cfg(allocation=alloc, remove_disconnected=True))
    assert removed.disconnected_weights == 0
    assert removed.sparsity == pytest.approx(plain.effective_sparsity)
    assert removed.effective_sparsity == pytest.approx(removed.sparsity)
    assert removed.layer_effective_sparsity == pytest.approx(removed.layer_sparsity)


def test_the_generalisation_gap_is_recorded_at_the_end_and_per_epoch() -> None:
    res = run(_cfg(allocation={"name": "explicit", "layer_sparsity": [0.5, 0.5]}))
    assert res.gap_accuracy == pytest.approx(res.train_accuracy - res.test_accuracy)
    assert res.gap_loss == pytest.approx(res.test_loss - res.train_loss)
    for h in res.history:
        assert h["gap_accuracy"] == pytest.approx(h["train_accuracy"] - h["test_accuracy"])
        assert h["gap_loss"] == pytest.approx(h["test_loss"] - h["train_loss"])


def test_label_noise_flips_exactly_that_share_of_training_labels_to_other_classes() -> None:
    import torch
    from torch.utils.data import Dataset, TensorDataset

    from pruning_core.workloads.data import DataBundle, with_label_noise

    y = torch.arange(200) % 10
    bundle = DataBundle(train=TensorDataset(torch.zeros(200, 3), y.clone()),
                        test=TensorDataset(torch.zeros(5, 3), torch.zeros(5, dtype=torch.long)),
                        input_shape=(3,), num_classes=10, name="t")
    noisy = with_label_noise(bundle, 0.25, seed=4)
    new = noisy.train.tensors[1]
    assert int((new != y).sum()) == 50  # round(0.25 * 200), each moved to another class
    assert torch.equal(with_label_noise(bundle, 0.25, seed=4).train.tensors[1], new)
    assert not torch.equal(with_label_noise(bundle, 0.25, seed=5).train.tensors[1], new)
    assert noisy.test is bundle.test and torch.equal(bundle.train.tensors[1], y)

    class Plain(Dataset):  # a user's dataset: relabelled on access, same choice of examples
        def __len__(self) -> int:
            return 200

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return torch.zeros(3), int(y[i])

    lazy = with_label_noise(DataBundle(train=Plain(), test=bundle.test, input_shape=(3,),
                                       num_classes=10, name="t"), 0.25, seed=4)
    assert [lazy.train[i][1] for i in range(200)] == new.tolist()


def test_a_trial_with_label_noise_fits_its_noisy_labels_worse_than_clean_ones() -> None:
    clean = run(_cfg(allocation={"name": "explicit", "layer_sparsity": [0.5, 0.5]}))
    noisy = run(load_trial_config({**BASE, "data": {**BASE["data"], "label_noise": 0.5},
                                   "prune": {**BASE["prune"], "allocation": {
                                       "name": "explicit", "layer_sparsity": [0.5, 0.5]}}}))
    assert noisy.status == clean.status == "ok"
    assert noisy.train_accuracy < clean.train_accuracy  # half the labels are now arbitrary


def test_adversarial_accuracy_is_measured_at_the_end_of_a_trial() -> None:
    cfg = _cfg(allocation={"name": "explicit", "layer_sparsity": [0.5, 0.5]})
    plain = run(cfg)
    assert plain.adv_accuracy is None and plain.adversarial == {}
    data = cfg.model_dump()
    data["metrics"]["adversarial"] = {"attack": "pgd", "samples": 64, "eps": 0.25}
    res = run(load_trial_config(data))
    assert res.status == "ok" and res.test_accuracy == plain.test_accuracy  # same training
    assert res.adversarial["samples"] == 64 and res.adversarial["attack"] == "pgd"
    assert res.adversarial["eps"] == 0.25 and res.adversarial["steps"] == 10
    assert 0.0 <= res.adv_accuracy <= res.adversarial["clean_accuracy"]
    assert res.adv_accuracy < res.adversarial["clean_accuracy"]  # 0.25 of digits' [0, 1] range
    again = run(load_trial_config(data))
    assert again.adv_accuracy == res.adv_accuracy  # the seeded subset and start: repeatable


def test_channel_pruned_compacted_trials_report_connectivity_of_the_compact_network() -> None:
    """The structured path: after compaction the network is smaller and dense; the record's
    effective sparsity is counted against the full-size masks (removed channels are removed,
    not disconnected), so it equals the weight sparsity when nothing kept is disconnected."""
    data = {**BASE, "model": {"name": "mlp", "options": {"hidden": [32, 16]}},
            "prune": {"criterion": "snap", "sparsity": 0.5, "granularity": "channel"}}
    res = run(load_trial_config(data))
    assert res.status == "ok" and res.node_sparsity is not None and res.node_sparsity > 0
    assert res.disconnected_weights == 0 and res.dead_units == 0
    assert res.effective_sparsity == pytest.approx(res.sparsity)
    assert res.effective_params == res.params_kept and res.layer_effective_sparsity == {}
    kept_masks = run(load_trial_config({**data, "prune": {**data["prune"], "compact": False}}))
    assert kept_masks.effective_sparsity >= kept_masks.sparsity  # masked, not compacted
    assert kept_masks.layer_effective_sparsity.keys() == kept_masks.layer_sparsity.keys()
