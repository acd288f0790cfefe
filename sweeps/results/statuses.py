"""The statuses a trial's row can carry, and the ones that count as finished."""

from __future__ import annotations

#: every status a results row can carry
STATUSES: tuple[str, ...] = ("ok", "error", "diverged", "doomed", "stopped_early", "interrupted")
#: the statuses of trials that finished the configuration they describe (fronts read these)
DONE_STATUSES: tuple[str, ...] = ("ok",)
#: the status of a trial ended before training (no input->output path): never on a front
DOOMED = "doomed"
