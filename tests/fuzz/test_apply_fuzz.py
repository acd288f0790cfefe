"""``prunetune apply``: mutations of a tuned schedule exported in a fixture, in-process.

Rules: a wrong kind of value at every schedule field (format, version, prune.*, layers.*,
trial.*, provenance), misspelt keys, every text rule, truncation at every 1/16 of the file,
bad paths, bad ``--model``/``--data``/``--set``/output options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import check, check_accepted, check_refused, guarded, invoke
from .mutate import KINDS_FOR, TEXT_RULES, WRONG, dump, set_path

KEYS: dict[str, str] = {
    "format": "name", "version": "int", "prune": "section", "prune.sparsity": "float",
    "prune.criterion": "name", "prune.steps": "int", "prune.schedule": "name",
    "prune.allocation": "section", "layers": "section", "layers.0.depth": "float",
    "layers.0.sparsity": "float", "layers.0.numel": "int", "layers.0.kind": "name",
    "layers.0.name": "name", "layers.0.shape": "list", "trial": "section",
    "trial.model.name": "name", "trial.data.name": "name", "trial.train.epochs": "int",
    "provenance": "section", "provenance.model": "name",
}

#: (key, kind) whose value is valid: the reason
ACCEPTED: dict[tuple[str, str], str] = {
    ("provenance.model", "long"): "provenance is a record, not an instruction",
    ("provenance.model", "empty"): "provenance is a record, not an instruction",
    ("layers.0.name", "long"): "the same model: the trial's own allocation is re-run; "
                               "layer names are only read to map onto another model",
    ("layers.0.name", "empty"): "as above",
    ("layers.0.numel", "huge"): "as above: the layer table is read only to map onto another "
                                "model",
    ("layers.0.kind", "empty"): "as above",
    ("layers.0.kind", "long"): "as above",
}


def _cases() -> list[Any]:
    out = []
    for key, kind in KEYS.items():
        kinds = KINDS_FOR[kind] + (("zero",) if key == "version" else ())
        for k in kinds:
            if (key, k) == ("trial.train.epochs", "huge"):
                continue  # never in-process: test_apply_unbounded_epochs
            value = 0 if k == "zero" else WRONG[k]
            out.append(pytest.param(key, value, ACCEPTED.get((key, k)), id=f"{key}={k}"))
    extra = [("version", 2, None, "version=newer"), ("version", "1", None, "version=str1"),
             ("format", "prunetune-schedul", None, "format=typo"),
             ("trial.data.root", "/tmp", None, "trial.data.root=set"),
             ("trial.model.name", "os.path:join", None, "trial.model.name=import-path"),
             ("trial.prune", {"sparsity": 0.9}, None, "trial.prune=disagrees"),
             ("surprise", 1, None, "unknown:surprise"), ("prune.sparsty", 0.5, None,
                                                         "unknown:prune.sparsty")]
    out += [pytest.param(k, v, ok, id=i) for k, v, ok, i in extra]
    return out


def _apply(path: Path, *extra: str | Path) -> Any:
    return invoke("apply", path, *extra, timeout=10)


@pytest.mark.parametrize(("key", "value", "valid"), _cases())
def test_apply_structured(schedule_text: bytes, tmp_path: Path, key: str, value: Any,
                          valid: str | None) -> None:
    path = tmp_path / "tuned.yaml"
    path.write_bytes(dump(set_path(yaml.safe_load(schedule_text), key, value)))
    check(_apply(path), valid, *(["trial result"] if valid else []))


# (Schedule.load maps yaml.YAMLError to one line, so NUL/control bytes are refused here)


@pytest.mark.slow
def test_apply_unbounded_epochs(schedule_text: bytes, tmp_path: Path) -> None:
    path = tmp_path / "tuned.yaml"
    path.write_bytes(dump(set_path(yaml.safe_load(schedule_text), "trial.train.epochs",
                                   WRONG["huge"])))
    check_refused(guarded("apply", path), "epochs")


@pytest.mark.parametrize("rule", [pytest.param(r, id=r.name) for r in TEXT_RULES])
def test_apply_text(schedule_text: bytes, tmp_path: Path, rule: Any) -> None:
    path = tmp_path / "tuned.yaml"
    path.write_bytes(rule.apply(schedule_text))
    check(_apply(path), rule.valid, *(["trial result"] if rule.valid else []))


@pytest.mark.parametrize("sixteenth", range(1, 16))
def test_apply_truncated(schedule_text: bytes, tmp_path: Path, sixteenth: int) -> None:
    """Every cut of a schedule loses a required section or breaks the YAML: refused."""
    path = tmp_path / "tuned.yaml"
    path.write_bytes(schedule_text[: len(schedule_text) * sixteenth // 16])
    out = _apply(path)
    if out.code == 0:
        check_accepted(out, "trial result")
    else:
        check_refused(out)


OPTIONS: list[Any] = [
    pytest.param(["--model", "nosuch"], None, id="model-unknown"),
    pytest.param(["--model", "cnn1d"], None, id="model-kind-mismatch"),
    pytest.param(["--data", "nosuch"], None, id="data-unknown"),
    pytest.param(["--model", "pkg.missing:build"], None, id="model-import-missing"),
    pytest.param(["--set", "prune.sparsity=["], None, id="set-bad-yaml"),
    pytest.param(["--set", "train.epochs=-1"], None, id="set-epochs-neg"),
    pytest.param(["--set", "nokey"], None, id="set-no-equals"),
    pytest.param(["--json", "/sys/x.json"], None, id="json-unwritable"),
    pytest.param(["--masks", "."], None, id="masks-directory"),
    pytest.param(["--set", "train.epochs=0"], "an override", id="valid-set"),
]


@pytest.mark.parametrize(("args", "valid"), OPTIONS)
def test_apply_options(schedule_text: bytes, tmp_path: Path, args: list[str],
                       valid: str | None) -> None:
    path = tmp_path / "tuned.yaml"
    path.write_bytes(schedule_text)
    check(_apply(path, *args), valid, *(["trial result"] if valid else []))


@pytest.mark.parametrize(("make", "needle"), [
    pytest.param(lambda t: t / "missing.yaml", "no such file", id="missing"),
    pytest.param(lambda t: t, "", id="directory"),
    pytest.param(lambda t: Path("/dev/null"), "", id="char-device"),
])
def test_apply_path(tmp_path: Path, make: Any, needle: str) -> None:
    check_refused(_apply(make(tmp_path)), needle)


def test_the_unmutated_schedule_applies(schedule_text: bytes, tmp_path: Path) -> None:
    path = tmp_path / "tuned.yaml"
    path.write_bytes(schedule_text)
    check_accepted(_apply(path), "trial result")
