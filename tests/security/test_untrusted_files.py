"""Masks files, tuned schedules and results files are untrusted: nothing in them is silently
misread (issue 8, item 6: masks values and metadata, schedule versions, one source of truth for
``prune:``, one policy for a corrupt Parquet file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file
from torch import nn

from pruning_core.base.errors import ConfigError
from pruning_core.masking.masks import MaskSet
from pruning_core.masking.targets import prunable_parameters
from pruning_core.trials.tuned import Schedule
from sweeps.results.pareto import Results, load_results, query
from sweeps.results.store import TrialStore
from tests.security.conftest import assert_refused, prunetune

# --------------------------------------------------------------------------- masks


def tiny() -> dict[str, nn.Parameter]:
    torch.manual_seed(0)
    return prunable_parameters(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)))


def write_masks(path: Path, tensors: dict[str, torch.Tensor],
                metadata: dict[str, str] | None = None) -> Path:
    save_file(tensors, str(path), metadata=metadata)
    return path


META = {"format": "prunetune-masks", "version": "1"}


@pytest.mark.parametrize(("value", "dtype"), [(0.5, torch.float32), (7, torch.uint8),
                                              (float("nan"), torch.float32), (-1, torch.int64),
                                              (float("inf"), torch.float16)])
def test_masks_values_other_than_0_and_1_are_refused(tmp_path: Path, value: float,
                                                     dtype: torch.dtype) -> None:
    params = tiny()
    tensors = {n: torch.ones(p.shape, dtype=dtype) for n, p in params.items()}
    tensors["2.weight"][1, 0] = value
    path = write_masks(tmp_path / "m.safetensors", tensors, META)
    with pytest.raises(ConfigError) as err:
        MaskSet.load(path, params)
    msg = str(err.value)
    assert "2.weight" in msg and "other than 0 and 1" in msg and "\n" not in msg


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.bool, torch.int32])
def test_masks_of_0_and_1_in_any_dtype_load_exactly(tmp_path: Path, dtype: torch.dtype) -> None:
    params = tiny()
    pattern = {n: (torch.arange(p.numel()).view(p.shape) % 3 == 0) for n, p in params.items()}
    path = write_masks(tmp_path / "m.safetensors",
                       {n: m.to(dtype) for n, m in pattern.items()}, META)
    loaded = MaskSet.load(path, params)
    for n, m in pattern.items():
        assert torch.equal(loaded[n], m)
    # 4 of 12 and 2 of 6 positions are multiples of 3: 6 of 18 kept
    assert loaded.kept() == 6


@pytest.mark.parametrize(("metadata", "needle"), [
    (None, "metadata format is None"),
    ({"format": "something-else", "version": "1"}, "metadata format is 'something-else'"),
    ({"format": "prunetune-masks"}, "version None"),
    ({"format": "prunetune-masks", "version": "0"}, "version '0'"),
    ({"format": "prunetune-masks", "version": "one"}, "version 'one'"),
    ({"format": "prunetune-masks", "version": "2"}, "newer than this prunetune reads"),
])
def test_masks_metadata_is_checked(tmp_path: Path, metadata: dict[str, str] | None,
                                   needle: str) -> None:
    params = tiny()
    path = write_masks(tmp_path / "m.safetensors",
                       {n: torch.ones(p.shape, dtype=torch.uint8) for n, p in params.items()},
                       metadata)
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        MaskSet.load(path, params)


def test_saved_masks_round_trip_with_metadata(tmp_path: Path) -> None:
    params = tiny()
    masks = MaskSet(params, {n: torch.rand(p.shape) > 0.5 for n, p in params.items()})
    masks.save(tmp_path / "m.safetensors")
    again = MaskSet.load(tmp_path / "m.safetensors", params)
    assert all(torch.equal(again[n], masks[n]) for n in masks)


# --------------------------------------------------------------------------- schedules


@pytest.fixture
def schedule_doc(results: Path, tmp_path: Path) -> dict:
    """Trial t00 (magnitude, one_shot, global, sparsity 0.5) exported by the real exporter."""
    from sweeps.cli.schedule import export_schedule

    out = tmp_path / "s.yaml"
    export_schedule(results, out, trial="t00")
    return yaml.safe_load(out.read_text())


@pytest.mark.parametrize(("version", "needle"), [
    (True, "version True is not a schedule version"),
    (False, "version False is not a schedule version"),
    (0, "version 0 is not a schedule version"),
    (-1, "version -1 is not a schedule version"),
    ("1", "version '1' is not a schedule version"),
    (1.0, "version 1.0 is not a schedule version"),
    (None, "version None is not a schedule version"),
    (2, "schedule version 2 is newer"),
])
def test_schedule_version_must_be_a_known_whole_number(schedule_doc: dict, tmp_path: Path,
                                                       version: object, needle: str) -> None:
    doc = {**schedule_doc, "version": version}
    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=needle):
        Schedule.load(path)
    if version == "1":  # the text "1" is wrong type, not a newer version
        with pytest.raises(ConfigError) as err:
            Schedule.load(path)
        assert "newer" not in str(err.value)


@pytest.mark.slow
def test_edited_prune_section_takes_effect_in_cli_and_api(schedule_doc: dict,
                                                           tmp_path: Path) -> None:
    assert schedule_doc["prune"]["sparsity"] == 0.5 and "prune" not in schedule_doc["trial"]
    doc = json.loads(json.dumps(schedule_doc))
    doc["prune"]["sparsity"] = 0.8
    doc["prune"]["allocation"]["name"] = "uniform"
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(doc))
    s = Schedule.load(path)
    # the CLI's path: trial_config -> run
    cfg = s.trial_config()
    assert cfg.prune.sparsity == 0.8 and cfg.prune.allocation.name == "uniform"
    out = tmp_path / "r.json"
    p = prunetune("apply", path, "--json", out, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    r = json.loads(out.read_text())
    # uniform 0.8 on layers of 1,024 and 160 weights: round(0.2 * n) kept in each
    assert r["layer_sparsity"] == pytest.approx({"1.weight": 1 - 205 / 1024,
                                                 "3.weight": 1 - 32 / 160})
    assert r["config"]["prune"]["sparsity"] == 0.8
    # the Python API's path: apply_to on a model prunes the same way
    from pruning_core.workloads.models import create_model

    model = create_model("mlp", (1, 8, 8), 10, hidden=[16])
    masks = s.apply_to(model, batches=[], input_shape=(1, 8, 8))
    assert masks.kept_per_layer() == {"1.weight": 205, "3.weight": 32}


@pytest.mark.slow
def test_old_file_with_two_disagreeing_copies_is_refused(schedule_doc: dict,
                                                         tmp_path: Path) -> None:
    doc = json.loads(json.dumps(schedule_doc))
    doc["trial"]["prune"] = json.loads(json.dumps(doc["prune"]))  # as older exports wrote
    same = tmp_path / "same.yaml"
    same.write_text(yaml.safe_dump(doc))
    assert Schedule.load(same).trial_config().prune.sparsity == 0.5
    doc["prune"]["sparsity"] = 0.9
    doc["prune"]["steps"] = 3
    doc["prune"]["schedule"] = "linear"
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="prune: and trial.prune disagree on schedule, "
                                          "sparsity, steps"):
        Schedule.load(edited)
    assert_refused(prunetune("apply", edited, cwd=tmp_path), "disagree on schedule")


# --------------------------------------------------------------------------- results files


def corrupt(results: Path) -> list[Path]:
    """Among the trial files: garbage, a truncated copy of a real file, and a copy whose footer
    is intact but one column's pages are overwritten (found only when the data is read)."""
    import pyarrow.parquet as pq

    trials = results / "trials"
    garbage = trials / "garbage.parquet"
    garbage.write_bytes(b"PAR1 this is not a parquet file")
    truncated = trials / "truncated.parquet"
    truncated.write_bytes((trials / "t00.parquet").read_bytes()[:-40])
    pages = trials / "pages.parquet"
    raw = bytearray((trials / "t01.parquet").read_bytes())
    meta = pq.read_metadata(trials / "t01.parquet").row_group(0)
    chunk = next(meta.column(j) for j in range(meta.num_columns)
                 if meta.column(j).path_in_schema == "test_accuracy")
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    raw[start:start + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    pages.write_bytes(bytes(raw))
    pq.read_metadata(pages)  # the footer still reads: only reading the pages fails
    return [garbage, truncated, pages]


def test_corrupt_files_are_skipped_by_every_reader(results: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    bad = corrupt(results)
    want = ["t00", "t01", "t02", "t03"]
    assert sorted(TrialStore(str(results)).dataframe()["trial_id"]) == want
    assert sorted(load_results(results)["trial_id"]) == want
    assert sorted(query(results, "SELECT trial_id FROM trials")["trial_id"]) == want
    with Results(results) as res:
        front = res.front(["test_accuracy:max", "sparsity:max"])
    assert sorted(front["trial_id"]) == want  # 0.8, 0.77, 0.76, 0.75 at rising sparsity
    for path in bad:
        assert sum(str(path) in r.getMessage() for r in caplog.records
                   if r.levelname == "WARNING") >= 3


def test_file_damaged_only_inside_its_pages_is_skipped_when_read(
        results: Path, caplog: pytest.LogCaptureFixture) -> None:
    garbage, truncated, pages = corrupt(results)
    garbage.unlink()
    truncated.unlink()
    assert sorted(p.name for p in (results / "trials").iterdir()) == [
        "pages.parquet", "t00.parquet", "t01.parquet", "t02.parquet", "t03.parquet"]
    want = ["t00", "t01", "t02", "t03"]
    with Results(results) as res:  # the footers all read: nothing is skipped yet
        assert sorted(res.load()["trial_id"]) == want  # reading every column finds it
        assert sorted(res.front(["test_accuracy:max", "sparsity:max"])["trial_id"]) == want
    assert any(str(pages) in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_corrupt_file_policy_is_the_same_in_every_command(results: Path,
                                                          tmp_path: Path) -> None:
    bad = corrupt(results)
    runs = {
        "pareto": prunetune("pareto", results, "--format", "csv", "--columns", "trial_id",
                            cwd=tmp_path),
        "query": prunetune("query", results, "SELECT count(*) AS n FROM trials", "--format",
                           "csv", cwd=tmp_path),
        "report": prunetune("report", results, "--out", tmp_path / "r.html", cwd=tmp_path),
        "export": prunetune("schedule", "export", results, "--best", "test_accuracy",
                            "--out", tmp_path / "s.yaml", cwd=tmp_path),
    }
    for name, p in runs.items():
        assert p.returncode == 0, (name, p.stderr)
        for path in bad:
            assert f"skipping unreadable results file {path}" in p.stderr, (name, p.stderr)
    assert runs["query"].stdout.split() == ["n", "4"]
    assert len(runs["pareto"].stdout.splitlines()) == 5  # header + the 4 trials of the front
    assert "from trial t00" in runs["export"].stdout


@pytest.mark.slow
def test_apply_never_imports_code_a_schedule_names(schedule_doc: dict, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    doc = json.loads(json.dumps(schedule_doc))
    for section, flag in (("model", "--model"), ("data", "--data")):
        one = json.loads(json.dumps(schedule_doc))
        one["trial"][section]["name"] = "os:system"
        one["trial"][section]["options"] = {"command": f"touch {marker}"}
        path = tmp_path / f"{section}.yaml"
        path.write_text(yaml.safe_dump(one))
        assert_refused(prunetune("apply", path, cwd=tmp_path),
                       f"trial.{section}.name names code to import (os:system)", flag)
        doc["trial"][section] = one["trial"][section]
    both = tmp_path / "both.yaml"
    both.write_text(yaml.safe_dump(doc))
    # naming the model and the data replaces the schedule's choices (and their options)
    p = prunetune("apply", both, "--model", "mlp", "--data", "digits", "--set",
                  "model.options={}", "--set", "data.options={}", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert not marker.exists()


@pytest.mark.slow
def test_apply_never_reads_a_weights_file_a_schedule_names(schedule_doc: dict,
                                                           tmp_path: Path) -> None:
    """``trial.model.weights`` is a path the schedule's author chose (``/etc/passwd`` ended in a
    64-line traceback): refused unless the user names the weights; ``--trust-schedule`` (off by
    default) lets the schedule choose, with a warning, and a bad file is still one line."""
    doc = json.loads(json.dumps(schedule_doc))
    doc["trial"]["model"]["weights"] = "/etc/passwd"
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert_refused(prunetune("apply", path, cwd=tmp_path),
                   "trial.model.weights names a file to read (/etc/passwd)",
                   "--set model.weights=PATH", "--trust-schedule", stdout_empty=False)
    trusted = prunetune("apply", path, "--trust-schedule", cwd=tmp_path)
    lines = trusted.stderr.strip().splitlines()
    assert trusted.returncode == 2 and "Traceback" not in trusted.stderr, trusted.stderr
    assert len(lines) == 2, lines
    assert lines[0] == f"warning: --trust-schedule: {path} chooses model.weights=/etc/passwd"
    assert lines[1].startswith("error: model.weights: '/etc/passwd' is not a torch checkpoint")
    # the user's own choice replaces the schedule's, and the trial trains
    ok = prunetune("apply", path, "--set", "model.weights=null", "--json", "r.json",
                   cwd=tmp_path)
    assert ok.returncode == 0 and "warning" not in ok.stderr, ok.stderr
    assert json.loads((tmp_path / "r.json").read_text())["config"]["model"]["weights"] is None
