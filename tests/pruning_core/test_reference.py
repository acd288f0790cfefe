import pytest

from pruning_core.base.errors import ConfigError
from pruning_core.trials.dense_cache import LocalDenseCache
from pruning_core.trials.experiment import run
from pruning_core.trials.registries import load_trial_config


def cfg(sparsity: float, **similarity):
    return load_trial_config({
        "seed": 0, "model": {"name": "mlp", "options": {"hidden": [32, 16]}},
        "data": {"name": "digits", "batch_size": 64, "train_limit": 256, "test_limit": 200},
        "train": {"epochs": 2, "optimizer": "sgd", "lr": 0.05},
        "prune": {"criterion": "magnitude", "sparsity": sparsity},
        "metrics": {"similarity": {"method": "cka", "examples": 150, **similarity}},
    })


def test_an_unpruned_trial_is_identical_to_its_dense_reference():
    r = run(cfg(0.0))
    assert set(r.similarity) == {"1", "3", "5"}  # the Linear modules of the MLP
    assert all(v == pytest.approx(1.0, abs=1e-9) for v in r.similarity.values())
    assert r.similarity_mean == pytest.approx(1.0, abs=1e-9)


def test_a_pruned_trial_moves_away_and_trials_share_one_reference(tmp_path):
    cache = LocalDenseCache(tmp_path)
    a = run(cfg(0.95), dense_cache=cache)
    b = run(cfg(0.5, method="svcca", layers=["5"]), dense_cache=cache)
    assert len(list(tmp_path.glob("reference-*.pt"))) == 1
    assert all(0.0 < v < 0.999 for v in a.similarity.values())
    assert a.similarity_mean == pytest.approx(sum(a.similarity.values()) / 3)
    assert set(b.similarity) == {"5"} and 0.0 < b.similarity["5"] <= 1.0


def test_unknown_layer_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"nope.*1, 3, 5|1.*3.*5"):
        run(cfg(0.5, layers=["nope"]))
