"""`prunetune pareto / query / report` through typer's CliRunner (and a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from sweeps.cli.results import register
from sweeps.results.store import TrialStore

REPO = Path(__file__).resolve().parents[2]

CRITERIA = ("snip", "synflow", "magnitude")
LAYERS = ("conv1.weight", "conv2.weight", "fc.weight")


def write_results(root: Path, n: int = 45, seed: int = 0) -> pd.DataFrame:
    """A tiny sweep through the real store: one Parquet file per trial, every status."""
    rng = np.random.default_rng(seed)
    store = TrialStore(str(root))
    rows = []
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    for i in range(n):
        sp = float(rng.choice([0.5, 0.8, 0.9, 0.95]))
        status = ("ok", "ok", "ok", "error", "diverged", "stopped_early")[i % 6] if i else "ok"
        acc = None if status == "error" else float(0.9 - 0.3 * sp**4 + rng.normal(0, 0.03))
        if status in ("diverged", "stopped_early"):
            acc = 0.99  # would dominate everything if it were not excluded
        row = {
            "sweep": "demo", "trial_id": f"t{i:03d}", "status": status,
            "error": "boom" if status == "error" else None,
            "start_time": t0 + pd.Timedelta(minutes=i),
            "end_time": t0 + pd.Timedelta(minutes=i + 3),
            "test_accuracy": acc, "test_loss": 0.4, "train_accuracy": 0.95,
            "sparsity": sp + float(rng.normal(0, 0.001)), "target_sparsity": sp,
            "params": 1000, "params_kept": int(1000 * (1 - sp)), "flops_dense": 10**6,
            "flops": int(10**6 * (1 - sp)), "prune_time_s": 0.1, "train_time_s": 1.0,
            "epochs": 3, "n_collapsed": 0,
            "config.prune.criterion": CRITERIA[i % 3], "config.prune.sparsity": sp,
            "config.prune.schedule": "linear" if i % 2 else "one_shot",
            "config.prune.steps": 1 + i % 4, "config.model.name": "cnn1d",
            "node_ip": "10.0.0.1", "hostname": "node", "prunetune_version": "0.1.0", "seed": i,
        }
        for layer in LAYERS:
            row[f"layer_sparsity.{layer}"] = float(np.clip(sp + rng.normal(0, 0.03), 0, 1))
        store.write(row)
        rows.append(row)
    return pd.DataFrame(rows)


@pytest.fixture
def results(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    return tmp_path / "res", write_results(tmp_path / "res")


@pytest.fixture
def runner_app() -> tuple[CliRunner, typer.Typer]:
    app = typer.Typer()
    register(app)
    return CliRunner(), app


def invoke(ra: tuple[CliRunner, typer.Typer], *args: str) -> tuple[int, str, str]:
    runner, app = ra
    r = runner.invoke(app, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def expected_front(df: pd.DataFrame, objs: list[str], statuses=("ok",)) -> list[str]:
    """By hand: rows of ``statuses`` no other such row dominates; a NaN objective is never on it."""
    signs = {o.split(":")[0]: 1.0 if o.endswith(":max") else -1.0 for o in objs}
    rows = df[df.status.isin(statuses)].dropna(subset=list(signs))
    pts = [(r["trial_id"], [signs[m] * r[m] for m in signs]) for _, r in rows.iterrows()]

    def dominated(p: list[float]) -> bool:
        return any(all(a >= b for a, b in zip(q, p, strict=True)) and q != p for _, q in pts)

    return sorted(t for t, p in pts if not dominated(p))


def test_pareto_json_excludes_unfinished_trials(results, runner_app) -> None:
    root, df = results
    code, out, _ = invoke(runner_app, "pareto", root, "--format", "json")
    assert code == 0
    doc = json.loads(out)
    ids = sorted(r["trial_id"] for r in doc["rows"])
    assert ids == expected_front(df, ["test_accuracy:max", "sparsity:max"])
    assert {r["status"] for r in doc["rows"]} == {"ok"}
    assert doc["hypervolume"]["all"] > 0 and len(doc["reference_point"]) == 2
    assert "config.prune.criterion" in doc["rows"][0]  # full names in machine output
    first = doc["rows"][0]  # the per-layer map as an object, and its per-layer columns
    assert set(first["layer_sparsity"]) == set(LAYERS)
    assert first["layer_sparsity"]["fc.weight"] == first["layer_sparsity.fc.weight"]


def test_include_status_brings_them_back(results, runner_app) -> None:
    root, df = results
    code, out, _ = invoke(runner_app, "pareto", root, "--format", "csv",
                          "--include-status", "diverged", "--include-status", "stopped_early")
    assert code == 0
    got = pd.read_csv(__import__("io").StringIO(out))
    assert set(json.loads(got["layer_sparsity"].iloc[0])) == set(LAYERS)  # JSON in CSV
    assert set(got["status"]) <= {"ok", "diverged", "stopped_early"}
    assert "diverged" in set(got["status"])
    want = expected_front(df, ["test_accuracy:max", "sparsity:max"],
                          ("ok", "diverged", "stopped_early"))
    assert sorted(got["trial_id"]) == want


def test_by_where_three_objectives_and_table(results, runner_app) -> None:
    root, df = results
    objs = ["test_accuracy:max", "sparsity:max", "flops:min"]
    code, out, _ = invoke(runner_app, "pareto", root, *[a for o in objs for a in ("-o", o)],
                          "--by", "criterion", "--where", "sparsity >= 0.85",
                          "--format", "json")
    assert code == 0
    rows = json.loads(out)["rows"]
    ok = df[(df.status == "ok") & (df.sparsity >= 0.85)]
    want = sorted(t for _, g in ok.groupby("config.prune.criterion")
                  for t in expected_front(g, objs))
    assert sorted(r["trial_id"] for r in rows) == want
    assert set(json.loads(out)["hypervolume"]) == set(CRITERIA)
    code, out, _ = invoke(runner_app, "pareto", root, "--by", "criterion")
    assert code == 0 and "Pareto front" in out and "criterion" in out and "hypervolume" in out


def test_pareto_plot_png_and_html(results, runner_app, tmp_path: Path) -> None:
    root, _ = results
    for name in ("front.png", "front.html"):
        code, _, _ = invoke(runner_app, "pareto", root, "--plot", tmp_path / name)
        assert code == 0 and (tmp_path / name).stat().st_size > 1000
    assert (tmp_path / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_query(results, runner_app) -> None:
    root, _ = results
    code, out, _ = invoke(runner_app, "query", root, "--format", "json",
                          "SELECT status, count(*) AS n FROM trials GROUP BY ALL ORDER BY 1")
    assert code == 0
    assert {r["status"]: r["n"] for r in json.loads(out)} == {
        "diverged": 7, "error": 7, "ok": 24, "stopped_early": 7}
    code, out, _ = invoke(runner_app, "query", root,
                          "SELECT criterion, count(*) AS n FROM trials GROUP BY ALL")
    assert code == 0 and "snip" in out


@pytest.mark.parametrize("args, needle", [
    (["pareto", "{root}", "-o", "acc:maxx", "-o", "sparsity:max"], "must be 'max' or 'min'"),
    (["pareto", "{root}", "-o", "test_accuracy:max"], "give 2 or 3"),
    (["pareto", "{root}", "-o", "a:max", "-o", "b:max", "-o", "c:max", "-o", "d:max"],
     "give 2 or 3"),
    (["pareto", "{root}", "-o", "test_acc:max", "-o", "sparsity:max"], "unknown column"),
    (["pareto", "{root}", "--by", "critrion"], "did you mean criterion"),
    (["pareto", "{root}/nope"], "no such file or directory"),
    (["pareto", "{root}", "--where", "sparsity >>= 2"], "SQL error"),
    (["pareto", "{root}", "--format", "xml"], "--format"),
    (["pareto", "{root}", "--include-status", "weird"], "--include-status"),
    (["pareto", "{root}", "--ref", "0,0,0"], "--ref"),
    (["query", "{root}", "SELEC 1"], "SQL error"),
    (["query", "{root}"], "expected RESULTS... SQL"),
    (["report", "{root}", "-o", "nope:max", "-o", "sparsity:max"], "unknown column"),
])
def test_bad_input_is_one_line_and_exit_2(results, runner_app, args, needle) -> None:
    root, _ = results
    code, _, err = invoke(runner_app, *[a.format(root=root) for a in args])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err


def test_registration_raises_on_a_broken_import(monkeypatch: pytest.MonkeyPatch) -> None:
    import sweeps.cli.commands

    # a module that cannot be imported (None in sys.modules makes `import` raise ImportError)
    monkeypatch.setitem(sys.modules, "sweeps.cli.results", None)
    with pytest.raises(ImportError, match="sweeps.cli.results"):
        sweeps.cli.commands._register_extensions(typer.Typer())
    monkeypatch.undo()
    target = typer.Typer()
    sweeps.cli.commands._register_extensions(target)  # intact: every command is there
    names = {c.name for c in target.registered_commands}
    assert {"run", "names"}.isdisjoint(names)  # the engine commands live on the main app
    assert {"apply", "validate", "sweep", "pareto", "query", "report"} <= names


def test_real_prunetune_exits_loudly_when_a_dependency_is_broken(tmp_path: Path) -> None:
    # a broken pandas (it raises on import) ahead of the real one on the path
    (tmp_path / "pandas").mkdir()
    (tmp_path / "pandas" / "__init__.py").write_text(
        "raise ImportError('injected: this pandas is broken')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    r = subprocess.run([sys.executable, "-m", "sweeps.cli", "--help"], capture_output=True,
                       text=True, timeout=120, env=env, cwd=REPO)
    assert r.returncode == 1, r.stdout
    assert "ImportError: injected: this pandas is broken" in r.stderr
    assert "Usage" not in r.stdout  # not a CLI that quietly lacks its commands


def test_real_prunetune_subprocess(results) -> None:
    root, df = results
    r = subprocess.run([sys.executable, "-m", "sweeps.cli", "pareto", str(root), "--format",
                        "json"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    ids = sorted(x["trial_id"] for x in json.loads(r.stdout)["rows"])
    assert ids == expected_front(df, ["test_accuracy:max", "sparsity:max"])
    r = subprocess.run([sys.executable, "-m", "sweeps.cli", "pareto", str(root), "-o", "x:max"],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 2 and r.stderr.startswith("error: ")
