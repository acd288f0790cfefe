"""Real faults injected around ``experiment.run`` (imported by Ray workers, so a module)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pruning_core.trials.experiment import run


class FaultyRun:
    """``train.lr`` picks the fault: 0.12 raises once at epoch 2 (then the retry must continue
    from the epoch-1 checkpoint), 0.11 always raises; anything else runs normally."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir

    def __call__(self, cfg: Any, on_epoch: Any = None, resume: Any = None) -> Any:
        lr = cfg.train.lr
        log = Path(self.log_dir, f"lr{lr:g}.jsonl")
        with log.open("a") as f:
            f.write(json.dumps({"start": True, "resume_done": resume and resume["done"]}) + "\n")
        if lr == 0.11:
            raise ValueError("injected fault: always fails")
        marker = Path(self.log_dir, "raised_once")

        def wrapped(report: Any) -> None:
            with log.open("a") as f:
                f.write(json.dumps({"epoch": report.epoch}) + "\n")
            if lr == 0.12 and report.epoch == 2 and not marker.exists():
                marker.touch()
                raise RuntimeError("injected fault: once")
            on_epoch(report)

        return run(cfg, on_epoch=wrapped, resume=resume)
