"""Live terminal progress for a sweep: a ``tune.Callback`` feeding a rich table.

Counts trials pending / running / done / failed and shows the best value of each objective so
far; the CLI owns the ``rich.live.Live`` that displays ``renderable()``. It also notes whether
the user stopped the sweep (Ctrl-C), which Tune does not tell apart from a spent
``time_budget_s``: both end ``fit()`` normally with the running trials cut short.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from ray import tune
from rich.table import Table

from sweeps.tune.trainable import FINAL_FLAG, RESULT_STATUS

if TYPE_CHECKING:
    from ray.tune.experiment import Trial


class Progress(tune.Callback):
    """Tracks trial states; thread-safe snapshot for the display."""

    def __init__(self, name: str, num_samples: int, metrics: list[str], modes: list[str]) -> None:
        self.name = name
        self.num_samples = num_samples
        self.metrics = metrics
        self.modes = modes
        self.started = time.time()
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.best: dict[str, tuple[float, str]] = {}
        #: trials Tune completed (ended on their own or stopped by a scheduler)
        self.completed: set[str] = set()
        #: the user stopped the sweep (SIGINT, Ctrl-C) while it ran
        self.user_stopped = False
        self._sigint: Any = None  # the handler this callback wraps, while it wraps one

    def __getstate__(self) -> dict[str, Any]:  # pickled into tuner.pkl: drop the lock
        state = self.__dict__.copy()
        state.pop("_lock", None)
        state.pop("_sigint", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("completed", set())  # pickled by an older prunetune
        self.__dict__.setdefault("user_stopped", False)
        self._sigint = None
        self._lock = threading.Lock()

    def setup(self, **info: Any) -> None:
        """At the start of ``fit()``, after Tune installed its SIGINT handler (which stops the
        run gracefully): wrap that handler to note a Ctrl-C, then let it do what it does."""
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        previous = signal.getsignal(signal.SIGINT)

        def on_sigint(signum: int, frame: Any) -> None:
            self.user_stopped = True
            self._sigint = None  # Tune's handler puts back the one from before fit()
            if callable(previous):
                previous(signum, frame)
            elif previous != signal.SIG_IGN:
                signal.default_int_handler(signum, frame)

        signal.signal(signal.SIGINT, on_sigint)
        self._sigint = (on_sigint, previous)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        """Put back the handler wrapped by :meth:`setup` when no Ctrl-C came."""
        wrapped, self._sigint = self._sigint, None
        if wrapped is None or threading.current_thread() is not threading.main_thread():
            return
        mine, previous = wrapped
        if signal.getsignal(signal.SIGINT) is mine:
            signal.signal(signal.SIGINT, previous)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial,
                          **info: Any) -> None:
        self.completed.add(trial.trial_id)

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        counts: dict[str, int] = {}
        best: dict[str, tuple[float, str]] = {}
        for t in trials:
            result = t.last_result or {}
            if t.status == "TERMINATED":
                key = str(result.get(RESULT_STATUS, "ok")) if result.get(FINAL_FLAG) \
                    else "stopped_early" if t.trial_id in self.completed else "interrupted"
            else:
                key = t.status.lower()
            counts[key] = counts.get(key, 0) + 1
            if t.status == "TERMINATED" and result.get(FINAL_FLAG):
                for m, mode in zip(self.metrics, self.modes, strict=True):
                    v = result.get(m)
                    if not isinstance(v, int | float) or not math.isfinite(v):
                        continue
                    cur = best.get(m)
                    if cur is None or (v > cur[0] if mode == "max" else v < cur[0]):
                        best[m] = (float(v), t.trial_id)
        with self._lock:
            self.counts, self.best = counts, best

    def renderable(self) -> Table:
        with self._lock:
            counts, best = dict(self.counts), dict(self.best)
        finished = sum(counts.get(k, 0) for k in ("ok", "diverged", "stopped_early", "error"))
        table = Table(title=f"sweep {self.name}: {finished}/{self.num_samples} finished, "
                            f"{time.time() - self.started:.0f} s", title_justify="left")
        for col in ("running", "pending", "ok", "stopped early", "diverged", "failed"):
            table.add_column(col, justify="right")
        table.add_row(*(str(counts.get(k, 0)) for k in
                        ("running", "pending", "ok", "stopped_early", "diverged", "error")))
        if best:
            table.caption = "best so far: " + ", ".join(
                f"{m} {'↑' if mode == 'max' else '↓'} {best[m][0]:.4g} ({best[m][1]})"
                for m, mode in zip(self.metrics, self.modes, strict=True) if m in best)
        return table
