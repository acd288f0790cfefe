"""Hypothesis-driven mutation of configs and spaces: derandomized (a fixed seed), a bounded
number of examples, no deadline (CI's 2 cores are shared): about 30 s in all.

Each example changes 1-3 keys of a valid document (existing keys, misspelt ones, whole
sections) to values of any type. Properties:

- ``load_trial_config`` / ``parse_space`` + ``validate_space``: a result, or a one-line
  ``ConfigError``; never another exception;
- the guarded YAML reader reads back what was dumped (or refuses it in one line);
- the CLI (``validate``, and ``run`` of a 0-epoch config): exit 2 with one stderr line and
  empty stdout, or exit 0 with its normal output; never a traceback.

Left out of the strategies: integers beyond 10**6 at run time (within the config's bounds,
but a real run of them takes long), and NUL and control characters in YAML text (refused by
the guarded reader: test_run_fuzz.py's text rules cover them)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pruning_core.base.errors import ConfigError
from pruning_core.config import TrialConfig, parse_yaml
from pruning_core.trials.registries import load_trial_config
from sweeps.tune.space import parse_space, validate_space

from .conftest import TINY, check_accepted, check_refused, invoke
from .mutate import CONFIGS, SPACES, dump, key_id, leaves, set_path

SETTINGS = {"deadline": None, "derandomize": True, "database": None,
            "suppress_health_check": [HealthCheck.function_scoped_fixture,
                                      HealthCheck.too_slow]}

#: printable text only (see the module docstring: control characters are a known finding)
TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF,
                             blacklist_categories=("Cs", "Cc")), max_size=12)
NAMES = st.sampled_from(["snip", "magnitude", "synflow", "grasp", "random", "global", "erk",
                         "uniform", "lamp", "explicit", "before", "during", "after", "imp",
                         "one_shot", "linear", "cubic", "mlp", "cnn1d", "digits", "mnist1d",
                         "cpu", "auto", "adam", "sgd", "none", "reinit"])
ANY = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | TEXT | NAMES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6)
#: values that are cheap to *run* (no huge epoch counts, batch sizes or thread counts)
SMALL = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 64) | st.floats(-2, 2) | TEXT | NAMES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=2),
    max_leaves=4)


def _paths(doc: dict[str, Any]) -> list[str]:
    keys = [k for k, _ in leaves(doc)]
    sections = sorted({k.rsplit(".", 1)[0] for k in keys if "." in k})
    return keys + sections + [k + "_" for k in keys[:6]] + ["tags.x", "prune.allocation.name",
                                                             "prune.timing.name"]


CONFIG = yaml.safe_load((CONFIGS[0].parent / "digits_snip.yaml").read_text())
CONFIG_PATHS = _paths(CONFIG)
SPACE = yaml.safe_load((SPACES[0].parent / "demo_mnist1d.yaml").read_text())
SPACE_PATHS = [p for p in _paths(SPACE) if not p.startswith("params.")] + [
    ("params", "prune.sparsity", "low"), ("params", "prune.sparsity", "high"),
    ("params", "prune.steps", "low"), ("params", "prune.criterion", "values"),
    ("params", "prune.schedule", "type"), ("params", "prune.x", "type")]


def _mutate(doc: dict[str, Any], edits: list[tuple[Any, Any]]) -> dict[str, Any]:
    for path, value in edits:
        doc = set_path(doc, path, value)
    return doc


def _one_line(exc: ConfigError) -> None:
    msg = str(exc)
    assert msg and "\n" not in msg and "Traceback" not in msg, msg


@settings(max_examples=250, **SETTINGS)
@given(st.lists(st.tuples(st.sampled_from(CONFIG_PATHS), ANY), min_size=1, max_size=3))
def test_config_dict_mutations(edits: list[tuple[str, Any]]) -> None:
    try:
        cfg = load_trial_config(_mutate(CONFIG, edits))
    except ConfigError as exc:
        _one_line(exc)
    else:
        assert isinstance(cfg, TrialConfig)


@settings(max_examples=150, **SETTINGS)
@given(st.lists(st.tuples(st.sampled_from(CONFIG_PATHS), ANY), min_size=1, max_size=3))
def test_config_yaml_round_trip(edits: list[tuple[str, Any]]) -> None:
    doc = _mutate(CONFIG, edits)
    try:
        data, _ = parse_yaml(dump(doc).decode(), "config c.yaml")
    except ConfigError as exc:  # e.g. more nesting or values than the guard allows
        _one_line(exc)
        return
    assert yaml.safe_dump(data, sort_keys=True) == yaml.safe_dump(doc, sort_keys=True)


@settings(max_examples=80, **SETTINGS)
@given(st.lists(st.tuples(st.sampled_from(SPACE_PATHS), ANY), min_size=1, max_size=2))
def test_space_dict_mutations(edits: list[tuple[Any, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        doc = _mutate(SPACE, edits)
        if doc.get("storage") == SPACE["storage"]:
            doc["storage"] = str(Path(tmp) / "results")
        try:
            validate_space(parse_space(doc), n=4)
        except ConfigError as exc:
            _one_line(exc)


@settings(max_examples=40, **SETTINGS)
@given(st.lists(st.tuples(st.sampled_from(SPACE_PATHS), ANY), min_size=1, max_size=2))
def test_validate_cli(edits: list[tuple[Any, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.yaml"
        path.write_bytes(dump(_mutate(SPACE, edits)))
        out = invoke("validate", path, "--samples", "4", timeout=20)
        if out.code == 0:
            check_accepted(out, "sampled configurations are valid")
        else:
            check_refused(out)


RUN_PATHS = [p for p in _paths(TINY) if not p.startswith("train")] + ["train.lr",
                                                                       "train.optimizer"]


@settings(max_examples=30, **SETTINGS)
@given(st.lists(st.tuples(st.sampled_from(RUN_PATHS), SMALL), min_size=1, max_size=2))
def test_run_cli_zero_epochs(edits: list[tuple[str, Any]]) -> None:
    """``prunetune run`` of a mutated 0-epoch config: refused with nothing on stdout (errors
    raised inside ``run()`` too), or accepted."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_bytes(dump(_mutate(TINY, edits)))
        out = invoke("run", path, timeout=20)
        if out.code == 0:
            check_accepted(out, "trial result")
            return
        check_refused(out)


def test_paths_cover_every_section() -> None:
    """The strategies reach every section of both documents."""
    assert {key_id(p).split(".")[0] for p in CONFIG_PATHS} >= set(CONFIG)
    assert {key_id(p).split(".")[0] for p in SPACE_PATHS} >= set(SPACE)
