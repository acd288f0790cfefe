"""A sample of the fuzz inputs through the real ``.venv/bin/prunetune`` executable (its own
process, its own ``main()`` logging setup), compared with the in-process runner the rest of
the suite uses: the same exit code, the same stderr, the same (empty) stdout. This is what
shows the in-process results stand for what a user sees."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import check_accepted, check_refused, invoke, tiny_config_bytes
from .mutate import CONFIGS, SPACES, TEXT_RULES, bomb, dump, fast_config, set_path

REPO = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).parent / "prunetune"
RULES = {r.name: r for r in TEXT_RULES}


def real(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run([str(EXE), *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def _cfg(t: Path, data: bytes) -> Path:
    (t / "c.yaml").write_bytes(data)
    return t / "c.yaml"


def _space(t: Path, data: bytes) -> Path:
    (t / "s.yaml").write_bytes(data)
    return t / "s.yaml"


DIGITS = dump(fast_config(CONFIGS[0].parent / "digits_snip.yaml"))
DEMO = yaml.safe_load((SPACES[0].parent / "demo_mnist1d.yaml").read_text())

#: (args builder(tmp, results, schedule) -> argv, valid reason or None)
CASES: list[Any] = [
    pytest.param(lambda t, r, s: ["run", _cfg(t, RULES["latin1_byte"].apply(DIGITS))], None,
                 id="run-latin1"),
    pytest.param(lambda t, r, s: ["run", _cfg(t, DIGITS + bomb(9))], None, id="run-alias-bomb"),
    pytest.param(lambda t, r, s: ["run", _cfg(t, RULES["python_object_apply"].apply(DIGITS))],
                 None, id="run-python-tag"),
    pytest.param(lambda t, r, s: ["run", _cfg(t, DIGITS), "--set", "prune.sparsity=["], None,
                 id="run-set-bad-yaml"),
    pytest.param(lambda t, r, s: ["run", _cfg(t, DIGITS), "--json", "/sys/x.json"], None,
                 id="run-json-unwritable"),
    pytest.param(lambda t, r, s: ["run", _cfg(t, RULES["nul_byte"].apply(DIGITS))], None,
                 id="run-nul-byte"),
    pytest.param(lambda t, r, s: ["run", _cfg(t, tiny_config_bytes()), "--json", t / "o.json"],
                 "the tiny config, 0 epochs", id="run-valid"),
    pytest.param(lambda t, r, s: ["validate", _space(t, dump(set_path(DEMO, "budget.x", 1)))],
                 None, id="validate-unknown-key"),
    pytest.param(lambda t, r, s: ["sweep", _space(t, dump(set_path(
        DEMO, ("params", "prune.sparsity", "high"), 7)))], None, id="sweep-bad-range"),
    pytest.param(lambda t, r, s: ["sweep", SPACES[0], "--address", "banana"], None,
                 id="sweep-bad-address"),
    pytest.param(lambda t, r, s: ["pareto", r, "--where", "1=1); COPY (SELECT 1) TO "
                                  f"'{t}/pwn.csv'; SELECT * FROM trials WHERE (1=1"], None,
                 id="pareto-where-injection"),
    pytest.param(lambda t, r, s: ["query", r, f"COPY (SELECT 1) TO '{t}/pwn.csv'"], None,
                 id="query-copy"),
    pytest.param(lambda t, r, s: ["report", r, "--out", t], None, id="report-out-directory"),
    pytest.param(lambda t, r, s: ["schedule", "export", r, "--trial", "nosuch", "--out",
                                  t / "s.yaml"], None, id="export-unknown-trial"),
    pytest.param(lambda t, r, s: ["apply", _cfg(t, dump(set_path(
        yaml.safe_load(s), "version", True)))], None, id="apply-version-true"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("build", "valid"), CASES)
def test_real_process_matches_in_process(results_dir: Path, schedule_text: bytes,
                                         tmp_path: Path, build: Callable[..., list[Any]],
                                         valid: str | None) -> None:
    argv = build(tmp_path, results_dir, schedule_text)
    start = time.perf_counter()
    p = real(*argv, cwd=tmp_path)
    seconds = time.perf_counter() - start
    here = invoke(*argv)
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    if valid is None:
        line = check_refused(here)
        assert (p.returncode, p.stdout, p.stderr) == (2, "", line + "\n"), (p, here)
        if argv[0] == "sweep":  # pre-launch: the process start (~3 s) and nothing more
            assert seconds < 30, seconds
    else:
        check_accepted(here, "trial result")
        assert p.returncode == 0 and p.stderr == "" and "trial result" in p.stdout, p
    assert not (tmp_path / "pwn.csv").exists()


def test_cases_cover_every_command() -> None:
    """The real-process sample touches every command of the fuzz suite (ids: command-what)."""
    assert {c.id.split("-")[0] for c in CASES} == {
        "run", "validate", "sweep", "pareto", "query", "report", "export", "apply"}
