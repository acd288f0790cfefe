"""`validate` (and so `sweep`, which runs the same checks first) builds the user's model."""

from __future__ import annotations

from pathlib import Path

import pytest

from pruning_core.base.errors import ConfigError
from sweeps.tune.space import parse_space, validate_space
from tests.conftest import user_code_dir

NETS = '''
from torch import nn

def good(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))

def broken(input_shape, num_classes):
    raise RuntimeError("boom")

def nothing(input_shape, num_classes):
    return nn.Sequential(nn.Flatten())
'''


@pytest.fixture
def space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "valnets.py").write_text(NETS)
    user_code_dir(monkeypatch, tmp_path, "valnets")

    def make(factory: str):
        return parse_space({
            "name": "v", "objectives": [{"metric": "test_accuracy", "mode": "max"}],
            "fixed": {"model": {"name": f"valnets:{factory}"}, "data": {"name": "digits"}},
            "params": {"prune.sparsity": {"type": "float", "low": 0.3, "high": 0.9}},
            "storage": str(tmp_path / "res")})
    return make


def test_a_good_factory_validates(space) -> None:
    assert len(validate_space(space("good"), n=4)) >= 4


@pytest.mark.parametrize(("factory", "pattern"), [
    ("broken", r"^model\.name: factory 'valnets:broken' raised RuntimeError: boom$"),
    ("nothing", r"^model\.name: the model 'valnets:nothing' builds has no Conv or Linear"),
])
def test_a_bad_factory_fails_validation_in_one_line(space, factory: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        validate_space(space(factory), n=4)


@pytest.mark.parametrize("command", ["validate", "sweep"])
def test_the_commands_refuse_a_broken_factory_in_one_line(tmp_path: Path, command: str) -> None:
    """`prunetune validate` and `prunetune sweep` (before Ray starts) on a factory that raises:
    one line naming model.name, exit 2. The factory's module is found in the directory the
    command runs in, as a user's would be."""
    from .conftest import cli, kill_session, write_space

    (tmp_path / "valnets.py").write_text(NETS)
    space = write_space(tmp_path / "space.yaml", """\
        name: v
        objectives: [{metric: test_accuracy, mode: max}]
        fixed:
          model: {name: "valnets:broken"}
          data: {name: digits}
        params:
          prune.sparsity: {type: float, low: 0.3, high: 0.9}
        storage: res
        """)
    proc = cli(command, str(space), cwd=tmp_path)
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        kill_session(proc.pid)
    assert proc.returncode == 2, out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and "model.name: factory 'valnets:broken' raised RuntimeError: boom" \
        in lines[0], out
    assert not (tmp_path / "res" / "trials").exists()  # nothing started


@pytest.mark.slow
def test_a_factory_that_fails_in_one_trial_is_an_error_row_and_the_sweep_goes_on(
        tmp_path: Path) -> None:
    """A factory option only some trials draw makes the factory raise inside the trial (on a
    Ray worker, past validation): that trial is recorded ``error`` with the exception's line,
    the other trial runs, the sweep exits 0."""
    from sweeps.results.store import TrialStore

    from .conftest import cli, kill_session, write_space

    (tmp_path / "touchy.py").write_text(
        "from torch import nn\n\n"
        "def build(input_shape, num_classes, explode=False):\n"
        "    if explode:\n"
        "        raise RuntimeError('boom in a trial')\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))\n")
    space = write_space(tmp_path / "space.yaml", """\
        name: touchy
        objectives: [{metric: test_accuracy, mode: max}]
        sampler: {name: grid}
        budget: {num_samples: 2, max_concurrent: 1, max_failures: 0}
        fixed:
          model: {name: "touchy:build"}
          data: {name: digits}
          train: {epochs: 1, device: cpu}
        params:
          model.options.explode: {type: choice, values: [false, true]}
        storage: res
        wandb: {mode: disabled}
        """)
    proc = cli("sweep", str(space), "--num-cpus", "1", cwd=tmp_path)
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        kill_session(proc.pid)
    assert proc.returncode == 0, out
    df = TrialStore(str(tmp_path / "res")).dataframe()
    by = dict(zip(df["config.model.options.explode"].map(bool), df["status"], strict=True))
    assert by == {False: "ok", True: "error"}, df[["status", "error"]]
    err = df.loc[df["status"] == "error", "error"].iloc[0]
    assert "RuntimeError: boom in a trial" in err
