"""Issue 8, items 4-6: careless and hostile input to run / validate / sweep / apply / export /
pareto / report. Every refusal: exit 2, one stderr line naming the field, empty stdout, no
traceback; and it comes *before* any work (nothing trained, no Ray started)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from sweeps.cli import app

from .conftest import REPO, UNWRITABLE_DIR, assert_one_line_error, prunetune
from .test_yaml_guard import bomb

CONFIG = REPO / "configs" / "digits_snip.yaml"

SPACE = {
    "name": "hard",
    "objectives": [{"metric": "test_accuracy", "mode": "max"}],
    "sampler": {"name": "random", "seed": 0},
    "budget": {"num_samples": 2},
    "fixed": {"model": {"name": "mlp"}, "data": {"name": "digits"},
              "train": {"epochs": 1, "device": "cpu"}},
    "params": {"prune.sparsity": {"type": "float", "low": 0.3, "high": 0.9}},
    "wandb": {"mode": "disabled"},
}


@pytest.fixture(autouse=True)
def _ray_env_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process `sweep` calls may set Ray's auth mode; later tests' Ray must not see it."""
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)


def invoke(*args: str) -> object:
    return CliRunner().invoke(app, list(args))


def _no_gpu_device() -> str:
    """A CUDA device this machine does not have (``cuda`` here; ``cuda:N`` past the last)."""
    return f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"


def write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False) if not isinstance(data, str) else data)
    return path


# ----------------------------------------------------------------------------- run: files
@pytest.mark.parametrize(("content", "needles"), [
    ("prune: {sparsity: 0.5}\nname: caf\xe9\n".encode("latin-1"), ("not UTF-8", "offset")),
    (b"\xff\xfe\x00p\x00r", ("not UTF-8",)),
    (bomb(9).encode(), ("alias bomb",)),
    (b"prune:\n  sparsity: 0.5\n  sparsity: 0.6\n",
     ("prune.sparsity (line 3): duplicate key (first at line 2)",)),
    (b"- prune\n- train\n", ("expected a mapping",)),
    (b"'just a string'\n", ("expected a mapping",)),
    (b"a: &a\n  b: *a\n", ("recursive alias",)),
    (b"[" * 3000 + b"]" * 3000, ("nested",)),
    (b"!!python/object/apply:os.system ['echo pwned']\n", ("not valid YAML",)),
    (b"prune: [unclosed\n", ("not valid YAML",)),
    (b"seed: 0\n\tprune: {}\n", ("not valid YAML",)),
])
def test_run_refuses_bad_config_files(tmp_path: Path, content: bytes,
                                      needles: tuple[str, ...]) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    out = assert_one_line_error(invoke("run", str(path)), *needles)
    assert "c.yaml" in out  # names the file


def test_run_refuses_a_directory_and_a_missing_file(tmp_path: Path) -> None:
    assert_one_line_error(invoke("run", str(tmp_path)), "is a directory")
    assert_one_line_error(invoke("run", str(tmp_path / "nope.yaml")), "no such file")


# ----------------------------------------------------------------------------- run: values
@pytest.mark.parametrize(("sets", "needles"), [
    (["prune.sparsity=["], ("--set prune.sparsity", "not valid YAML")),
    (["prune.sparsity={a: 1"], ("--set prune.sparsity", "not valid YAML")),
    (["prune.sparsity=!!python/name:os.system"], ("--set prune.sparsity", "not valid YAML")),
    (["..=1"], ("not a dotted key",)),
    (["prune..sparsity=0.5"], ("not a dotted key",)),
    (["=0.5"], ("expected dotted.key=value",)),
    (["train.device=banana"], ("train.device", "unknown device 'banana'")),
    (["train.device=cuda:x"], ("train.device",)),
    ([f"train.device={_no_gpu_device()}"], ("train.device", "GPU")),
    ([f"seed={2**64}"], ("seed",)),
    ([f"seed={2**63}"], ("seed",)),
    (["seed=-1"], ("seed",)),
    (["prune.steps=1000000000"], ("prune.steps", "10000")),
    (["prune.steps=1.0e+9"], ("prune.steps", "10000")),
    (["prune.steps=1e9"], ("prune.steps", "integer")),  # YAML 1.1: a string
    (["prune.allocation.layer_sparsity=[0.5, 0.5, 0.5]"],
     ("prune.allocation", "layer_sparsity", "explicit")),
])
def test_run_refuses_bad_values_before_training(sets: list[str],
                                                needles: tuple[str, ...]) -> None:
    args = [a for s in sets for a in ("--set", s)]
    assert_one_line_error(invoke("run", str(CONFIG), *args), *needles)


def test_the_limits_themselves_are_accepted() -> None:
    from pruning_core.config import MAX_PRUNE_STEPS, MAX_SEED
    from pruning_core.trials.registries import load_trial_config

    cfg = load_trial_config({"seed": MAX_SEED - 1, "prune": {"steps": MAX_PRUNE_STEPS},
                             "train": {"device": "cuda:3"}})
    assert cfg.seed == 2**63 - 1 and cfg.prune.steps == 10_000
    cfg = load_trial_config({"prune": {"allocation": {
        "name": "explicit", "layer_sparsity": [0.5, 0.6, 0.7]}}})
    assert cfg.prune.allocation.layer_sparsity == [0.5, 0.6, 0.7]


# ----------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("option", ["--json", "--masks"])
def test_run_checks_output_paths_before_the_work(tmp_path: Path, option: str) -> None:
    # a file where a directory should be, a directory where a file should be, sysfs
    (tmp_path / "file").write_text("x")
    for target, needle in ((tmp_path / "file" / "out", "is not a directory"),
                           (tmp_path, "is a directory"),
                           (UNWRITABLE_DIR / "prunetune" / "out", "cannot write there")):
        start = time.perf_counter()
        # epochs=1000: if the check came after the work, this would train for minutes
        assert_one_line_error(invoke("run", str(CONFIG), "--set", "train.epochs=1000",
                                     option, str(target)), option, needle)
        assert time.perf_counter() - start < 30


def test_result_commands_check_output_paths_first(tmp_path: Path) -> None:
    """pareto --plot, report --out/--png-dir, schedule export --out: the path is refused
    before the results (absent here) are even read."""
    bad = str(UNWRITABLE_DIR / "prunetune" / "x.png")
    missing = str(tmp_path / "no-results")
    assert_one_line_error(invoke("pareto", missing, "--plot", bad), "--plot", "cannot write")
    assert_one_line_error(invoke("report", missing, "--out", bad), "--out", "cannot write")
    assert_one_line_error(invoke("report", missing, "--out", str(tmp_path / "r.html"),
                                 "--png-dir", bad), "--png-dir", "cannot write")
    (tmp_path / "f").write_text("")
    assert_one_line_error(invoke("report", missing, "--out", str(tmp_path / "r.html"),
                                 "--png-dir", str(tmp_path / "f")), "--png-dir",
                          "not a directory")
    assert_one_line_error(invoke("schedule", "export", missing, "--best", "test_accuracy",
                                 "--out", bad), "--out", "cannot write")


def test_check_output_accepts_new_nested_paths_and_creates_nothing(tmp_path: Path) -> None:
    from sweeps.results.outputs import check_output

    target = tmp_path / "a" / "b" / "out.json"
    check_output("--json", target)
    check_output("--png-dir", tmp_path / "pngs", directory=True)
    assert list(tmp_path.iterdir()) == []  # probed, nothing left behind


# ----------------------------------------------------------------------------- apply
def test_apply_refuses_hostile_schedule_files(tmp_path: Path) -> None:
    latin = tmp_path / "s.yaml"
    latin.write_bytes("format: prunetune-schedule\nversion: 1\nx: \xe9\n".encode("latin-1"))
    assert_one_line_error(invoke("apply", str(latin)), "schedule", "not UTF-8")
    b = write(tmp_path / "b.yaml", bomb(9))
    assert_one_line_error(invoke("apply", str(b)), "schedule", "alias bomb")
    d = write(tmp_path / "d.yaml", "format: prunetune-schedule\nformat: prunetune-schedule\n")
    assert_one_line_error(invoke("apply", str(d)), "duplicate key")


# ----------------------------------------------------------------------------- spaces
@pytest.mark.parametrize(("change", "needles"), [
    ({"params": {"prune.steps": {"type": "int", "low": 1, "high": 8, "step": 2, "log": True}}},
     ("params.prune.steps", "step and log")),
    ({"params": {"train.lr": {"type": "float", "low": 0.001, "high": float("inf")}}},
     ("params.train.lr.high",)),
    ({"params": {"train.lr": {"type": "float", "low": float("nan"), "high": 1.0}}},
     ("params.train.lr.low",)),
    ({"resources": {"cpu": float("inf")}}, ("resources.cpu",)),
    ({"sampler": {"name": "nsga2", "seed": 0, "options": {"population_size": 1}}},
     ("sampler.options", "nsga2")),
    ({"sampler": {"name": "tpe", "seed": 0, "options": {"no_such_option": 1}}},
     ("sampler.options", "no_such_option")),
    ({"sampler": {"name": "random", "seed": 2**40}}, ("sampler",)),
    ({"storage": "ftp://host/results"}, ("storage", "ftp://")),
    ({"storage": "s3://"}, ("storage", "bucket")),
    ({"storage": "s3:///prefix"}, ("storage", "bucket")),
    ({"storage": "file://relative/dir"}, ("storage", "absolute")),
    ({"storage": "s3://bucket/x?endpoint_override=127.0.0.1:1&scheme=http"},
     ("storage", "endpoint_override 127.0.0.1:1 does not answer")),
    ({"storage": ""}, ("storage",)),
    ({"fixed": {"model": {"name": "mlp"}, "data": {"name": "digits"},
                "train": {"device": "cuda"}}}, ("train.device", "resources.gpu is 0")),
    ({"params": {"prune.criterion": {"type": "choice", "values": ["snip", "magnitde"]}}},
     ("a sampled config is invalid", "magnitde")),
    ({"fixed": {"model": {"name": "mlp"}, "data": {"name": "digits"},
                "prune": {"steps": 10**9}}}, ("fixed", "prune.steps")),
])
def test_validate_and_sweep_refuse_the_same_spaces(tmp_path: Path, change: dict,
                                                   needles: tuple[str, ...]) -> None:
    """One pre-launch validation: whatever `validate` refuses, `sweep` refuses before Ray."""
    path = write(tmp_path / "space.yaml", {**SPACE, **change})
    assert_one_line_error(invoke("validate", str(path)), *needles)
    assert_one_line_error(invoke("sweep", str(path)), *needles)
    assert not (tmp_path / "results").exists() and not Path("results/hard").exists()


def test_storage_that_is_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "taken"
    f.write_text("")
    path = write(tmp_path / "space.yaml", {**SPACE, "storage": str(f)})
    assert_one_line_error(invoke("validate", str(path)), "storage", "not a directory")
    path = write(tmp_path / "space.yaml", {**SPACE, "storage": str(f / "sub")})
    assert_one_line_error(invoke("sweep", str(path)), "storage", "not a directory")


@pytest.mark.parametrize(("content", "needles"), [
    (b"name: x\nname: y\n", ("duplicate key",)),
    ("name: caf\xe9\n".encode("latin-1"), ("search space", "not UTF-8")),
    (bomb(9).encode(), ("search space", "alias bomb")),
    (b"- a\n", ("mapping",)),
])
def test_space_files(tmp_path: Path, content: bytes, needles: tuple[str, ...]) -> None:
    path = tmp_path / "space.yaml"
    path.write_bytes(content)
    assert_one_line_error(invoke("validate", str(path)), *needles)
    assert_one_line_error(invoke("sweep", str(path)), *needles)


def test_sweep_cli_arguments(tmp_path: Path) -> None:
    path = write(tmp_path / "space.yaml", SPACE)
    assert_one_line_error(invoke("sweep", str(path), "--num-cpus", "0"), "--num-cpus")
    assert_one_line_error(invoke("sweep", str(path), "--num-samples", "0"),
                          "budget.num_samples")


def test_a_valid_space_still_validates() -> None:
    ok = invoke("validate", str(REPO / "search_spaces" / "demo_mnist1d.yaml"))
    assert ok.exit_code == 0 and "sampled configurations are valid" in ok.stdout


# ----------------------------------------------------------------------------- real CLI
def test_real_cli_subprocess_one_line_each(tmp_path: Path) -> None:
    """The same refusals from the installed entry point (a real process, fresh imports)."""
    latin = tmp_path / "c.yaml"
    latin.write_bytes("prune: {sparsity: 0.5}\nx: caf\xe9\n".encode("latin-1"))
    assert_one_line_error(prunetune("run", str(latin)), "not UTF-8")
    assert_one_line_error(prunetune("run", str(CONFIG), "--set", "prune.sparsity=["),
                          "--set prune.sparsity")
    space = write(tmp_path / "space.yaml", {**SPACE, "storage": "ftp://x/y"})
    assert_one_line_error(prunetune("sweep", str(space)), "storage", "ftp://")
    # --address sets Ray's auth mode for the process: a subprocess keeps it out of this one
    ok = write(tmp_path / "ok.yaml", SPACE)
    assert_one_line_error(prunetune("sweep", str(ok), "--address", "nohostport"),
                          "--address nohostport", "host:port")
