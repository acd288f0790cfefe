"""A sweep that records similarity to the dense reference, with dense networks shared."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeps.results.store import TrialStore
from sweeps.tune.launch import run_sweep
from sweeps.tune.space import parse_space

pytestmark = pytest.mark.slow


def test_sweep_records_similarity_and_trains_each_dense_network_once(tmp_path: Path,
                                                                     ray_local: None) -> None:
    space = parse_space({
        "name": "sim", "sampler": {"name": "grid", "seed": 0},
        "objectives": [{"metric": "test_accuracy", "mode": "max"},
                       {"metric": "similarity_mean", "mode": "max"}],
        "budget": {"num_samples": 4, "max_concurrent": 2, "max_failures": 0},
        "fixed": {"model": {"name": "mlp", "options": {"hidden": [32, 16]}},
                  "data": {"name": "digits", "train_limit": 512},
                  "train": {"epochs": 2, "optimizer": "sgd", "lr": 0.05, "device": "cpu"},
                  "prune": {"criterion": "magnitude",
                            "timing": {"name": "after", "pretrain_epochs": 2}},
                  "metrics": {"similarity": {"method": "cka", "examples": 200}}},
        "params": {"prune.sparsity": {"type": "choice", "values": [0.5, 0.95]},
                   "prune.variant": {"type": "choice", "values": ["none", "reinit"]}},
        "storage": str(tmp_path / "res"),
    })
    outcome = run_sweep(space)
    df = TrialStore(outcome.results_dir).dataframe()
    assert len(df) == 4 and set(df["status"]) == {"ok"}
    layers = {"similarity.1", "similarity.3", "similarity.5"}
    assert layers <= set(df.columns)
    assert (df["similarity_mean"] - df[sorted(layers)].mean(axis=1)).abs().max() < 1e-9
    # re-initialised weights move further from the dense network than fine-tuned ones
    by = df.set_index(["config.prune.variant", "config.prune.sparsity"])["similarity_mean"]
    assert by[("none", 0.5)] > by[("reinit", 0.5)]
    dense = Path(outcome.results_dir) / "dense"
    # one dense prefix (the 2 epochs before pruning) and one dense reference, for 4 trials
    assert len(list(dense.glob("reference-*.pt"))) == 1
    assert len([p for p in dense.glob("*.pt") if not p.name.startswith("reference-")]) == 1
