"""The package follows the data flow (issue 12): ``sweeps/tune`` runs sweeps on Ray,
``sweeps/results`` reads what they wrote, ``sweeps/cli`` is the command line. Results are read
anywhere: no module of ``sweeps/results`` imports Ray (nor tune or cli), checked statically on
every import statement and for real, by reading a sweep's results in a Python where ``import
ray`` fails."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from .conftest import REPO
from .test_schema import record_sweep

PACKAGES = ("tune", "results", "cli")


def _imports(path: Path, pkg: str | None = None) -> set[str]:
    """Every module an ``import`` statement in ``path`` names (lazy ones inside functions too),
    relative ones resolved against the file's package ``pkg`` (default: from its place)."""
    if pkg is None:
        pkg = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                out.add(".".join([*base, *([node.module] if node.module else [])]))
            else:
                out.add(node.module or "")
    return out


def _modules(package: str) -> list[Path]:
    return sorted((REPO / "sweeps" / package).glob("*.py"))


def test_sweeps_is_three_packages_and_nothing_loose() -> None:
    loose = sorted(p.name for p in (REPO / "sweeps").glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"modules outside tune/, results/, cli/: {loose}"
    for package in PACKAGES:
        assert (REPO / "sweeps" / package / "__init__.py").is_file()
        assert len(_modules(package)) > 3


def test_results_import_neither_ray_nor_tune_nor_cli_and_tune_not_cli() -> None:
    forbidden = {"results": ("ray", "sweeps.tune", "sweeps.cli"), "tune": ("sweeps.cli",)}
    bad = []
    for package, names in forbidden.items():
        for path in _modules(package):
            for mod in _imports(path):
                if any(mod == n or mod.startswith(n + ".") for n in names):
                    bad.append(f"{path.relative_to(REPO)} imports {mod}")
    assert not bad, bad


def test_the_static_check_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """The check above would pass on anything if ``_imports`` missed imports: it must not."""
    f = REPO / "sweeps" / "results" / "trial_files.py"  # the store's file code (issue 17)
    found = _imports(f)
    assert "pyarrow" in found and "sweeps.results.schema" in found
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    import ray.tune\n    from ray import train\n"
                     "    from ..tune import launch\n")
    assert _imports(probe, "sweeps.results") == {"ray.tune", "ray", "sweeps.tune"}


def test_results_are_read_in_a_python_without_ray(tmp_path: Path) -> None:
    root = tmp_path / "res"
    _, accs = record_sweep(root)  # 9 trials written the way a sweep writes them
    code = textwrap.dedent(f"""
        import importlib, pkgutil, sys

        class NoRay:  # `import ray` fails, as on a laptop without it
            def find_spec(self, name, path=None, target=None):
                if name == "ray" or name.startswith("ray."):
                    raise ImportError("ray is not installed here")
                return None

        sys.meta_path.insert(0, NoRay())
        import sweeps.results
        for m in pkgutil.iter_modules(sweeps.results.__path__):
            importlib.import_module("sweeps.results." + m.name)
        from sweeps.results.pareto import Results
        from sweeps.results.store import TrialStore
        from sweeps.results.report import write_report
        from pathlib import Path

        df = TrialStore({str(root)!r}).dataframe()
        front = Results({str(root)!r}).front(["test_accuracy:max", "sparsity:max"])
        out = write_report({str(root)!r}, Path({str(tmp_path / "r.html")!r}),
                           ["test_accuracy:max", "sparsity:max"])
        print(len(df), len(front), sorted(front["trial_id"]))
        assert not any(k == "ray" or k.startswith("ray.") for k in sys.modules)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    n, n_front, *_ = done.stdout.split(maxsplit=2)
    assert int(n) == 9 and 1 <= int(n_front) <= 9
    assert (tmp_path / "r.html").stat().st_size > 10_000
    # the best accuracy among the finished trials is on the front
    assert max(accs, key=accs.get) in done.stdout


def test_a_sweep_pickled_under_the_old_module_names_still_loads() -> None:
    """Tune pickled a sweep's searcher, scheduler and callbacks under the flat names of the
    old layout (``sweeps.schedulers``, ``sweeps.recorder``, ...): ``--resume`` of such a sweep
    unpickles them, so the old names resolve to the moved modules (the same objects)."""
    import importlib
    import pickle

    import sweeps
    from sweeps.tune.schedulers import DominatedStopper

    stopper = DominatedStopper("progress", ["test_accuracy"], ["max"], rungs=[500])
    old = pickle.dumps(stopper, protocol=0).replace(b"sweeps.tune.schedulers",
                                                    b"sweeps.schedulers")
    assert b"sweeps.schedulers" in old
    back = pickle.loads(old)
    assert type(back) is DominatedStopper and back.rungs == [500]
    for name, new in sweeps.MOVED.items():
        assert importlib.import_module(f"sweeps.{name}") is importlib.import_module(new)
    # every moved module is in the map, and nothing else is (modules written after the split
    # never had an old name)
    # new since the split: no old name
    added_since = {"option_types", "screen", "driver_log", "plan_clock", "parts",
                   # the pareto / store / report split (issue 17)
                   "aliases", "errors", "fronts", "objectives", "reader", "report_data",
                   "report_robustness", "report_rows",
                   "front_summary", "sources", "sql_sandbox", "statuses", "trial_files",
                   # space.py split (issue 17), the location resolver, the plan
                   "space_keys", "space_params", "space_sections", "space_validate",
                   "define_by_run", "samplers", "storage_checks", "plan", "location",
                   # packs and the background syncer (issue 20)
                   "pack", "journal", "syncer", "space_protocol", "wandb_sink",
                   "member_stops", "stop_client", "wandb_async", "driver_actor",
                   "row_writer"}
    moved = {p.stem for pkg in ("tune", "results") for p in (REPO / "sweeps" / pkg).glob("*.py")
             if p.stem != "__init__"} - added_since
    assert moved == {k for k, v in sweeps.MOVED.items() if not v.startswith("sweeps.cli")}
