"""``report_retrying``: a report the results storage refuses waits with backoff and is tried
again within ``budget.storage_retry_s``; any other error, or an outage outlasting the budget,
fails at once. The end-to-end version (a 20 s S3 outage) is in tests/infra/test_faults.py."""

from __future__ import annotations

import pytest

from sweeps.tune.space import Budget
from sweeps.tune.trainable import report_retrying


class Refusing:
    """A report refused ``n`` times (an ``OSError`` as pyarrow's S3 raises), then accepted."""

    def __init__(self, n: int, error: type[Exception] = OSError) -> None:
        self.n, self.calls, self.error = n, 0, error

    def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.n:
            raise self.error("AWS Error NETWORK_CONNECTION during PutObject operation")


class Clock:
    """Time that passes only when slept (the waits are recorded)."""

    def __init__(self) -> None:
        self.now, self.waits = 0.0, []  # type: float, list[float]

    def sleep(self, s: float) -> None:
        self.waits.append(s)
        self.now += s

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_to_a_cap_and_the_report_goes_through() -> None:
    waits: list[float] = []
    report = Refusing(6)
    assert report_retrying(report, budget_s=1e9, sleep=waits.append) == 6
    assert report.calls == 7
    assert waits == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0]


def test_an_outage_longer_than_the_budget_raises_the_storage_error() -> None:
    clock = Clock()
    with pytest.raises(OSError, match="NETWORK_CONNECTION"):
        # 1 + 2 + 4 = 7 s of waiting fit in 10 s, the next 8 s wait does not
        report_retrying(Refusing(100), budget_s=10.0, sleep=clock.sleep, clock=clock)
    assert clock.waits == [1.0, 2.0, 4.0]


def test_zero_budget_and_other_errors_fail_at_once() -> None:
    report = Refusing(1)
    with pytest.raises(OSError):
        report_retrying(report, budget_s=0.0, sleep=lambda s: None)
    assert report.calls == 1
    bug = Refusing(1, error=ValueError)  # not the storage: no retry hides a bug
    with pytest.raises(ValueError):
        report_retrying(bug, budget_s=60.0, sleep=lambda s: None)
    assert bug.calls == 1


def test_budget_default_and_bounds() -> None:
    assert Budget().storage_retry_s == 120.0
    with pytest.raises(ValueError, match="storage_retry_s"):
        Budget(storage_retry_s=-1)
