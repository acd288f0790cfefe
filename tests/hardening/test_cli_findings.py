"""Issue 8, fuzz-suite findings: click's own usage errors, wholly damaged results, a blank
``--where``, non-finite ``--ref`` and masks files missing a layer's mask. Each refusal: exit 2,
one ``error:`` stderr line naming the field, empty stdout, no traceback."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pruning_core.base.errors import ConfigError
from pruning_core.masking.masks import MaskSet
from sweeps.cli import app
from sweeps.results.pareto import Results, ResultsError, parse_ref

from .conftest import REPO, assert_one_line_error, prunetune

SPACE = REPO / "search_spaces" / "demo_mnist1d.yaml"


def invoke(*args: str | Path) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.security.conftest import write_exportable_results

    root = tmp_path_factory.mktemp("findings") / "results"
    write_exportable_results(root, [0.5, 0.7, 0.8])
    return root


# ------------------------------------------------------------- 1. click's usage errors
USAGE: list[object] = [
    pytest.param(["sweep", SPACE, "--num-samples", "abc"],
                 "error: --num-samples: 'abc' is not a valid integer", id="bad-int"),
    pytest.param(["sweep", SPACE, "--num-cpus", "1.5"],
                 "error: --num-cpus: '1.5' is not a valid integer", id="float-for-int"),
    pytest.param(["sweep", SPACE, "--num-samples", "a\nb"],
                 "error: --num-samples: 'a\\nb' is not a valid integer", id="newline-in-value"),
    pytest.param(["sweep"], "error: space_path: missing argument", id="missing-argument"),
    pytest.param(["schedule", "export"], "error: results: missing argument",
                 id="missing-argument-subgroup"),
    pytest.param(["sweep", SPACE, "--bogus"], "error: --bogus: no such option", id="no-option"),
    pytest.param(["--bogus"], "error: --bogus: no such option", id="no-option-top"),
    pytest.param(["bogus"], "error: command: no such command 'bogus'", id="no-command"),
    pytest.param(["rn"], "(did you mean 'run'?)", id="command-typo"),
    pytest.param(["schedule", "bogus"], "error: command: no such command 'bogus'",
                 id="no-command-subgroup"),
    pytest.param(["run", "c.yaml", "--set"], "error: --set: needs a value", id="option-no-value"),
    pytest.param(["run", "a.yaml", "b.yaml"], "got unexpected extra argument", id="extra-arg"),
]


@pytest.mark.parametrize(("args", "start"), USAGE)
def test_usage_error_is_one_line(args: list[str | Path], start: str) -> None:
    line = assert_one_line_error(invoke(*args))
    assert start in line, line
    assert "Usage:" not in line and "╭" not in line


def test_usage_error_one_line_in_the_real_process() -> None:
    p = prunetune("sweep", str(SPACE), "--num-samples", "abc")
    line = assert_one_line_error(p)
    assert line == "error: --num-samples: 'abc' is not a valid integer"


def test_help_is_unchanged() -> None:
    """--help and a bare group's help still print click's help (usage line included)."""
    out = invoke("sweep", "--help")
    assert out.exit_code == 0 and "Usage: prunetune sweep" in out.stdout
    assert "--num-samples" in out.stdout
    bare = invoke("schedule")
    assert "Usage: prunetune schedule" in bare.stdout + bare.stderr
    assert "error:" not in bare.stdout + bare.stderr


# ------------------------------------------------------------- 2. wholly damaged results
def _damaged(results: Path, tmp: Path, keep_good: bool) -> Path:
    dst = tmp / "res"
    shutil.copytree(results, dst)
    files = sorted(dst.rglob("*.parquet"))
    for f in files if not keep_good else files[:1]:
        f.write_bytes(f.read_bytes()[:50])
    return dst


@pytest.mark.parametrize("cmd", ["pareto", "query", "report", "export"])
def test_all_unreadable_is_one_error_line(results: Path, tmp_path: Path, cmd: str) -> None:
    bad = _damaged(results, tmp_path, keep_good=False)
    argv = {"pareto": ["pareto", bad], "query": ["query", bad, "SELECT 1 AS x FROM trials"],
            "report": ["report", bad, "--out", tmp_path / "r.html"],
            "export": ["schedule", "export", bad, "--best", "test_accuracy", "--out",
                       tmp_path / "s.yaml"]}[cmd]
    line = assert_one_line_error(invoke(*argv), str(bad), "all 3 results files are unreadable")
    assert "WARNING" not in line


def test_all_unreadable_logs_no_warning(results: Path, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    bad = _damaged(results, tmp_path, keep_good=False)
    with caplog.at_level(logging.WARNING), pytest.raises(ResultsError, match="nothing readable"):
        Results(bad).load()
    assert not caplog.records


def test_some_unreadable_still_skipped_with_a_warning(results: Path, tmp_path: Path) -> None:
    bad = _damaged(results, tmp_path, keep_good=True)
    out = invoke("query", bad, "SELECT count(*) AS n FROM trials", "--format", "csv")
    assert out.exit_code == 0, out.stderr
    assert out.stdout.split() == ["n", "2"]


# ------------------------------------------------------------- 3. blank --where
@pytest.mark.parametrize("where", ["   ", "\t", " -- only a comment", "/* */"])
@pytest.mark.parametrize("cmd", ["pareto", "report", "export"])
def test_blank_where_is_refused_naming_where(results: Path, tmp_path: Path, cmd: str,
                                             where: str) -> None:
    argv = {"pareto": ["pareto", results],
            "report": ["report", results, "--out", tmp_path / "r.html"],
            "export": ["schedule", "export", results, "--best", "test_accuracy", "--out",
                       tmp_path / "s.yaml"]}[cmd]
    assert_one_line_error(invoke(*argv, "--where", where), "--where", "no condition")


def test_empty_where_is_no_filter(results: Path) -> None:
    out = invoke("pareto", results, "--where", "", "--format", "csv", "--columns", "trial_id")
    assert out.exit_code == 0, out.stderr


# ------------------------------------------------------------- 4. non-finite --ref
@pytest.mark.parametrize("ref", ["nan,nan", "inf,0", "0,-inf", "1e999,0"])
def test_parse_ref_refuses_non_finite(ref: str) -> None:
    with pytest.raises(ResultsError, match="--ref .*finite"):
        parse_ref(ref, 2)


@pytest.mark.parametrize("cmd", ["pareto", "report"])
@pytest.mark.parametrize("ref", ["nan,nan", "inf,0", "1e999,0"])
def test_non_finite_ref_refused_in_pareto_and_report(results: Path, tmp_path: Path, cmd: str,
                                                     ref: str) -> None:
    argv = ["pareto", results] if cmd == "pareto" else ["report", results, "--out",
                                                        tmp_path / "r.html"]
    assert_one_line_error(invoke(*argv, "--ref", ref), "--ref", "finite")


def test_finite_ref_still_accepted() -> None:
    assert parse_ref("0,1e300", 2) == [0.0, 1e300]


# ------------------------------------------------------------- 5. masks naming the file
def _params() -> dict[str, torch.nn.Parameter]:
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    return {n: p for n, p in net.named_parameters() if n.endswith("weight")}


@pytest.mark.parametrize("keep", [["0.weight"], []], ids=["one-missing", "none"])
def test_masks_missing_tensor_names_the_file(tmp_path: Path, keep: list[str]) -> None:
    from safetensors.torch import save_file

    from pruning_core.masking.masks import MASKS_FORMAT, MASKS_VERSION

    params = _params()
    path = tmp_path / "m.safetensors"
    save_file({n: torch.ones_like(params[n], dtype=torch.uint8) for n in keep}, str(path),
              metadata={"format": MASKS_FORMAT, "version": str(MASKS_VERSION)})
    with pytest.raises(ConfigError) as info:
        MaskSet.load(path, params)
    msg = str(info.value)
    assert msg.startswith(f"masks file {path}: no mask for") and "2.weight" in msg, msg
    assert "\n" not in msg
