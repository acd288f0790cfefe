"""A pack's W&B runs written by a background thread (``sweeps/tune/wandb_async.py``): real
offline W&B runs, one per member, each with its config, its epochs in order and its summary,
all handed to W&B once ``close`` returns; the calls themselves return without waiting for W&B.
(W&B's service writes a run's file after ``finish`` returns: the test waits for it with
``wandb.teardown`` before it reads the files; CI once read a run record not yet written.)"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweeps.tune.wandb_async import BackgroundRuns
from sweeps.tune.wandb_log import TrialRun, WandbTarget

from .test_wandb_live import runs_by_id


@pytest.fixture(autouse=True)
def _own_wandb_service() -> Iterator[None]:
    """This process's wandb service is started here from a thread: torn down after each test,
    so later tests that look for (or kill) their own wandb-core find this process as before."""
    yield
    import wandb

    wandb.teardown()


def test_members_runs_are_written_in_order_by_the_thread(tmp_path: Path) -> None:
    os.environ.setdefault("WANDB_SILENT", "true")
    runs = BackgroundRuns(WandbTarget("bg", "p", str(tmp_path), "offline"))
    runs.open("t-first", {}).finish()  # starts the thread
    gate = threading.Event()
    runs.put(lambda: gate.wait(60))  # the thread is held: nothing below may wait for it
    for i in range(3):
        run = runs.open(f"t-m{i}", {"member": i})
        for epoch in (1, 2):
            run.log({"test_accuracy": 0.1 * i + 0.01 * epoch}, epoch)
        run.finish(summary={"params_kept": 100 + i, "status": "ok"})
        run.finish(exit_code=1)  # a second finish (a pack's error path) does nothing
    assert runs.queue.qsize() >= 3 * 5 - 1  # all queued: open, 2 logs, 2 finishes each
    gate.set()
    runs.close()
    assert runs.queue.empty()  # every update handed to W&B
    import wandb

    wandb.teardown()  # W&B's service flushes the run files (its writer outlives ``finish``)
    got = runs_by_id(tmp_path)
    assert set(got) == {"bg-t-first", "bg-t-m0", "bg-t-m1", "bg-t-m2"}
    for i in range(3):
        (run_info,) = got[f"bg-t-m{i}"]
        assert run_info["config"]["member"] == i
        assert [h["epoch"] for h in run_info["history"]] == [1, 2]
        assert run_info["history"][1]["test_accuracy"] == 0.1 * i + 0.02
        assert run_info["summary"]["params_kept"] == 100 + i
        assert run_info["summary"]["status"] == "ok"


def test_without_a_target_runs_are_plain_no_ops() -> None:
    runs = BackgroundRuns(None)
    run = runs.open("t", {})
    assert isinstance(run, TrialRun) and not run.active
    run.log({"a": 1.0}, 1)
    run.finish()
    runs.close()
    assert runs.thread is None
