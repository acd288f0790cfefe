"""Issue 22, item 5: "did you mean ...?" for unknown keys, criteria, models, datasets,
metrics and columns: one helper (``pruning_core.base.suggest``), the hint in the same one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pruning_core.base.errors import ConfigError
from pruning_core.base.registry import Registry
from pruning_core.base.suggest import close_names, did_you_mean, with_hint
from pruning_core.trials.registries import load_trial_config
from pruning_core.workloads.models import create_model

REPO = Path(__file__).resolve().parents[2]


def test_close_names_nearest_first_and_only_near_ones() -> None:
    assert close_names("snipp", ["grasp", "magnitude", "snip", "synflow"]) == ["snip"]
    assert close_names("pretrain_epoch", ["pretrain_epochs", "rewind_epoch", "name"]) == \
        ["pretrain_epochs"]  # a clear winner alone
    assert close_names("resnet", ["resnet18", "resnet20", "mlp"]) == ["resnet18", "resnet20"]
    assert close_names("SPARSITY", ["sparsity"]) == ["sparsity"]  # case-insensitive
    assert close_names("temp", ["mode", "temperature"]) == ["temperature"]  # cut short
    assert close_names("zz", ["sparsity", "steps"]) == []
    assert did_you_mean("stps", ["steps"], "prune.") == "did you mean prune.steps?"
    assert did_you_mean("qqq", ["steps"]) == ""
    assert with_hint("unknown x 'qqq'", "qqq", ["steps"]) == "unknown x 'qqq'"


@pytest.mark.parametrize(("data", "line"), [
    ({"prune": {"sparsty": 0.9}}, "prune.sparsty: unknown key; did you mean prune.sparsity?"),
    ({"prune": {"allocation": {"nme": "erk"}}},
     "prune.allocation.nme: unknown key; did you mean prune.allocation.name?"),
    ({"modle": {"name": "mlp"}}, "modle: unknown key; did you mean model?"),
    ({"metrics": {"speed": {"warmpu": 2}}},
     "metrics.speed.warmpu: unknown key; did you mean metrics.speed.warmup?"),
    ({"prune": {"criterion": "snipp"}},
     "prune.criterion: unknown criterion 'snipp'; valid: grasp, magnitude, random, snip, "
     "sparsegpt, synflow, wanda; did you mean snip?"),
    ({"model": {"name": "lenet"}}, "; did you mean lenet5?"),
    ({"data": {"name": "mnist_1d"}}, "; did you mean mnist1d?"),
    ({"prune": {"schedule": "exponentail"}}, "; did you mean exponential?"),
    ({"prune": {"criterion": "grasp", "criterion_options": {"temprature": 100}}},
     "; did you mean prune.criterion_options.temperature?"),
])
def test_config_errors_suggest_the_nearest_name(data: dict, line: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_trial_config(data)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg == line if not line.startswith(";") else msg.endswith(line), msg


def test_a_key_nothing_is_near_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"^prune\.zzz: unknown key \(check the spelling\); "
                                          r"valid: criterion, .*sparsity"):
        load_trial_config({"prune": {"zzz": 1}})


def test_registry_and_options_suggest() -> None:
    widgets: Registry[int] = Registry("widget")
    widgets.add("alpha", 1)
    widgets.add("beta", 2)
    with pytest.raises(ConfigError, match=r"^unknown widget 'alpah'; valid: alpha, beta; "
                                          r"did you mean alpha\?$"):
        widgets.get("alpah")
    with pytest.raises(ConfigError, match=r"did you mean width\?$"):
        create_model("resnet20", (3, 32, 32), 10, widht=0.5)


def test_space_keys_and_metrics_suggest() -> None:
    from sweeps.tune.space import parse_space

    base = {"name": "s", "objectives": [{"metric": "test_accuracy", "mode": "max"}],
            "fixed": {"model": {"name": "mlp"}, "data": {"name": "digits"}},
            "params": {"prune.sparsity": {"type": "float", "low": 0.1, "high": 0.9}}}
    cases = [
        ({"budget": {"num_sampels": 4}}, "budget.num_sampels: unknown key; did you mean "
                                         "budget.num_samples?"),
        ({"params": {"prune.sparsity": {"type": "float", "low": 0.1, "hgh": 0.9}}},
         "params.prune.sparsity.hgh: unknown key; did you mean params.prune.sparsity.high?"),
        ({"objectives": [{"metric": "test_acuracy", "mode": "max"}]},
         "; did you mean test_accuracy?"),
        ({"scheduler": {"name": "asha", "metric": "test_los", "mode": "min"}},
         "; did you mean test_loss?"),
    ]
    for change, line in cases:
        with pytest.raises(ConfigError) as info:
            parse_space({**base, **change})
        msg = str(info.value)
        assert (msg.endswith(line) if line.startswith(";") else line in msg), msg


def test_results_columns_suggest(tmp_path: Path) -> None:
    from sweeps.results.pareto import Results, ResultsError
    from sweeps.results.store import TrialStore

    TrialStore(str(tmp_path)).write({"sweep": "s", "trial_id": "t0", "status": "ok",
                                     "test_accuracy": 0.5, "sparsity": 0.5})
    with Results([str(tmp_path)]) as r, \
            pytest.raises(ResultsError, match=r"unknown column 'test_acuracy'; did you mean "
                                              r"test_accuracy\?$"):
        r.resolve("test_acuracy")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sweeps.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("key", "line"), [
    ("prune.sparsty=0.5", "error: prune.sparsty: unknown key; did you mean prune.sparsity?"),
    ("prune.criterion=snipp", "error: prune.criterion: unknown criterion 'snipp'; valid: grasp, "
                              "magnitude, random, snip, sparsegpt, synflow, wanda; did you mean "
                              "snip?"),
])
def test_the_real_cli_suggests_in_its_one_line(key: str, line: str) -> None:
    p = _cli("run", "configs/digits_snip.yaml", "--set", key)
    assert p.returncode == 2 and p.stdout == "", p.stdout + p.stderr
    assert p.stderr.splitlines() == [line], p.stderr
