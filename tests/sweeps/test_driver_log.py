"""Issue 22, item 2 (fast part): the driver log keeps every warning; the terminal loses only
the messages about trials a stop on purpose cut short, and only while it is one. Real
``logging`` handlers; the records are the ones Ray and the W&B sink write."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweeps.tune.driver_log import CUT_SHORT, driver_log, driver_log_path


@pytest.fixture
def console() -> Iterator[io.StringIO]:
    """A terminal handler on the root logger and on ``ray`` (which does not propagate)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    ray = logging.getLogger("ray")
    root = logging.getLogger()
    saved = (ray.propagate, root.level)
    ray.propagate = False
    root.setLevel(logging.WARNING)
    root.addHandler(handler)
    ray.addHandler(handler)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        ray.removeHandler(handler)
        ray.propagate, _ = saved
        root.setLevel(saved[1])


def _messages() -> None:
    logging.getLogger("ray.tune.tune").warning(
        "Experiment has been interrupted, but the most recent state was saved.\nResume "
        "experiment with: Tuner.restore(path=\"/r/tune\", trainable=...)")
    logging.getLogger("ray.tune.analysis.experiment_analysis").warning(
        "Failed to fetch metrics for 2 trial(s):\n- t1: FileNotFoundError('...')")
    logging.getLogger("sweeps.tune.wandb_log").warning(
        "W&B: no run for 1 interrupted trial(s) (stopped before their W&B run started)",
        extra={CUT_SHORT: True})
    logging.getLogger("sweeps.tune.wandb_log").warning(
        "W&B: no run for 1 trial(s) (W&B failed in their workers): t9")  # a real failure
    logging.getLogger("ray.tune").warning("Trial t3 errored: something real")


def test_a_stop_on_purpose_keeps_cut_short_messages_in_the_file_only(
        tmp_path: Path, console: io.StringIO) -> None:
    path = tmp_path / "res" / "driver.log"
    with driver_log(path, lambda: True):
        _messages()
    shown = console.getvalue()
    for hidden in ("Tuner.restore", "Failed to fetch metrics", "interrupted trial(s)"):
        assert hidden not in shown, shown
    assert "W&B failed in their workers" in shown and "something real" in shown
    kept = path.read_text()
    for message in ("Tuner.restore", "Failed to fetch metrics", "interrupted trial(s)",
                    "W&B failed in their workers", "something real"):
        assert kept.count(message) == 1, kept  # once each, though two loggers carry the file


def test_without_a_stop_ray_speaks_and_the_filter_goes_away(tmp_path: Path,
                                                           console: io.StringIO) -> None:
    path = tmp_path / "driver.log"
    with driver_log(path, lambda: False):
        _messages()
    shown = console.getvalue()
    assert "Tuner.restore" in shown and "Failed to fetch metrics" in shown
    assert "interrupted trial(s)" not in shown  # only ever written after a stop: file only
    console.truncate(0)
    logging.getLogger("ray.tune.tune").warning("Experiment has been interrupted, later")
    assert "later" in console.getvalue()  # the block is over: nothing filtered, no file
    assert "later" not in path.read_text()


def test_where_the_driver_log_goes() -> None:
    assert driver_log_path("/r/res", "s") == Path("/r/res/driver.log")
    assert driver_log_path("file:///r/res", "s") == Path("/r/res/driver.log")
    import tempfile

    # remote results: nothing is written where the sweep runs (tests/infra/test_faults.py)
    remote = driver_log_path("s3://b/p", "s")
    assert remote == Path(tempfile.gettempdir()) / "prunetune-s.driver.log"
