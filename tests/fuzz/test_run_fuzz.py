"""``prunetune run``: mutations of the configs in ``configs/``, in-process.

Rules (counts in the test ids): a wrong kind of value at every schema field of the digits
config (``KEYS`` x ``KINDS_FOR``), misspelt keys in every section, every text rule of
``mutate.TEXT_RULES`` on every config, truncation of every config at every 29th byte, bad
``--set`` items, and bad config / output paths.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import check, check_accepted, check_refused, guarded, invoke
from .mutate import (
    CONFIGS,
    KINDS_FOR,
    TEXT_RULES,
    WRONG,
    dump,
    fast_config,
    set_path,
    truncations,
)

#: configs/ whose data ships with prunetune or is generated (a cifar10 config needs a dataset
#: directory this machine does not have: its accepted prefixes cannot run here)
BUNDLED = ("digits", "mnist1d", "synthetic")
RUNNABLE = [p for p in CONFIGS
            if yaml.safe_load(p.read_text()).get("data", {}).get("name") in BUNDLED]
BASE = set_path(fast_config(Path(CONFIGS[0]).parent / "digits_snip.yaml"),
                "model.options.hidden", [16])
#: cheap-run settings added to inputs whose accepted form would otherwise train for long
CHEAP = ["--set", "train.epochs=0", "--set", "data.train_limit=64",
         "--set", "data.test_limit=64"]

#: schema fields of TrialConfig by kind (pruning_core/config.py)
KEYS: dict[str, str] = {
    "seed": "int", "train.epochs": "int", "train.threads": "int", "data.batch_size": "int",
    "data.eval_batch_size": "int", "data.train_limit": "int", "data.test_limit": "int",
    "prune.steps": "int", "prune.score_batches": "int", "prune.timing.pretrain_epochs": "int",
    "prune.timing.rewind_epoch": "int",
    "train.lr": "float", "train.momentum": "float", "train.weight_decay": "float",
    "prune.sparsity": "float", "prune.allocation.min_density": "float",
    "prune.allocation.erk_power": "float",
    "train.optimizer": "name", "train.device": "name", "train.lr_schedule": "name",
    "data.name": "name", "model.name": "name", "prune.criterion": "name",
    "prune.schedule": "name", "prune.variant": "name", "prune.allocation.name": "name",
    "prune.timing.name": "name",
    "prune.include": "list", "prune.exclude": "list", "prune.timing.prune_epochs": "list",
    "prune.allocation.layer_sparsity": "list",
    "model": "section", "data": "section", "train": "section", "prune": "section",
    "model.options": "section", "data.options": "section",
    "prune.criterion_options": "section", "tags": "section",
}

#: (key, kind) whose value is valid: the reason
ACCEPTED: dict[tuple[str, str], str] = {
    ("train.threads", "null"): "threads: null leaves torch's default (documented)",
    ("data.train_limit", "null"): "train_limit: null means all training examples",
    ("data.test_limit", "null"): "test_limit: null means all test examples",
    ("prune.timing.prune_epochs", "null"): "unused by timing 'before' (the default is null)",
    ("prune.allocation.layer_sparsity", "null"): "null is the default (no explicit vector)",
    ("prune.timing.rewind_epoch", "huge"): "only timing 'imp' reads it (here: before)",
    ("train.lr", "huge"): "no upper bound on lr (a NaN loss ends the trial as 'diverged'); "
                          "0 epochs here",
    ("train.weight_decay", "huge"): "no upper bound on weight decay; 0 epochs here",
    ("prune.allocation.erk_power", "huge"): "only allocation 'erk' reads it (here: global)",
    ("data.train_limit", "huge"): "a limit above the dataset size keeps every example",
    ("data.test_limit", "huge"): "a limit above the dataset size keeps every example",
    ("prune.score_batches", "huge"): "scoring reads at most the batches there are",
    ("train.momentum", "frac"): "",
    ("tags", "dict"): "tags are free-form",
    ("model.options", "dict"): "",
}

def _structured_cases() -> list[Any]:
    cases = []
    for key, kind in KEYS.items():
        for k in KINDS_FOR[kind]:
            if (key, k) == ("train.epochs", "huge"):
                continue  # never in-process: test_run_unbounded_epochs
            valid = ACCEPTED.get((key, k))
            cases.append(pytest.param(key, WRONG[k], valid, id=f"{key}={k}"))
    for key in ("seed_", "train.epoch", "data.nme", "modle", "prune.sparsty",
                "prune.allocation.nam", "prune.timing.rewind", "train.lr_schedul"):
        cases.append(pytest.param(key, 1, None, id=f"unknown:{key}"))
    return cases


def _run(path: Path, *extra: str | Path) -> Any:
    """``prunetune run``; an accepted input trains 0-2 epochs on 128 examples: 10 s is a hang."""
    return invoke("run", path, *extra, timeout=10)


@pytest.mark.parametrize(("key", "value", "valid"), _structured_cases())
def test_run_structured(tmp_path: Path, key: str, value: Any, valid: str | None) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(dump(set_path(BASE, key, value)))
    out = _run(cfg)
    if valid is None:
        check_refused(out, key.split(".")[-1] if not key.endswith("_") else "seed_")
    else:
        check_accepted(out, "trial result")


#: every text rule on three configs of different kinds (MLP/digits, GMP during training,
#: SynFlow multi-step), the rest of configs/ through truncations
TEXT_CONFIGS = [p for p in CONFIGS if p.stem in ("digits_snip", "mnist1d_gmp",
                                                 "mnist1d_synflow")]
@pytest.mark.slow
def test_run_unbounded_epochs(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(dump(set_path(BASE, "train.epochs", WRONG["huge"])))
    check_refused(guarded("run", cfg), "train.epochs")


TEXT_CASES = [pytest.param(p.name, rule, id=f"{p.stem}:{rule.name}")
              for p in TEXT_CONFIGS for rule in TEXT_RULES]


@pytest.mark.parametrize(("config", "rule"), TEXT_CASES)
def test_run_text(tmp_path: Path, config: str, rule: Any) -> None:
    valid = rule.valid or ("an empty file is the default config"
                           if rule.name in ("empty", "whitespace_only") else None)
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(rule.apply(dump(fast_config(Path(CONFIGS[0]).parent / config))))
    empty = rule.name in ("empty", "whitespace_only")
    out = _run(cfg, *(CHEAP if empty else []))  # an empty config trains 10 epochs
    check(out, valid, *(["trial result"] if valid else []))


#: (digits_snip@145 keeps only train/data/seed: the default cnn1d meets 8x8 digits;
#: mnist1d_gmp@319 keeps one of two prune_epochs: errors found inside run(), refused with
#: nothing on stdout)
TRUNC_CASES = [pytest.param(p.name, k, id=f"{p.stem}@{k}")
               for p in RUNNABLE for k, _ in truncations(dump(fast_config(p)), 43)]


@pytest.mark.parametrize(("config", "offset"), TRUNC_CASES)
def test_run_truncated(tmp_path: Path, config: str, offset: int) -> None:
    """A truncated config is refused, or (cut at a line end) is a shorter valid config."""
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(dump(fast_config(Path(CONFIGS[0]).parent / config))[:offset])
    out = _run(cfg)
    if out.code == 0:
        check_accepted(out, "trial result")
    else:
        check_refused(out)


SET_CASES: list[Any] = [
    pytest.param(["prune.sparsity=["], None, id="yaml-unclosed"),
    pytest.param(["prune.sparsity={a: 1"], None, id="yaml-unclosed-map"),
    pytest.param(["prune.sparsity=!!python/object/apply:os.system [x]"], None, id="yaml-tag"),
    pytest.param(["prune.sparsity=*alias"], None, id="yaml-alias"),
    pytest.param(["prune.sparsity=.nan"], None, id="nan"),
    pytest.param(["prune.sparsity=.inf"], None, id="inf"),
    pytest.param(["prune.sparsity=1e999"], None, id="float-overflow"),
    pytest.param(["seed=99999999999999999999999"], None, id="seed-huge"),
    pytest.param(["seed=-1"], None, id="seed-neg"),
    pytest.param(["prune.steps=1e9"], None, id="steps-1e9"),
    pytest.param(["prune.steps=1000000000"], None, id="steps-int-1e9"),
    pytest.param(["train.device=banana"], None, id="device-banana"),
    pytest.param(["train.device=cuda:99"], None, id="device-cuda99"),
    pytest.param(["prune.sparsity"], None, id="no-equals"),
    pytest.param(["=1"], None, id="no-key"),
    pytest.param(["prune..sparsity=1"], None, id="empty-part"),
    pytest.param(["prune sparsity=1"], None, id="space-in-key"),
    pytest.param(["1abc=2"], None, id="digit-key"),
    pytest.param(["prune.allocation.layer_sparsity=[0.5, 0.5]"], None, id="vector-global"),
    pytest.param(["prune.allocation=explicit"], None, id="explicit-no-vector"),
    pytest.param(["prune.sparsity=0.7"], "a valid override", id="valid-sparsity"),
    pytest.param(["prune.sparsity="], None, id="empty-value"),
    pytest.param(["data.root=/nonexistent"], "digits ships with scikit-learn and never reads "
                 "data.root", id="root-missing-digits"),
    pytest.param(["data.name=cifar10", "data.root=/nonexistent"], None, id="cifar-missing-root"),
    pytest.param(["data.name=cifar10"], None, id="cifar-no-root"),
    pytest.param(["model.name=os.path:join"], None, id="factory-not-a-model"),
    pytest.param(["model.name=no_such_pkg.mod:build"], None, id="factory-missing-module"),
    pytest.param(["model.name=tv:no_such_net"], None, id="tv-unknown"),
    pytest.param(["prune.timing=imp", "prune.timing.rewind_epoch=5", "train.epochs=2"], None,
                 id="imp-rewind-past-end"),
    pytest.param(["prune.timing=during", "prune.timing.prune_epochs=[5]", "train.epochs=2"],
                 None, id="during-epoch-past-end"),
]


@pytest.mark.parametrize(("sets", "valid"), SET_CASES)
def test_run_set(tmp_path: Path, sets: list[str], valid: str | None) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(dump(BASE))
    args: list[str] = []
    for item in sets:
        args += ["--set", item]
    check(_run(cfg, *args), valid, *(["trial result"] if valid else []))


def _fifo(tmp: Path) -> Path:
    p = tmp / "fifo.yaml"
    os.mkfifo(p)
    return p


def _loop(tmp: Path) -> Path:
    p = tmp / "loop.yaml"
    p.symlink_to(p)
    return p


def _big(tmp: Path) -> Path:
    p = tmp / "big.yaml"
    with p.open("wb") as f:
        f.truncate(5_000_000)  # sparse: 5 MB of NUL bytes
    return p


CONFIG_PATHS: list[Any] = [
    pytest.param(lambda t: t / "missing.yaml", "no such file", id="missing"),
    pytest.param(lambda t: t, "is a directory", id="directory"),
    pytest.param(lambda t: Path("/dev/null"), "not a regular file", id="char-device"),
    pytest.param(_fifo, "not a regular file", id="fifo"),
    pytest.param(_loop, "loop.yaml", id="symlink-loop"),
    pytest.param(_big, "too large", id="5MB"),
    pytest.param(lambda t: Path("/proc/self/status"), "status", id="proc-file"),
]


@pytest.mark.parametrize(("make", "needle"), CONFIG_PATHS)
def test_run_config_path(tmp_path: Path, make: Any, needle: str) -> None:
    check_refused(_run(make(tmp_path)), needle)


def _file(t: Path) -> Path:
    (t / "file").write_text("x")
    return t / "file"


OUTPUTS: list[Any] = [
    pytest.param(lambda t: t, "is a directory", id="directory"),
    pytest.param(lambda t: Path("/sys/out.bin"), "cannot write", id="unwritable-dir"),
    pytest.param(lambda t: Path("/proc/self/out.bin"), "", id="proc"),
    pytest.param(lambda t: _file(t) / "out.bin", "not a directory", id="parent-is-file"),
    pytest.param(lambda t: Path(""), "", id="empty"),
    pytest.param(lambda t: Path("/dev/null"), "not a regular file", id="dev-null"),
]


@pytest.mark.parametrize("option", ["--json", "--masks"])
@pytest.mark.parametrize(("make", "needle"), OUTPUTS)
def test_run_output_path(tmp_path: Path, option: str, make: Any, needle: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(dump(BASE))
    check_refused(_run(cfg, option, make(tmp_path)), option, needle)


@pytest.mark.parametrize("option", ["--json", "--masks"])
def test_run_output_missing_parents_are_created(tmp_path: Path, option: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(dump(BASE))
    target = tmp_path / "a" / "b" / "out.bin"
    check_accepted(_run(cfg, option, target), "trial result")
    assert target.is_file() and target.stat().st_size > 0
    if option == "--json":
        assert json.loads(target.read_text())["status"] == "ok"


def _raw_pickle(t: Path) -> Path:
    import pickle

    (t / "raw.pt").write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=4))
    return t / "raw.pt"


def _code_pickle(t: Path) -> Path:
    import pickle

    (t / "code.pt").write_bytes(pickle.dumps(os.getcwd))  # a global: code, not tensors
    return t / "code.pt"


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


WEIGHTS_FILES: list[Any] = [
    pytest.param(_raw_pickle, "not a torch checkpoint", id="raw-pickle-protocol-4"),
    pytest.param(_code_pickle, "not a torch checkpoint", id="pickled-function"),
    pytest.param(lambda t: Path("/etc/passwd"), "not a torch checkpoint", id="etc-passwd"),
    pytest.param(lambda t: _bytes(t / "e.pt", b""), "not a torch checkpoint", id="empty"),
    pytest.param(lambda t: _bytes(t / "r.pt", os.urandom(4096)), "not a torch checkpoint",
                 id="random-bytes"),
    pytest.param(lambda t: _bytes(t / "x.safetensors", b"{}"), "not a readable safetensors file",
                 id="bad-safetensors"),
]


@pytest.mark.parametrize(("make", "needle"), WEIGHTS_FILES)
def test_run_weights_file(tmp_path: Path, make: Any, needle: str) -> None:
    """A weights file of any content is one stderr line, exit 2, in a real process (so that
    torch's own ``UserWarning`` lines, printed by Python's warnings machinery, are seen too)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(dump(BASE))
    weights = make(tmp_path)
    out = guarded("run", cfg, "--set", f"model.weights={weights}", limit_s=60)
    assert out.code == 2 and "Traceback" not in out.stderr, str(out)
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model.weights: "), str(out)
    assert needle in lines[0], str(out)
