"""Issue 17, item 5: results are read with no user code. A sweep whose trials name the user's
model factory (``model.name: "barnets.nets:build"``) writes results that ``schedule export``,
``pareto``, ``query`` and ``report`` read in a Python where ``barnets`` is absent (the results
copied to a laptop); the exported schedule applies again where the code is. Export never imports
code it did not import before: a factory that is present still passes ``code_trust``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pruning_core.base.errors import ConfigError
from pruning_core.trials.tuned import Schedule
from tests.conftest import user_code_dir
from tests.security.conftest import prunetune

#: network order (stem, body, head) is not the names' sorted order (body, head, stem)
NETS = '''from torch import nn


class Net(nn.Module):
    def __init__(self, input_shape, num_classes, width=8):
        super().__init__()
        c, h, w = input_shape
        self.stem = nn.Conv2d(c, 4, 3, padding=1)
        self.body = nn.Linear(4 * h * w, width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.stem(x).relu().flatten(1)
        return self.head(self.body(x).relu())


def build(input_shape, num_classes, width=8):
    return Net(input_shape, num_classes, width)
'''
LAYERS = ["stem.weight", "body.weight", "head.weight"]
CONFIG: dict[str, Any] = {
    "seed": 0,
    "model": {"name": "barnets.nets:build", "options": {"width": 8}},
    "data": {"name": "digits", "batch_size": 64, "train_limit": 128, "test_limit": 64},
    "train": {"epochs": 1, "lr": 0.01, "device": "cpu"},
    "prune": {"criterion": "magnitude", "sparsity": 0.5, "schedule": "one_shot", "steps": 1},
}


@pytest.fixture
def code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The sweep machine's working directory: ``barnets/nets.py`` (imported in this process
    while the fixture lasts, forgotten after)."""
    root = tmp_path / "code"
    (root / "barnets").mkdir(parents=True)
    (root / "barnets" / "__init__.py").write_text("")
    (root / "barnets" / "nets.py").write_text(NETS)
    user_code_dir(monkeypatch, root, "barnets")
    yield root
    for name in [m for m in sys.modules if m.split(".")[0] == "barnets"]:
        del sys.modules[name]


def write_results(root: Path, config: dict[str, Any], sparsities: list[float],
                  model_name: str | None = None) -> None:
    """One ok row per sparsity through the real ``TrialStore``, as the sweep machine writes
    them: ``config.*`` columns of the validated config and per-layer sparsities in the order of
    the model's prunable layers (built here, where the code is). ``model_name``: written in
    place of the validated one (a hostile results file)."""
    from pruning_core.config import flatten
    from pruning_core.trials.experiment import prunable_layers
    from pruning_core.trials.registries import load_trial_config
    from sweeps.results.store import TrialStore

    store = TrialStore(str(root))
    for i, sp in enumerate(sparsities):
        data = json.loads(json.dumps(config))
        data["prune"]["sparsity"] = sp
        cfg = load_trial_config(data)  # imports barnets: we are where the code is
        row: dict[str, Any] = {"sweep": "bar", "trial_id": f"t{i:02d}", "status": "ok",
                               "test_accuracy": 0.9 - 0.2 * sp, "sparsity": sp,
                               "target_sparsity": sp}
        for key, value in flatten(cfg.model_dump(mode="json")).items():
            row[f"config.{key}"] = value if value != {} else None
        if model_name is not None:
            row["config.model.name"] = model_name
        for j, info in enumerate(prunable_layers(cfg)):
            row[f"layer_sparsity.{info.name}"] = sp + 0.01 * j
        store.write(row)


@pytest.fixture
def results(code: Path, tmp_path: Path) -> Path:
    root = tmp_path / "results"
    write_results(root, CONFIG, [0.5, 0.7, 0.9])
    return root


def test_results_are_read_and_exported_where_the_model_code_is_absent(
        results: Path, code: Path, tmp_path: Path) -> None:
    laptop = tmp_path / "laptop"  # neither the working directory nor PYTHONPATH holds barnets
    laptop.mkdir()
    out = laptop / "tuned.yaml"
    p = prunetune("schedule", "export", results, "--best", "test_accuracy",
                  "--where", "sparsity >= 0.7", "--out", out, cwd=laptop)
    assert p.returncode == 0, p.stderr
    assert "cannot import" not in p.stderr and "Traceback" not in p.stderr
    warning = p.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: model.name barnets.nets:build")
    assert "without kinds or shapes" in warning[0]
    assert "written to" in p.stdout

    s = Schedule.load(out)  # a valid schedule file
    assert s.names_only
    assert [e.name for e in s.layers] == LAYERS  # the network's order, from the results row
    assert [e.sparsity for e in s.layers] == pytest.approx([0.7, 0.71, 0.72])
    assert [e.depth for e in s.layers] == [0.0, 0.5, 1.0]
    assert all(e.kind is None and e.numel is None and e.shape is None for e in s.layers)
    doc = yaml.safe_load(out.read_text())
    assert doc["trial"]["model"] == {**doc["trial"]["model"], **CONFIG["model"]}  # real name
    assert doc["trial"]["data"]["name"] == "digits" and "prune" not in doc["trial"]
    assert doc["provenance"]["model"] == "barnets.nets:build"
    assert doc["provenance"]["trial_id"] == "t01" and s.prune.sparsity == 0.7
    assert s.target_sparsity == pytest.approx(0.7)  # the sparsity the trial reached

    p = prunetune("pareto", results, "--format", "json", cwd=laptop)
    assert p.returncode == 0, p.stderr
    assert sorted(r["trial_id"] for r in json.loads(p.stdout)["rows"]) == ["t00", "t01", "t02"]
    p = prunetune("query", results, "SELECT count(*) AS n FROM trials WHERE "
                  "\"config.model.name\" = 'barnets.nets:build'", "--format", "csv", cwd=laptop)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["n", "3"]
    p = prunetune("report", results, "--out", laptop / "r.html", cwd=laptop)
    assert p.returncode == 0, p.stderr
    assert (laptop / "r.html").stat().st_size > 10_000

    # back where the code is: the schedule prunes the same model with the trial's allocation
    res = tmp_path / "apply.json"
    p = prunetune("apply", out, "--model", "barnets.nets:build", "--json", res, cwd=code)
    assert p.returncode == 0, p.stderr
    r = json.loads(res.read_text())
    assert list(r["layer_sparsity"]) == LAYERS
    assert r["sparsity"] == pytest.approx(0.7, abs=0.01)
    assert "mapped" not in p.stdout  # the same layers: no mapping


def test_where_the_code_is_export_still_builds_the_model(results: Path, tmp_path: Path) -> None:
    from sweeps.cli.schedule import export_schedule

    s = export_schedule(results, tmp_path / "s.yaml", trial="t00")
    assert not s.names_only
    assert [(e.name, e.kind, e.shape) for e in s.layers] == [
        ("stem.weight", "conv", [4, 1, 3, 3]), ("body.weight", "linear", [8, 256]),
        ("head.weight", "linear", [10, 8])]
    assert s.trial["model"]["name"] == "barnets.nets:build"


def test_a_factory_that_is_here_but_not_user_code_is_still_refused(
        code: Path, tmp_path: Path) -> None:
    """Only an absent package is read without its code; one that is here goes through
    ``code_trust`` as before: a results row naming a library's callable is refused."""
    from sweeps.cli.schedule import export_schedule

    root = tmp_path / "hostile"
    write_results(root, CONFIG, [0.5], model_name="json:loads")
    with pytest.raises(ConfigError, match=r"^model\.name: 'json:loads' names the 'json' "
                                          r"library"):
        export_schedule(root, tmp_path / "s.yaml", trial="t00")


def test_a_names_only_schedule_maps_onto_no_other_model(code: Path, results: Path,
                                                        tmp_path: Path) -> None:
    from pruning_core.masking.targets import LayerInfo
    from sweeps.cli.schedule import export_schedule

    full = export_schedule(results, tmp_path / "s.yaml", trial="t01").model_dump(mode="json")
    doc = {**full, "layers": [{**e, "kind": None, "numel": None, "shape": None}
                              for e in full["layers"]]}
    s = Schedule.from_dict(doc)
    assert s.names_only
    same = [LayerInfo(n, "linear", (2, 2), 4, 0.0) for n in LAYERS]
    assert s.matches(same)  # names decide: the source trial's own allocation is reused
    assert s.trial_config(same).prune.allocation.name == "global"
    other = [LayerInfo("fc.weight", "linear", (2, 2), 4, 0.0)]
    with pytest.raises(ConfigError, match=r"^schedule: layers hold names only \(exported where "
                                          r"barnets\.nets:build was not importable\) and the "
                                          r"target model's prunable layers differ \(fc\.weight"):
        s.trial_config(other)
    # kind, numel and shape: all three, or none
    half = {**full, "layers": [{**full["layers"][0], "shape": None}, *full["layers"][1:]]}
    with pytest.raises(ConfigError, match=r"layers\.0: .*kind, numel and shape are given "
                                          r"together, or all null"):
        Schedule.from_dict(half)
