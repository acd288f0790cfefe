"""What one pack trial sends (``sweeps/tune/pack.run_pack_trial``): each member's W&B run opened
at its first epoch and finished with its result (one open at a time when members run one after
another), no separate report of a member's last epoch, member reports sent together (one Tune
report at most every ``checkpoint_s``, at a rung, and at the end), every final with a checkpoint
in which that member is done, and a member the sweep's scheduler stops ending alone."""

from __future__ import annotations

import math
from typing import Any

from pruning_core.packing import run_pack
from pruning_core.trials.experiment import run
from sweeps.tune.pack import (
    PACK_MEMBER,
    PACK_REPORTS,
    STOPPED_FLAG,
    PackState,
    batched_report,
    expand,
    run_pack_trial,
)
from tests.packing.helpers import config


class Recorder:
    """A stand-in for a member's live W&B run (our own interface, not W&B's)."""

    def __init__(self, log: list[tuple[str, str]], mid: str, open_now: set[str]) -> None:
        self.mid, self.events, self.open_now = mid, log, open_now
        assert not open_now, f"{mid} opened while {open_now} still open"
        open_now.add(mid)
        log.append(("open", mid))

    def log(self, metrics: dict[str, Any], epoch: int) -> None:
        self.events.append((f"epoch {epoch}", self.mid))

    def finish(self, summary: dict[str, Any] | None = None, exit_code: int = 0) -> None:
        if self.mid in self.open_now:
            self.open_now.discard(self.mid)
            self.events.append(("finish", self.mid))


class StopAt:
    """A pack's early-stopping client (``stop_client.StopClient``'s interface) whose decision
    is fixed: member ids in ``stop`` stop at their first report that asks (epoch 1 here)."""

    ASK = "stop_ask"

    def __init__(self, stop: set[str]) -> None:
        self.stop, self.asked, self.tokens = stop, [], {}

    def asks(self, mid: str, metrics: dict[str, Any]) -> bool:
        if metrics["epoch"] != 1:
            return False
        self.asked.append(mid)
        return True

    def token(self) -> str:
        self.tokens[str(len(self.tokens))] = self.asked[-1]
        return str(len(self.tokens) - 1)

    def stopped(self, token: str) -> bool:
        return self.tokens[token] in self.stop


def _pack(checkpoint_s: float, stops: Any = None,
          ) -> tuple[list[tuple[str, str]], list[tuple[dict, Any]]]:
    cfgs = [config(train__epochs=3), config(train__epochs=3, seed=1, prune__sparsity=0.5)]
    events: list[tuple[str, str]] = []
    reports: list[tuple[dict, Any]] = []
    open_now: set[str] = set()
    run_pack_trial(
        [{} for _ in cfgs], "t", build=lambda d, mid: (cfgs[int(mid[-1])], {}),
        run_fn=run, extra={}, live=lambda mid, d: Recorder(events, mid, open_now),
        epoch_metrics=lambda r: {"epoch": r.epoch},
        final_metrics=lambda res, last, cfg: {"final": True, "status": res.status},
        report=lambda m, s: reports.append((m, s)), saved=None, checkpoint_s=checkpoint_s,
        stops=stops)
    return events, reports


def _sent(reports: list[tuple[dict, Any]]) -> list[tuple[Any, int]]:
    return [(m.get("epoch", "final"), m[PACK_MEMBER]) for r, _ in reports for m in expand(r)]


def test_one_open_run_at_a_time_and_no_last_epoch_report() -> None:
    events, reports = _pack(checkpoint_s=0.0)
    assert events == [("open", "t-m0"), ("epoch 1", "t-m0"), ("epoch 2", "t-m0"),
                      ("epoch 3", "t-m0"), ("finish", "t-m0"),
                      ("open", "t-m1"), ("epoch 1", "t-m1"), ("epoch 2", "t-m1"),
                      ("epoch 3", "t-m1"), ("finish", "t-m1")]
    # epochs 1 and 2 of each member, then its final (epoch 3 goes out with the final)
    assert _sent(reports) == [(1, 0), (2, 0), ("final", 0), (1, 1), (2, 1), ("final", 1)]
    assert len(reports) == 6  # checkpoint_s = 0: each at once, each with a checkpoint
    assert all(s is not None for _, s in reports)
    first_final = PackState(2, reports[2][1])
    assert first_final.todo() == [1] and first_final.done[0]["status"] == "ok"
    assert PackState(2, reports[-1][1]).todo() == []


def test_member_reports_go_out_together_with_one_checkpoint() -> None:
    _, reports = _pack(checkpoint_s=1e9)
    assert len(reports) == 1  # one Tune report for the whole pack, at its end
    assert _sent(reports) == [(1, 0), (2, 0), ("final", 0), (1, 1), (2, 1), ("final", 1)]
    top, state = reports[0]
    assert PACK_MEMBER not in top and top["final"] is True  # the last member's keys on top
    assert PackState(2, state).todo() == []


def test_a_stopped_member_ends_alone_and_is_sent_at_once() -> None:
    stops = StopAt({"t-m0"})
    events, reports = _pack(checkpoint_s=1e9, stops=stops)
    assert stops.asked == ["t-m0", "t-m1"]
    # member 0 stopped after epoch 1: no more epochs, its W&B run finished; member 1 trains on
    assert ("epoch 2", "t-m0") not in events and ("finish", "t-m0") in events
    assert ("epoch 3", "t-m1") in events
    sent = [m for r, _ in reports for m in expand(r)]
    assert [(m.get("epoch", "final"), m[PACK_MEMBER], bool(m.get(STOPPED_FLAG))) for m in sent] \
        == [(1, 0, False), (1, 0, True), (1, 1, False), (2, 1, False), ("final", 1, False)]
    assert sent[0]["stop_ask"] == "0" and sent[2]["stop_ask"] == "1"
    # each asking report went out at once (the driver decides on it): 3 Tune reports
    assert len(reports) == 3
    done = PackState(2, reports[-1][1]).done
    assert done[0][STOPPED_FLAG] and done[0]["epoch"] == 1 and done[1]["status"] == "ok"


def test_batched_report_round_trips_nan_and_numpy_scalars() -> None:
    import numpy as np

    ms = [{"a": math.nan, PACK_MEMBER: 0}, {"a": np.float32(0.5), "b": "x", PACK_MEMBER: 1}]
    top = batched_report(ms)
    back = expand(top)
    assert math.isnan(back[0]["a"]) and back[1] == {"a": 0.5, "b": "x", PACK_MEMBER: 1}
    assert isinstance(top[PACK_REPORTS], str) and top["b"] == "x" and PACK_MEMBER not in top
    assert expand({"x": 1}) == [{"x": 1}]


def test_run_pack_gives_each_result_as_soon_as_it_is_known() -> None:
    cfgs = [config(), config(seed=1, prune__criterion="magnitude")]
    seen: list[tuple[str, int]] = []
    results = run_pack(cfgs, on_epoch=lambda i, r: seen.append(("epoch", i)) and None,
                       on_result=lambda i, r: seen.append(("result", i)), batched=False)
    assert seen == [("epoch", 0), ("epoch", 0), ("result", 0),
                    ("epoch", 1), ("epoch", 1), ("result", 1)]
    got: dict[int, Any] = {}
    again = run_pack(cfgs, on_result=lambda i, r: got.setdefault(i, r), batched=True)
    assert sorted(got) == [0, 1] and [got[0], got[1]] == again
    assert [r.status for r in results] == ["ok", "ok"]


def test_a_pack_that_raises_still_sends_the_members_that_ended() -> None:
    cfgs = [config(train__epochs=2), config(train__epochs=2, seed=1)]
    reports: list[tuple[dict, Any]] = []

    def run_or_fail(cfg: Any, on_epoch: Any = None, resume: Any = None) -> Any:
        if cfg.seed == 1:
            raise RuntimeError("member 1 broke")
        return run(cfg, on_epoch=on_epoch, resume=resume)

    try:
        run_pack_trial(
            [{} for _ in cfgs], "t", build=lambda d, mid: (cfgs[int(mid[-1])], {}),
            run_fn=run_or_fail, extra={}, live=lambda mid, d: Recorder([], mid, set()),
            epoch_metrics=lambda r: {"epoch": r.epoch},
            final_metrics=lambda res, last, cfg: {"final": True, "status": res.status},
            report=lambda m, s: reports.append((m, s)), saved=None, checkpoint_s=1e9)
    except RuntimeError:
        pass
    else:
        raise AssertionError("the pack's error was swallowed")
    assert _sent(reports) == [(1, 0), ("final", 0)]
    assert PackState(2, reports[-1][1]).todo() == [1]  # a retry trains member 1 only
