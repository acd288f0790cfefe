"""Packs in a real sweep (``budget.pack``): a 2-member-pack sweep of 4 grid configs on the demo
model (cnn1d, MNIST-1D) gives the same rows, config by config, as the same sweep unpacked; one
row and one live W&B run per member, ids a user can pass to ``--trial``; the study is told each
member's own result."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pruning_core.base.errors import ConfigError
from sweeps.results.store import TrialStore
from sweeps.tune.launch import run_sweep
from sweeps.tune.space import parse_space

from .conftest import offline_run_id

FIXED = {"seed": 0, "model": {"name": "cnn1d"},
         "data": {"name": "mnist1d", "batch_size": 128, "train_limit": 512},
         "train": {"epochs": 2, "optimizer": "adam", "lr": 0.01, "device": "cpu"}}
METRICS = ("test_accuracy", "test_loss", "train_loss", "sparsity", "params_kept", "flops",
           "last_epoch", "status")
#: metric -> (relative, absolute) tolerance where the pack trains batched (1000 test examples)
TOLERANT = {"test_accuracy": (0.0, 1e-3 + 1e-9), "test_loss": (1e-4, 0.0),
            "train_loss": (1e-4, 0.0)}


def _space(tmp: Path, name: str, pack: int, **kw: object) -> dict:
    return {"name": name, "objectives": [{"metric": "test_accuracy", "mode": "max"},
                                         {"metric": "sparsity", "mode": "max"}],
            "sampler": {"name": "grid", "seed": 0},
            "budget": {"num_samples": 4, "max_concurrent": 2, "pack": pack},
            "fixed": FIXED, "storage": str(tmp / name), "wandb": {"mode": "offline"},
            "params": {"prune.criterion": {"type": "choice", "values": ["magnitude", "snip"]},
                       "prune.sparsity": {"type": "choice", "values": [0.5, 0.8]}}, **kw}


def test_pack_takes_a_scheduler_and_refuses_bad_packs_in_one_line(tmp_path: Path) -> None:
    data = _space(tmp_path, "s", 2, scheduler={"name": "asha", "metric": "test_accuracy"})
    assert parse_space(data).budget.pack == 2  # early stopping decides per member
    assert parse_space({**data, "budget": {"num_samples": 4}}).budget.pack == 1
    with pytest.raises(ConfigError, match="budget.pack"):
        parse_space({**_space(tmp_path, "s", 0)})
    assert parse_space(_space(tmp_path, "s", "auto")).budget.pack_size() >= 1  # type: ignore[arg-type]
    keep = _space(tmp_path, "s", 2)
    keep["fixed"] = {**FIXED, "metrics": {"keep_weights": True}}
    with pytest.raises(ConfigError, match="budget.pack.*keep_weights"):
        parse_space(keep)


@pytest.mark.slow
def test_packed_sweep_equals_the_unpacked_sweep_config_by_config(tmp_path: Path,
                                                                 ray_local: None) -> None:
    solo = run_sweep(parse_space(_space(tmp_path, "solo", 1)))
    packed_space = parse_space(_space(tmp_path, "packed", 2))
    packed = run_sweep(packed_space)
    assert solo.rows == packed.rows == 4 and packed.complete
    key = ["config.prune.criterion", "config.prune.sparsity"]
    a = TrialStore(solo.results_dir).dataframe().set_index(key).sort_index()
    b = TrialStore(packed.results_dir).dataframe().set_index(key).sort_index()
    assert list(a.index) == list(b.index) and b.index.is_unique  # each config once
    # `budget.pack: 2` leaves the choice to `choose_packed`, which times steps: where it batches,
    # losses agree to float tolerance and accuracy within one test example (docs/packing.md,
    # Exactness); one member after another, they are equal
    for m in METRICS:
        for x, y in zip(a[m], b[m], strict=True):
            if m in TOLERANT:
                assert math.isclose(x, y, rel_tol=TOLERANT[m][0], abs_tol=TOLERANT[m][1]), m
            else:
                assert x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)), m
    assert (b["status"] == "ok").all()
    # ids: two Ray trials, two members each, unique, '<ray trial id>-m<i>'
    ids = sorted(b["trial_id"])
    assert len(set(ids)) == 4 and {i.rsplit("-m", 1)[1] for i in ids} == {"0", "1"}
    assert len({i.rsplit("-m", 1)[0] for i in ids}) == 2
    # the same schema as the unpacked sweep's rows (every file; metadata but the space's text)
    unpacked = pq.read_schema(next(Path(solo.results_dir, "trials").glob("*.parquet")))
    for f in Path(packed.results_dir, "trials").glob("*.parquet"):
        got = pq.read_schema(f)
        assert got.remove_metadata().equals(unpacked.remove_metadata())
        assert set(got.metadata) == set(unpacked.metadata)
    # one live W&B run per member, named by its row id
    runs = {offline_run_id(p.name) for p in Path(packed.results_dir, "wandb").glob(
        "offline-run-*")}
    assert {f"packed-{t}" for t in ids} <= runs
    # a member's id is a trial id for `schedule export --trial`
    from typer.testing import CliRunner

    from sweeps.cli import app

    out = tmp_path / "m.yaml"
    res = CliRunner().invoke(app, ["schedule", "export", packed.results_dir, "--trial", ids[1],
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert ids[1] in out.read_text()
    # Optuna was told each member's own values
    import optuna

    study = optuna.load_study(study_name="packed",
                              storage=optuna.storages.JournalStorage(
                                  optuna.storages.journal.JournalFileBackend(
                                      str(Path(packed.results_dir, "study.log")))))
    told = {t.user_attrs["trial_id"]: t for t in study.trials}
    assert set(told) == set(ids)
    rows = b.reset_index().set_index("trial_id")
    for tid, t in told.items():
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert t.values == pytest.approx([rows.loc[tid, "test_accuracy"],
                                          rows.loc[tid, "sparsity"]])
