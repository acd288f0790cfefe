"""What one pack trial sends (``sweeps/tune/pack.run_pack_trial``): each member's W&B run opened
at its first epoch and finished with its result (one open at a time when members run one after
another), no separate report of a member's last epoch, the pack's checkpoint on epoch reports at
most every ``checkpoint_s``, and every final with a checkpoint in which that member is done."""

from __future__ import annotations

from typing import Any

from pruning_core.packing import run_pack
from pruning_core.trials.experiment import run
from sweeps.tune.pack import PACK_MEMBER, PackState, run_pack_trial
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


def _pack(checkpoint_s: float) -> tuple[list[tuple[str, str]], list[tuple[dict, Any]]]:
    cfgs = [config(train__epochs=3), config(train__epochs=3, seed=1, prune__sparsity=0.5)]
    events: list[tuple[str, str]] = []
    reports: list[tuple[dict, Any]] = []
    open_now: set[str] = set()
    run_pack_trial(
        [{} for _ in cfgs], "t", build=lambda d, mid: (cfgs[int(mid[-1])], {}),
        run_fn=run, extra={}, live=lambda mid, d: Recorder(events, mid, open_now),
        epoch_metrics=lambda r: {"epoch": r.epoch},
        final_metrics=lambda res, last, cfg: {"final": True, "status": res.status},
        report=lambda m, s: reports.append((m, s)), saved=None, checkpoint_s=checkpoint_s)
    return events, reports


def test_one_open_run_at_a_time_and_no_last_epoch_report() -> None:
    events, reports = _pack(checkpoint_s=0.0)
    assert events == [("open", "t-m0"), ("epoch 1", "t-m0"), ("epoch 2", "t-m0"),
                      ("epoch 3", "t-m0"), ("finish", "t-m0"),
                      ("open", "t-m1"), ("epoch 1", "t-m1"), ("epoch 2", "t-m1"),
                      ("epoch 3", "t-m1"), ("finish", "t-m1")]
    # epochs 1 and 2 of each member, then its final (epoch 3 goes out with the final)
    sent = [(m.get("epoch", "final"), m[PACK_MEMBER]) for m, _ in reports]
    assert sent == [(1, 0), (2, 0), ("final", 0), (1, 1), (2, 1), ("final", 1)]
    assert all(s is not None for _, s in reports)  # checkpoint_s = 0: every report
    first_final = PackState(2, reports[2][1])
    assert first_final.todo() == [1] and first_final.done[0]["status"] == "ok"
    assert PackState(2, reports[-1][1]).todo() == []


def test_epoch_checkpoints_are_thinned_but_finals_keep_theirs() -> None:
    _, reports = _pack(checkpoint_s=1e9)
    for m, s in reports:
        assert (s is None) == ("final" not in m)


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
