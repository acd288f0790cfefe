"""Issue 22, item 1: a sweep's progress where the live table cannot draw (a log, a pipe):
one plain line per finished trial and a status line every ``--log-interval`` seconds. Fast:
the line formats, the interval, and the callback driven by a fake clock on real Tune trials."""

from __future__ import annotations

import math

import pytest
from ray.tune.experiment import Trial

from pruning_core.base.errors import ConfigError
from sweeps.tune.progress import (
    LOG_INTERVAL_ENV,
    Progress,
    Ticker,
    log_interval,
    status_line,
    trial_line,
)
from sweeps.tune.trainable import FINAL_FLAG, RESULT_STATUS


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_trial_line_is_plain_and_greppable() -> None:
    line = trial_line("82ed5ce5", "ok", {"test_accuracy": 0.930556, "sparsity": 0.78611},
                      ["test_accuracy", "sparsity"], 12.34)
    assert line == "[prunetune] trial 82ed5ce5 ok test_accuracy=0.9306 sparsity=0.7861 " \
                   "elapsed=12.3s"
    line = trial_line("t2", "error", {"test_accuracy": math.nan}, ["test_accuracy", "flops"],
                      None, "ValueError: bad\n  thing")
    assert line == "[prunetune] trial t2 error test_accuracy=nan flops=- elapsed=- " \
                   "error=ValueError: bad thing"
    assert "\x1b" not in line and "\n" not in line


def test_status_line_counts_and_best() -> None:
    counts = {"ok": 2, "stopped_early": 1, "running": 2, "pending": 1}
    best = {"test_accuracy": (0.93, "82ed5ce5"), "sparsity": (0.9, "1f0e2a3b")}
    line = status_line(counts, best, ["test_accuracy", "sparsity"], ["max", "max"], 16, 45.2)
    assert line == ("[prunetune] status 3/16 done (2 ok, 1 stopped_early), 2 running, "
                    "11 pending, 45s; best test_accuracy=0.93 (82ed5ce5) sparsity=0.9 (1f0e2a3b)")
    assert status_line({}, {}, ["test_accuracy"], ["max"], 4, 0) == \
        "[prunetune] status 0/4 done, 0 running, 4 pending, 0s; best -"


def test_ticker_is_due_once_per_interval_and_never_at_0() -> None:
    clock = Clock()
    t = Ticker(30, clock)
    assert not t.due()
    clock.now += 29.9
    assert not t.due()
    clock.now += 0.2
    assert t.due() and not t.due()  # once, then again 30 s later
    clock.now += 30
    assert t.due()
    off = Ticker(0, clock)
    clock.now += 1e6
    assert not off.due()


@pytest.mark.parametrize(("option", "env", "expected"), [
    (None, None, 30.0), (None, "5", 5.0), (2.5, "5", 2.5), (0.0, None, 0.0), (None, "", 30.0),
])
def test_log_interval_option_then_env_then_30(option: float | None, env: str | None,
                                              expected: float) -> None:
    environ = {} if env is None else {LOG_INTERVAL_ENV: env}
    assert log_interval(option, environ) == expected


@pytest.mark.parametrize(("option", "env", "needle"), [
    (-1.0, None, "--log-interval: -1.0 is not a number of seconds >= 0"),
    (math.inf, None, "--log-interval: inf"),
    (None, "soon", f"{LOG_INTERVAL_ENV}: 'soon' is not a number of seconds"),
    (None, "-3", f"{LOG_INTERVAL_ENV}: '-3' is not a number of seconds >= 0"),
])
def test_a_bad_log_interval_is_one_line_naming_its_source(option: float | None,
                                                          env: str | None, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        log_interval(option, {} if env is None else {LOG_INTERVAL_ENV: env})
    assert str(info.value).startswith(needle) and "\n" not in str(info.value)


def _trial(trial_id: str, status: str, result: dict | None = None) -> Trial:
    t = Trial("prunetune_trial", stub=True, trial_id=trial_id)
    t.set_status(status)
    if result:
        t.update_last_result(result)
    return t


def test_the_callback_emits_a_line_per_finished_trial_and_status_on_the_clock() -> None:
    clock, lines = Clock(), []
    p = Progress("s", 3, ["test_accuracy", "sparsity"], ["max", "max"], emit=lines.append,
                 interval=30, clock=clock)
    a, b = _trial("aaaa0001", Trial.RUNNING), _trial("bbbb0002", Trial.PENDING)
    p.on_trial_start(iteration=0, trials=[a, b], trial=a)
    p.on_step_end(iteration=1, trials=[a, b])
    assert lines == []  # nothing before the first interval
    clock.now += 12.5
    a.update_last_result({"test_accuracy": 0.91, "sparsity": 0.8, FINAL_FLAG: True,
                          RESULT_STATUS: "ok"})
    a.set_status(Trial.TERMINATED)
    p.on_trial_complete(iteration=2, trials=[a, b], trial=a)
    assert lines == ["[prunetune] trial aaaa0001 ok test_accuracy=0.91 sparsity=0.8 "
                     "elapsed=12.5s"]
    clock.now += 20  # 32.5 s since the start: a status line
    b.set_status(Trial.RUNNING)
    p.on_trial_start(iteration=3, trials=[a, b], trial=b)
    p.on_step_end(iteration=3, trials=[a, b])
    p.on_step_end(iteration=4, trials=[a, b])  # the same second: not again
    assert lines[1:] == ["[prunetune] status 1/3 done (1 ok), 1 running, 1 pending, 32s; "
                         "best test_accuracy=0.91 (aaaa0001) sparsity=0.8 (aaaa0001)"]
    clock.now += 5
    b.update_last_result({"test_accuracy": 0.5, "sparsity": 0.95})  # no final report
    b.set_status(Trial.TERMINATED)
    p.on_trial_complete(iteration=5, trials=[a, b], trial=b)  # a scheduler stopped it
    assert lines[2] == "[prunetune] trial bbbb0002 stopped_early test_accuracy=0.5 " \
                       "sparsity=0.95 elapsed=5.0s"
    assert not p.stopped_on_purpose
    p.on_experiment_end(trials=[a, b, _trial("cccc0003", Trial.PENDING)])
    assert p.stopped_on_purpose  # a trial never ran: the sweep was cut short


def test_without_emit_the_callback_prints_nothing_and_pickles() -> None:
    import pickle

    p = Progress("s", 1, ["test_accuracy"], ["max"], emit=print, interval=1)
    q = pickle.loads(pickle.dumps(p))  # tuner.pkl of an older run: no sink comes back
    assert q.emit is None and q.num_samples == 1


def test_every_ended_status_counts_as_finished_in_the_table() -> None:
    p = Progress("s", 3, ["test_accuracy"], ["max"])
    trials = [_trial("a", Trial.TERMINATED, {FINAL_FLAG: True, RESULT_STATUS: "ok"}),
              _trial("b", Trial.TERMINATED, {FINAL_FLAG: True, RESULT_STATUS: "doomed"}),
              _trial("c", Trial.RUNNING)]
    p.on_step_end(iteration=1, trials=trials)
    assert p.renderable().title.startswith("sweep s: 2/3 finished")  # a doomed trial ended
    table = p.renderable()
    cells = {c.header: next(iter(c.cells)) for c in table.columns}
    assert cells["doomed"] == "1" and cells["ok"] == "1" and cells["running"] == "1"


def test_a_packs_members_count_and_print_as_trials() -> None:
    from sweeps.tune.pack import PACK_KEY, PACK_MEMBER, STOPPED_FLAG, batched_report

    clock, lines = Clock(), []
    p = Progress("s", 4, ["test_accuracy"], ["max"], emit=lines.append, interval=1, clock=clock)
    pack = Trial("prunetune_trial", stub=True, config={PACK_KEY: [{}, {}, {}]},
                 trial_id="pppp0001")
    pack.set_status(Trial.RUNNING)
    p.on_trial_start(iteration=0, trials=[pack], trial=pack)
    clock.now += 3
    p.on_trial_result(iteration=1, trials=[pack], trial=pack, result=batched_report([
        {"test_accuracy": 0.4, "epoch": 1, PACK_MEMBER: 0},  # an epoch: no line
        {"test_accuracy": 0.2, "epoch": 1, PACK_MEMBER: 1, STOPPED_FLAG: True},
        {"test_accuracy": 0.9, FINAL_FLAG: True, RESULT_STATUS: "ok", PACK_MEMBER: 0}]))
    assert lines == ["[prunetune] trial pppp0001-m1 stopped_early test_accuracy=0.2 "
                     "elapsed=3.0s",
                     "[prunetune] trial pppp0001-m0 ok test_accuracy=0.9 elapsed=3.0s"]
    p.on_step_end(iteration=2, trials=[pack])
    assert p.counts == {"ok": 1, "stopped_early": 1, "running": 1}
    assert p.best == {"test_accuracy": (0.9, "pppp0001-m0")}  # a stopped member's is not final
    assert lines[-1].startswith("[prunetune] status 2/4 done (1 ok, 1 stopped_early), "
                                "1 running, 1 pending")
    pack.set_status(Trial.TERMINATED)
    p.on_trial_complete(iteration=3, trials=[pack], trial=pack)
    assert len(lines) == 3  # no line for the pack itself
