"""Small things users hit (issue 12, item 7), each on the real CLI: ``--version``; the sweep's
final table in a pipe (not cut at 80 columns, a note on chance / collapsed trials, no Ray
token-auth warning); time budget -> exit 0, Ctrl-C -> 130; the README's ``schedule export``
example; ``RESULTS/trials`` read as ``RESULTS``."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from sweeps.results.flags import LEGEND, add_note, trial_note
from sweeps.results.pareto import Results
from sweeps.results.paths import results_dir
from sweeps.results.store import TrialStore

from .conftest import REPO, cli, kill_session, write_space

SPACE = """\
name: small
objectives: [{metric: test_accuracy, mode: max}, {metric: sparsity, mode: max}]
sampler: {name: grid, seed: 0}
# the screen off: this sweep trains its collapsed trial to show how the table flags it (a
# screened sweep ends it as doomed instead: tests/sweeps/test_screen.py)
budget: {num_samples: 3, max_concurrent: 2, screen: {enabled: false}}
fixed:
  seed: 0
  model: {name: mlp}
  data: {name: digits}
  train: {epochs: 1, optimizer: adam, lr: 0.01, device: cpu}
  prune: {criterion: magnitude, schedule: one_shot, allocation: global}
params:
  # 0.999: both hidden layers of the MLP lose every weight -> chance accuracy, 2 collapsed
  prune.sparsity: {type: choice, values: [0.5, 0.85, 0.999]}
storage: res
wandb: {mode: disabled}
"""

#: trials long enough that a 3 s time budget (or a Ctrl-C) cuts the sweep short
LONG = """\
name: {name}
objectives: [{{metric: test_accuracy, mode: max}}, {{metric: sparsity, mode: max}}]
sampler: {{name: random, seed: 0}}
budget: {{num_samples: {samples}, max_concurrent: 1, time_budget_s: {budget}}}
fixed:
  model: {{name: mlp}}
  data: {{name: digits}}
  train: {{epochs: 2, optimizer: adam, lr: 0.01, device: cpu}}
params:
  prune.sparsity: {{type: float, low: 0.5, high: 0.9}}
storage: {name}
wandb: {{mode: disabled}}
"""


def prunetune(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess, stdout a pipe (not a terminal), no COLUMNS."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "sweeps.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------------------ fast
def test_version_prints_the_installed_version() -> None:
    p = prunetune("--version")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"prunetune {version('prunetune')}"


@pytest.mark.parametrize(("row", "note"), [
    ({"test_accuracy": 0.11, "config.data.name": "digits"}, "chance"),  # 1/10 + 0.02
    ({"test_accuracy": 0.12, "config.data.name": "mnist1d"}, "chance"),
    ({"test_accuracy": 0.13, "config.data.name": "digits"}, ""),
    ({"test_accuracy": 0.025, "config.data.name": "cifar100"}, "chance"),
    ({"test_accuracy": 0.05, "config.data.name": "cifar100"}, ""),
    ({"test_accuracy": 0.51, "num_classes": 2, "config.data.name": "mine:data"}, "chance"),
    ({"test_accuracy": 0.26, "config.data.options": '{"num_classes": 4}'}, "chance"),
    ({"test_accuracy": 0.3, "config.data.options": '{"num_classes": 4}'}, ""),
    ({"test_accuracy": 0.1, "config.data.name": "mine:data"}, "chance? (10 classes assumed)"),
    ({"test_accuracy": 0.5, "n_collapsed": 2, "config.data.name": "digits"}, "collapsed: 2"),
    ({"test_accuracy": 0.08, "n_collapsed": 1.0, "config.data.name": "digits"},
     "chance, collapsed: 1"),
    ({"test_accuracy": float("nan"), "n_collapsed": None, "config.data.name": "digits"}, ""),
    ({"test_accuracy": 0.9, "n_collapsed": 0, "config.data.name": "digits"}, ""),
])
def test_trial_note_rule(row: dict, note: str) -> None:
    assert trial_note(row) == note


def test_results_dir_maps_the_trials_folder_to_its_results(tmp_path: Path) -> None:
    (tmp_path / "res" / "trials").mkdir(parents=True)
    res = str(tmp_path / "res")
    assert results_dir(res + "/trials") == res
    assert results_dir(res + "/trials/") == res
    assert results_dir(res) == res
    assert results_dir(str(tmp_path / "trials")) == str(tmp_path / "trials")  # not a dir
    assert results_dir("s3://b/x/trials/?endpoint_override=h:9000") == \
        "s3://b/x?endpoint_override=h:9000"
    assert results_dir("s3://b/trials-2") == "s3://b/trials-2"


# ------------------------------------------------------------------------------ a real sweep
@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str, Path]]:
    """A 3-trial sweep through the CLI, stdout a pipe, no COLUMNS and no RAY_AUTH_MODE (as a
    user's shell): (exit code, output, results dir)."""
    tmp = tmp_path_factory.mktemp("small")
    space = write_space(tmp / "space.yaml", SPACE)
    saved = {k: os.environ.pop(k) for k in ("COLUMNS", "RAY_AUTH_MODE") if k in os.environ}
    try:
        proc = cli("sweep", str(space), "--num-cpus", "2", "--log-interval", "1", cwd=tmp)
    finally:
        os.environ.update(saved)
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        kill_session(proc.pid)
    yield proc.returncode, out, tmp / "res"


@pytest.mark.slow
def test_sweep_table_in_a_pipe_is_whole_and_flags_the_chance_trial(
        small: tuple[int, str, Path]) -> None:
    rc, out, res = small
    assert rc == 0, out
    assert "Pareto front" in out and "3/3 recorded" in out
    assert "…" not in out, out  # rich's default 80 columns cut ids, headers and values
    df = TrialStore(str(res)).dataframe()
    rows = {r.trial_id: next((x for x in out.splitlines() if x.startswith("│ " + r.trial_id)),
                             None) for r in df.itertuples()}
    for r in df.itertuples():  # every front row whole: id, both objectives
        line = rows[r.trial_id]
        assert line is not None, out
        cells = [c.strip() for c in line.split("│")]
        assert f"{r.test_accuracy:.4g}" in cells and f"{r.sparsity:.4g}" in cells, line
    worst = df.loc[df.sparsity.idxmax()]
    assert worst.n_collapsed == 2 and worst.test_accuracy < 0.12  # the data did collapse
    assert "chance, collapsed: 2" in rows[worst.trial_id]
    for tid in df.trial_id[df.trial_id != worst.trial_id]:
        assert "chance" not in rows[tid] and "collapsed" not in rows[tid]
    assert LEGEND in " ".join(out.split())


@pytest.mark.slow
def test_sweep_in_a_pipe_prints_plain_progress_lines(small: tuple[int, str, Path]) -> None:
    """Issue 22, item 1: where the live table cannot draw, one line per finished trial and a
    status line every --log-interval seconds, greppable, without cursor moves or colours."""
    rc, out, res = small
    assert rc == 0, out
    assert "\x1b" not in out, out  # no ANSI: no cursor movement, no colour
    trials = [x for x in out.splitlines() if x.startswith("[prunetune] trial ")]
    df = TrialStore(str(res)).dataframe().set_index("trial_id")
    assert len(trials) == 3 and {x.split()[2] for x in trials} == set(df.index), out
    for line in trials:
        tid, status = line.split()[2:4]
        assert status == df.loc[tid, "status"], line
        assert f"test_accuracy={df.loc[tid, 'test_accuracy']:.4g} " in line, line
        assert f"sparsity={df.loc[tid, 'sparsity']:.4g} " in line, line
        assert re.search(r" elapsed=\d+\.\ds$", line), line
    status = [x for x in out.splitlines() if x.startswith("[prunetune] status ")]
    assert status, out  # the sweep runs for seconds: at --log-interval 1, several
    seconds = [int(re.search(r", (\d+)s;", x).group(1)) for x in status]  # type: ignore[union-attr]
    assert seconds == sorted(seconds) and all(
        re.match(r"\[prunetune\] status \d/3 done.*, \d+ running, \d+ pending, \d+s; best ", x)
        for x in status), status
    assert out.index(trials[-1]) < out.index("Pareto front")  # live, before the end


@pytest.mark.slow
def test_sweep_prints_no_ray_token_auth_warning(small: tuple[int, str, Path]) -> None:
    rc, out, _ = small
    assert rc == 0, out
    assert "Token authentication" not in out and "auth_token" not in out, out


@pytest.mark.slow
def test_readme_schedule_export_example_picks_an_accurate_pruned_trial(
        small: tuple[int, str, Path], tmp_path: Path) -> None:
    _, _, res = small
    readme = (REPO / "README.md").read_text()
    m = re.search(r"`(\.venv/bin/prunetune schedule export results/demo_mnist1d [^`]*)`",
                  readme)
    assert m, "README lost its schedule export example"
    argv = shlex.split(m.group(1))
    assert argv[:3] == [".venv/bin/prunetune", "schedule", "export"]
    argv = [a.replace("results/demo_mnist1d", str(res)) for a in argv[1:]]
    df = TrialStore(str(res)).dataframe()
    ok = df[(df.status == "ok") & (df.sparsity >= 0.8)]
    want = ok.sort_values(["test_accuracy", "trial_id"], ascending=[False, True]).iloc[0]
    assert want.sparsity < 0.99 and trial_note(want.to_dict()) == ""  # not the chance trial
    picked = []
    for results in (str(res), str(res / "trials"), f"file://{res}/trials"):
        p = prunetune(*[results if a == str(res) else a for a in argv], cwd=tmp_path)
        assert p.returncode == 0, p.stdout + p.stderr
        doc = yaml.safe_load((tmp_path / "tuned.yaml").read_text())
        picked.append(doc["provenance"]["trial_id"])
        (tmp_path / "tuned.yaml").unlink()
    assert picked == [want.trial_id] * 3


@pytest.mark.slow
def test_pareto_query_report_read_the_trials_folder_as_the_results(
        small: tuple[int, str, Path], tmp_path: Path) -> None:
    _, _, res = small
    forms = [str(res), str(res / "trials"), str(res / "trials") + "/", f"file://{res}",
             f"file://{res}/trials"]
    fronts = []
    for r in forms:
        p = prunetune("pareto", r, "--format", "json")
        assert p.returncode == 0, (r, p.stderr)
        fronts.append(json.loads(p.stdout)["rows"])
    assert all(f == fronts[0] for f in fronts) and len(fronts[0]) == 3
    counts = []
    for r in forms:
        p = prunetune("query", r, "SELECT count(*) AS n FROM trials", "--format", "csv")
        assert p.returncode == 0, (r, p.stderr)
        counts.append(p.stdout)
    assert counts == ["n\n3\n"] * len(forms)
    for i, r in enumerate(forms[:3]):
        p = prunetune("report", r, "--out", str(tmp_path / f"r{i}.html"))
        assert p.returncode == 0, (r, p.stderr)
        assert "3 trials plotted" in p.stdout


@pytest.mark.slow
def test_add_note_flags_front_rows_read_through_results(small: tuple[int, str, Path]) -> None:
    """The helper ``prunetune pareto`` / ``query`` tables call, on the sweep's real rows."""
    _, _, res = small
    with Results([str(res)]) as r:
        df = r.query("SELECT trial_id, sparsity FROM trials ORDER BY sparsity")
        noted = add_note(df, r)
        plain = add_note(r.query("SELECT count(*) AS n FROM trials"), r)
    assert list(noted["note"]) == ["", "", "chance, collapsed: 2"]
    assert "note" not in plain.columns  # no trial_id: nothing to look up


# ------------------------------------------------------------------------------ exit codes
def _long_sweep(tmp: Path, name: str, budget: float, samples: int = 4) -> subprocess.Popen[str]:
    space = write_space(tmp / f"{name}.yaml",
                        LONG.format(name=name, budget=budget, samples=samples))
    return cli("sweep", str(space), "--num-cpus", "1", cwd=tmp)


@pytest.mark.slow
def test_time_budget_stop_exits_0(tmp_path: Path) -> None:
    proc = _long_sweep(tmp_path, "budget", 3)
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        kill_session(proc.pid)
    df = TrialStore(str(tmp_path / "budget")).dataframe()
    ok = int((df.status == "ok").sum()) if len(df) else 0
    assert ok < 4, out  # the budget did cut the sweep short
    assert proc.returncode == 0, out
    assert "time budget reached" in out and "--resume" in out, out


@pytest.mark.slow
def test_ctrl_c_exits_130_even_with_a_time_budget(tmp_path: Path) -> None:
    # enough trials to be still running when the first row is on disk (rows are written in
    # batches, up to row_writer.FLUSH_S after a trial ends; these trials take ~0.1 s)
    proc = _long_sweep(tmp_path, "ctrlc", 600, samples=60)
    trials = tmp_path / "ctrlc" / "trials"
    try:
        deadline = time.time() + 240
        while not list(trials.glob("*.parquet")):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.time() < deadline, "no trial row in time"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=180)
    finally:
        kill_session(proc.pid)
    assert proc.returncode == 130, out
    assert "incomplete" in out and "time budget" not in out, out
