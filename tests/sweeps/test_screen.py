"""Doomed trials in a sweep (issue 18): ended before training, recorded ``doomed`` with the
reason, told to Optuna as infeasible through the sampler's constraints, and the front of the
trials that learned anything is the same with the screen as without it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest

from sweeps.results.pareto import load_results, pareto_front
from sweeps.results.store import TrialStore
from sweeps.tune.launch import run_sweep
from sweeps.tune.space import parse_space

# global magnitude at 0.99 on a 64 -> 16 -> 10 MLP keeps only weights whose hidden units
# feed nothing: no input -> output path (checked in tests/pruning_core/test_disconnection.py)
SPACE: dict[str, Any] = {
    "name": "screened",
    "objectives": [{"metric": "test_accuracy", "mode": "max"},
                   {"metric": "sparsity", "mode": "max"}],
    "sampler": {"name": "random", "seed": 3},
    "budget": {"num_samples": 6, "max_concurrent": 2, "max_failures": 0},
    "fixed": {"model": {"name": "mlp", "options": {"hidden": [16]}},
              "data": {"name": "digits", "batch_size": 64, "train_limit": 512,
                       "test_limit": 256},
              "train": {"epochs": 2, "lr": 0.05, "device": "cpu"},
              "prune": {"criterion": "magnitude"},
              "metrics": {"adversarial": {"attack": "fgsm", "samples": 64}}},
    "params": {"prune.sparsity": {"type": "choice", "values": [0.3, 0.6, 0.99]}},
}


def _space(tmp: Path, name: str, **budget: Any) -> Any:
    return parse_space({**SPACE, "name": name, "storage": str(tmp / name),
                        "budget": {**SPACE["budget"], **budget}})


@pytest.mark.slow
def test_doomed_trials_end_before_training_and_leave_the_front_unchanged(
        tmp_path: Path, ray_local: None) -> None:
    screened = run_sweep(_space(tmp_path, "on"))
    plain = run_sweep(_space(tmp_path, "off", screen={"enabled": False}))
    on = TrialStore(str(tmp_path / "on")).dataframe().set_index("config.prune.sparsity")
    off = TrialStore(str(tmp_path / "off")).dataframe().set_index("config.prune.sparsity")
    doomed = on[on["status"] == "doomed"]
    assert len(doomed) >= 1 and set(doomed.index) == {0.99}, on["status"]
    assert doomed["error"].str.startswith("doomed: no input->output path").all()
    assert (doomed["epochs"] == 0).all() and (doomed["train_time_s"] == 0).all()
    assert (doomed["effective_sparsity"] == 1.0).all()
    # unscreened, the same configs train to chance: the time the screen saves
    wasted = off.loc[off.index == 0.99]
    assert (wasted["status"] == "ok").all() and (wasted["train_time_s"] > 0).all()
    assert (wasted["test_accuracy"] <= 0.2).all()
    assert screened.counts.get("doomed") == len(doomed) and plain.counts == {"ok": 6}
    # the robustness columns of every trained trial (issue 18: all parts run in a sweep)
    trained = on[on["status"] == "ok"]
    assert trained["adv_accuracy"].between(0, 1).all() and trained["gap_accuracy"].notna().all()
    assert (trained["gap_accuracy"] - (trained["train_accuracy"] - trained["test_accuracy"])
            ).abs().max() < 1e-9
    assert (trained["effective_sparsity"] >= trained["sparsity"] - 1e-12).all()
    assert trained["layer_effective_sparsity"].map(len).eq(2).all()
    # the front of the trials above chance (1/10 + 0.02, the CLI's rule) is the same
    objs = ["test_accuracy:max", "sparsity:max"]
    fronts = [pareto_front(load_results(str(tmp_path / n), where="test_accuracy > 0.12"), objs)
              for n in ("on", "off")]
    cols = ["config.prune.sparsity", "test_accuracy"]
    assert fronts[0][cols].sort_values(cols).values.tolist() == \
        fronts[1][cols].sort_values(cols).values.tolist()


def test_a_doomed_trial_is_complete_and_infeasible_in_the_study(tmp_path: Path) -> None:
    """Through the real searcher (Ray's OptunaSearch under ``StudySearch``), no cluster needed:
    a doomed final report is told COMPLETE with the constraint ``doomed`` violated; ok stays
    feasible; a diverged one FAIL."""
    from optuna.trial import TrialState

    from sweeps.tune.study import StudySearch, new_study, open_storage, study_name
    from sweeps.tune.trainable import FINAL_FLAG, RESULT_STATUS

    space = parse_space({**SPACE, "sampler": {"name": "tpe", "seed": 0},
                         "storage": str(tmp_path / "r")})
    storage, sampler = open_storage(space), space.make_sampler()
    new_study(space, storage, sampler)
    search = StudySearch(space.define_by_run(), metric=space.metrics, mode=space.modes,
                         sampler=sampler, storage=storage, study_name=study_name(space))
    outcomes = {"t-ok": "ok", "t-doomed": "doomed", "t-diverged": "diverged"}
    for trial_id, status in outcomes.items():
        assert search.suggest(trial_id) is not None
        search.on_trial_complete(trial_id, {FINAL_FLAG: True, RESULT_STATUS: status,
                                            "test_accuracy": 0.1, "sparsity": 0.99})
    study = optuna.load_study(study_name=study_name(space), storage=storage)
    by_id = {t.user_attrs["trial_id"]: t for t in study.get_trials(deepcopy=False)}
    assert by_id["t-ok"].state == TrialState.COMPLETE and by_id["t-ok"].constraints == {}
    assert by_id["t-doomed"].state == TrialState.COMPLETE
    assert by_id["t-doomed"].constraints == {"doomed": 1.0}
    assert by_id["t-diverged"].state == TrialState.FAIL
    assert [t.user_attrs["trial_id"] for t in study.best_trials] == ["t-ok"]


def test_the_budget_screen_reaches_every_trial_config(tmp_path: Path) -> None:
    space = parse_space({**SPACE, "budget": {"screen": {"min_density": 0.05}},
                         "storage": str(tmp_path / "r")})
    assert space.base_config()["prune"]["screen"] == {"enabled": True, "min_density": 0.05}
    own = parse_space({**SPACE, "fixed": {**SPACE["fixed"], "prune": {
        "criterion": "magnitude", "screen": {"enabled": False}}}, "storage": str(tmp_path / "r")})
    assert own.base_config()["prune"]["screen"] == {"enabled": False}


def test_validate_screen_prints_the_doomed_share_by_criterion_and_sparsity(
        tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from sweeps.cli import app

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**SPACE, "storage": str(tmp_path / "r")}))
    res = CliRunner().invoke(app, ["validate", str(path), "--samples", "2", "--screen", "3"])
    assert res.exit_code == 0, res.output
    rows = [line.split("│")[1:6] for line in res.output.splitlines()
            if line.startswith("│ magnitude")]
    table = {float(s): (int(n), int(d)) for _, s, n, d, _ in
             ([c.strip() for c in r] for r in rows)}
    # every choice is drawn at least once; only 0.99 is doomed, every time
    assert set(table) == {0.3, 0.6, 0.99}
    assert table[0.99][1] == table[0.99][0] >= 1 and table[0.3][1] == table[0.6][1] == 0
    assert f"doomed: {table[0.99][1]} of {sum(n for n, _ in table.values())} screened" \
        in res.output
    bad = CliRunner().invoke(app, ["validate", str(path), "--screen", "-1"])
    assert bad.exit_code == 2 and "--screen -1" in bad.output


def test_the_shipped_robustness_space_validates_with_its_objectives() -> None:
    from typer.testing import CliRunner

    from sweeps.cli import app

    from .conftest import REPO

    res = CliRunner().invoke(app, ["validate", str(REPO / "search_spaces" /
                                                   "robustness_mnist1d.yaml"), "--samples", "2"])
    assert res.exit_code == 0, res.output
    assert "adv_accuracy (max)" in res.output and "gap_loss (min)" in res.output
