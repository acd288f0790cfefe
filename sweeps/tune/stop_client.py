"""A pack's side of per-member early stopping (``member_stops.py``, which holds the rule and
the driver's side): which member reports wait for a decision, and the wait on the sweep's
board actor."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: the member report that waits for a decision carries its token under this key
ASK = "stop_ask"
#: how long a member waits for its decision before it goes on (seconds)
STOP_WAIT_S = 120.0


def board_name(sweep: str) -> str:
    """The sweep's board: one name per sweep, so a resumed sweep's restored scheduler finds it."""
    return f"prunetune-stops-{sweep}"


@dataclass(frozen=True)
class StopSpec:
    """What a pack needs to ask for decisions: the board's name and the rule's points."""

    board: str
    points: tuple[float, ...]
    time_attr: str


class StopClient:
    """A pack's side: which member reports wait for a decision, and the wait."""

    ASK = ASK

    def __init__(self, spec: StopSpec, timeout_s: float = STOP_WAIT_S) -> None:
        self.spec, self.timeout_s = spec, timeout_s
        self.passed: dict[str, set[float]] = {}
        self._board: Any = None

    def asks(self, mid: str, metrics: Mapping[str, Any]) -> bool:
        """True when this report reaches a point of the rule the member has not passed."""
        t = metrics.get(self.spec.time_attr)
        if t is None:
            return False
        passed = self.passed.setdefault(mid, set())
        new = [p for p in self.spec.points if p <= t and p not in passed]
        passed.update(new)
        return bool(new)

    @staticmethod
    def token() -> str:
        return uuid.uuid4().hex

    def stopped(self, token: str) -> bool:
        import ray

        from sweeps.tune.driver_actor import unreachable

        try:
            if self._board is None:
                self._board = ray.get_actor(self.spec.board)
            decision = ray.get(self._board.wait.remote(token, self.timeout_s))
        except unreachable() as exc:  # the board is gone (its node died): no decision
            log.warning("the sweep's early-stopping board is unreachable (%s); the member "
                        "goes on", type(exc).__name__)
            self._board = None
            return False
        if decision is None:
            log.warning("no early-stopping decision within %.0f s; the member goes on",
                        self.timeout_s)
            return False
        return bool(decision)


