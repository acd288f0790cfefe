"""A trial that takes its time (imported by Ray workers, so a module): each epoch sleeps."""

from __future__ import annotations

import time
from typing import Any

from pruning_core.trials.experiment import run


class SlowRun:
    def __init__(self, seconds_per_epoch: float) -> None:
        self.seconds_per_epoch = seconds_per_epoch

    def __call__(self, cfg: Any, on_epoch: Any = None, resume: Any = None) -> Any:
        def slow(report: Any) -> None:
            time.sleep(self.seconds_per_epoch)
            on_epoch(report)

        return run(cfg, on_epoch=slow, resume=resume)
