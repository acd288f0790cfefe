"""Compaction: per-trial files merged into part files, every row kept, idempotent, a resumed
trial's newer file wins, and a real ``prunetune compact`` killed (SIGKILL) at random moments
always leaves a readable set with each trial exactly once."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from sweeps.results.compaction import compact
from sweeps.results.pareto import Results
from sweeps.results.store import TrialStore
from sweeps.tune.recorder import Recorder
from sweeps.tune.space import parse_space

from .test_schema import SPACE, StandInTrial, final_result, sampled

REPO = Path(__file__).resolve().parents[2]


def write_sweep(root: Path, n: int) -> dict[str, float]:
    """``n`` finished trials written through the recorder, one file each; id -> accuracy."""
    space = parse_space({**SPACE, "storage": str(root)})
    rec = Recorder(space.name, TrialStore(str(root)), space.base_config(), space=space)
    accs = {}
    for i in range(n):
        acc = round(0.3 + 0.6 * ((i * 7919) % n) / n, 6)
        tid = f"t{i:05d}"
        rec.record(StandInTrial(tid, sampled(i), final_result(acc, 0.1 + 0.8 * i / n)))
        accs[tid] = acc
    return accs


def names(root: Path) -> tuple[list[str], list[str]]:
    files = sorted(p.name for p in (root / "trials").glob("*.parquet"))
    return [f for f in files if f.startswith("part-")], [f for f in files if
                                                          not f.startswith("part-")]


def check_set(root: Path, accs: dict[str, float]) -> None:
    """Every trial once, with its accuracy, through the store (pyarrow) and DuckDB."""
    df = TrialStore(str(root)).dataframe()
    assert len(df) == len(accs) and df["trial_id"].is_unique
    assert dict(zip(df["trial_id"], df["test_accuracy"], strict=True)) == pytest.approx(accs)
    with Results(root) as res:
        got = res.query("SELECT trial_id, test_accuracy FROM trials")
        front = res.front(["test_accuracy:max", "sparsity:max"])
    assert len(got) == len(accs) and got["trial_id"].is_unique
    assert dict(zip(got["trial_id"], got["test_accuracy"], strict=True)) == pytest.approx(accs)
    assert front["trial_id"].is_unique and len(front) >= 1


def test_compact_keeps_every_row_and_is_idempotent(tmp_path: Path) -> None:
    root = tmp_path / "res"
    accs = write_sweep(root, 25)
    before = TrialStore(str(root)).dataframe().sort_values("trial_id").reset_index(drop=True)
    done = compact(TrialStore(str(root)), rows_per_part=10)
    assert done.rows == 25 and done.files_read == 25 and done.files_deleted == 25
    parts, singles = names(root)
    assert len(parts) == 3 and singles == []  # 10 + 10 + 5 rows
    after = TrialStore(str(root)).dataframe().sort_values("trial_id").reset_index(drop=True)
    drop = ["recorded_at"]
    pd.testing.assert_frame_equal(before.drop(columns=drop), after.drop(columns=drop))
    check_set(root, accs)
    again = compact(TrialStore(str(root)), rows_per_part=10)
    assert not again.changed and names(root)[0] == parts  # nothing to do: nothing touched


def test_compaction_is_incremental_full_parts_stay_unless_superseded(tmp_path: Path) -> None:
    """A resumed sweep's compaction rewrites its new rows and the one partial part; a full
    part stays the same file, unless a newer row of one of its trials exists."""
    root = tmp_path / "res"
    accs = write_sweep(root, 25)
    compact(TrialStore(str(root)), rows_per_part=10)  # 10 + 10 + 5
    parts = {p: p.stat().st_mtime_ns for p in (root / "trials").glob("part-*.parquet")}
    full = sorted(p for p in parts if len(pd.read_parquet(p)) == 10)
    assert len(parts) == 3 and len(full) == 2
    rec = Recorder("schema", TrialStore(str(root)), parse_space(SPACE).base_config(),
                   space=parse_space(SPACE))
    for i in (25, 26):  # two new trials
        rec.record(StandInTrial(f"t{i:05d}", sampled(i), final_result(0.5, 0.5)))
        accs[f"t{i:05d}"] = 0.5
    done = compact(TrialStore(str(root)), rows_per_part=10)
    assert done.rows == 7 and done.files_read == 3  # the 5-row part and 2 new files
    now = sorted((root / "trials").glob("part-*.parquet"))
    for p in full:  # untouched: same file, same mtime
        assert p in now and p.stat().st_mtime_ns == parts[p]
    assert len(now) == 3 and names(root)[1] == []
    check_set(root, accs)
    # a newer row of a trial inside a full part: that part is rewritten, the other stays
    first = pd.read_parquet(full[0])["trial_id"].iloc[0]
    rec.record(StandInTrial(first, sampled(0), final_result(0.97, 0.5)))
    accs[first] = 0.97
    done = compact(TrialStore(str(root)), rows_per_part=10)
    assert done.rows == 17  # the superseded full part, the 7-row part and the new file
    after = sorted((root / "trials").glob("part-*.parquet"))
    assert full[0] not in after and full[1] in after
    assert full[1].stat().st_mtime_ns == parts[full[1]]
    check_set(root, accs)
    plain = duckdb.connect().execute(  # compact again: plain readers see each trial once
        f"SELECT count(*), count(DISTINCT trial_id) FROM read_parquet('{root}/trials/*.parquet')"
    ).fetchone()
    assert plain == (27, 27)
    assert not compact(TrialStore(str(root)), rows_per_part=10).changed


def test_resumed_trial_after_compaction_wins_and_store_methods_work(tmp_path: Path) -> None:
    root = tmp_path / "res"
    accs = write_sweep(root, 12)
    store = TrialStore(str(root))
    store.compact()
    assert names(root)[1] == [] and store.trial_ids() == set(accs)
    assert store.has("t00003") and not store.has("nope")
    # a resumed trial rewrites its own file after the compaction: that newer row wins
    rec = Recorder("schema", store, parse_space(SPACE).base_config(), space=parse_space(SPACE))
    rec.record(StandInTrial("t00003", sampled(3), final_result(0.99, 0.5)))
    accs["t00003"] = 0.99
    check_set(root, accs)
    assert store.row("t00003")["test_accuracy"] == 0.99
    assert store.row("t00003")["layer_sparsity.3.weight"] == pytest.approx(0.51)
    # plain DuckDB sees both copies until the next compaction; prunetune's readers do not
    plain = duckdb.connect().execute(
        f"SELECT count(*) FROM read_parquet('{root}/trials/*.parquet')").fetchone()[0]
    assert plain == 13
    store.compact()
    assert names(root)[1] == [] and len(names(root)[0]) == 1
    check_set(root, accs)
    # move_aside reaches into part files; the moved rows land in trials_orphaned/
    assert store.move_aside(["t00001", "t00004"]) == ["t00001", "t00004"]
    del accs["t00001"], accs["t00004"]
    assert store.trial_ids() == set(accs) and not store.has("t00004")
    check_set(root, accs)
    orphans = TrialStore(str(tmp_path / "o"))
    orphans.trials_path = str(root / "trials_orphaned")
    assert sorted(orphans.trial_ids()) == ["t00001", "t00004"]


def test_compact_command(tmp_path: Path) -> None:
    import typer

    from sweeps.cli.results import register

    app = typer.Typer()
    register(app)
    root = tmp_path / "res"
    accs = write_sweep(root, 5)
    r = CliRunner().invoke(app, ["compact", str(root / "trials")])  # RESULTS/trials works too
    assert r.exit_code == 0 and "5 files -> 1 part file(s), 5 rows" in r.stdout, r.output
    r = CliRunner().invoke(app, ["compact", str(root)])
    assert r.exit_code == 0 and "already compact" in r.stdout
    check_set(root, accs)
    r = CliRunner().invoke(app, ["compact", str(tmp_path / "missing")])
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and "no such directory" in r.stderr


def _watch_then_kill(proc: subprocess.Popen[bytes], trials: Path, delay: float) -> bool:
    """Kill once a new part file is in place (the delete phase), after ``delay``."""
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        with os.scandir(trials) as it:
            if any(e.name.startswith("part-") for e in it):
                time.sleep(delay)
                proc.send_signal(signal.SIGKILL)
                return True
    return False


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    pristine = tmp_path / "pristine"
    accs = write_sweep(pristine, 300)
    cmd = [sys.executable, "-m", "sweeps.cli", "compact"]
    # how long a whole run takes here (start-up included), on a copy
    shutil.copytree(pristine, tmp_path / "timing")
    t0 = time.monotonic()
    subprocess.run([*cmd, str(tmp_path / "timing")], check=True, capture_output=True, cwd=REPO)
    total = time.monotonic() - t0
    rng = random.Random(20261123)
    root = tmp_path / "res"
    shutil.copytree(pristine, root)
    mid_states = 0
    for attempt in range(6):
        proc = subprocess.Popen([*cmd, str(root)], cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if attempt % 2:  # at a random moment of the run
            time.sleep(rng.uniform(0.3 * total, total))
            proc.send_signal(signal.SIGKILL)
        else:  # while it deletes what it merged
            _watch_then_kill(proc, root / "trials", rng.uniform(0.0, 0.005))
        proc.wait(timeout=60)
        parts, singles = names(root)
        mid_states += bool(parts and singles)
        check_set(root, accs)
        if not singles:  # it finished before the kill: start again from per-trial files
            shutil.rmtree(root)
            shutil.copytree(pristine, root)
    assert mid_states >= 1  # some kill landed between writing the part and the last delete
    subprocess.run([*cmd, str(root)], check=True, capture_output=True, cwd=REPO)
    parts, singles = names(root)
    assert singles == [] and len(parts) == 1  # a finished run cleans up what kills left
    check_set(root, accs)


def test_compaction_on_object_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same on S3 (moto on 127.0.0.1): per-trial PUTs, a part PUT, deletes; every reader
    path through pyarrow's S3 filesystem."""
    import urllib.request

    import boto3
    from moto.server import ThreadedMotoServer

    for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        urllib.request.urlopen(urllib.request.Request(
            f"http://{host}:{port}/moto-api/reset", method="POST"), timeout=10).read()
        boto3.client("s3", endpoint_url=f"http://{host}:{port}").create_bucket(Bucket="sweeps")
        uri = f"s3://sweeps/res?endpoint_override={host}:{port}&scheme=http&region=us-east-1"
        space = parse_space(SPACE)
        rec = Recorder(space.name, TrialStore(uri), space.base_config(), space=space)
        for i in range(6):
            rec.record(StandInTrial(f"t{i}", sampled(i), final_result(0.5 + i / 100, 0.5)))
        store = TrialStore(uri)
        assert len(store.files()) == 6
        done = store.compact()
        assert done.rows == 6 and len(store.files()) == 1 and store.part_files()
        rec.record(StandInTrial("t2", sampled(2), final_result(0.9, 0.5)))  # resumed: newer
        df = store.dataframe().set_index("trial_id")
        assert len(df) == 6 and df.loc["t2", "test_accuracy"] == 0.9
        with Results([uri]) as res:
            got = res.query("SELECT trial_id, test_accuracy FROM trials ORDER BY 1")
        assert list(got["trial_id"]) == [f"t{i}" for i in range(6)]
        assert got["test_accuracy"].iloc[2] == 0.9
        assert store.move_aside(["t4"]) == ["t4"] and "t4" not in store.trial_ids()
    finally:
        server.stop()
