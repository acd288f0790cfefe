"""Live terminal progress for a sweep: a ``tune.Callback`` feeding a rich table.

Counts trials pending / running / done / failed and shows the best value of each objective so
far; the CLI owns the ``rich.live.Live`` that displays ``renderable()``. It also notes whether
the user stopped the sweep (Ctrl-C), which Tune does not tell apart from a spent
``time_budget_s``: both end ``fit()`` normally with the running trials cut short.

Where the output is not a terminal (a log file, a pipe, CI) the live table never draws: given
an ``emit`` sink, the callback then hands it plain lines instead, one per finished trial
(:func:`trial_line`) and a status line every ``interval`` seconds (:func:`status_line`), each
starting ``[prunetune] trial `` / ``[prunetune] status `` so that they can be grepped.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ray import tune
from rich.table import Table

from pruning_core.base.errors import ConfigError
from sweeps.tune.pack import STOPPED_FLAG, member_id, member_reports, members
from sweeps.tune.trainable import FINAL_FLAG, RESULT_STATUS

if TYPE_CHECKING:
    from ray.tune.experiment import Trial


#: seconds between status lines where the output is not a terminal (``--log-interval``)
LOG_INTERVAL_S = 30.0
#: the environment variable that sets it when ``--log-interval`` is not given
LOG_INTERVAL_ENV = "PRUNETUNE_LOG_INTERVAL"
#: what every plain progress line starts with
LINE_PREFIX = "[prunetune]"
#: states of trials that have not ended (every other status is a trial done)
NOT_DONE = ("running", "pending", "paused", "interrupted")


def log_interval(option: float | None, environ: Mapping[str, str] = os.environ) -> float:
    """Seconds between status lines: ``--log-interval``, else ``PRUNETUNE_LOG_INTERVAL``, else
    30; 0 prints none (the per-trial lines stay). ``ConfigError`` naming the source otherwise."""
    source, raw = ("--log-interval", option) if option is not None else \
        (LOG_INTERVAL_ENV, environ.get(LOG_INTERVAL_ENV))
    if raw is None or raw == "":
        return LOG_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{source}: {raw!r} is not a number of seconds; give e.g. 30 (0: no "
                          "status lines)") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{source}: {raw!r} is not a number of seconds >= 0; give e.g. 30 (0: "
                          "no status lines)")
    return value


def _value(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return "-" if v is None else str(v)
    return f"{v:.4g}" if math.isfinite(v) else "nan"


def trial_line(trial_id: str, status: str, values: Mapping[str, Any], metrics: Sequence[str],
               elapsed_s: float | None, error: str | None = None) -> str:
    """``[prunetune] trial 82ed5ce5 ok test_accuracy=0.9306 sparsity=0.7861 elapsed=12.3s``:
    one finished trial, its objectives' values (``-`` if it has none) and its run time."""
    parts = [f"{LINE_PREFIX} trial {trial_id} {status}"]
    parts += [f"{m}={_value(values.get(m))}" for m in metrics]
    parts.append(f"elapsed={elapsed_s:.1f}s" if elapsed_s is not None else "elapsed=-")
    if error:
        parts.append("error=" + " ".join(error.split())[:200])
    return " ".join(parts)


def status_line(counts: Mapping[str, int], best: Mapping[str, tuple[float, str]],
                metrics: Sequence[str], modes: Sequence[str], num_samples: int,
                elapsed_s: float) -> str:
    """``[prunetune] status 3/16 done (2 ok, 1 stopped_early), 2 running, 11 pending, 45s;
    best test_accuracy=0.9306 (82ed5ce5) sparsity=0.7861 (1f0e2a3b)``. Pending: the trials
    of the budget neither done nor running (waiting for a CPU, or not sampled yet)."""
    done = sum(n for k, n in counts.items() if k not in NOT_DONE)
    running = counts.get("running", 0)
    pending = max(0, num_samples - done - running - counts.get("interrupted", 0))
    split = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()) if k not in NOT_DONE and n)
    line = (f"{LINE_PREFIX} status {done}/{num_samples} done" + (f" ({split})" if split else "")
            + f", {running} running, {pending} pending, {elapsed_s:.0f}s")
    shown = [f"{m}={best[m][0]:.4g} ({best[m][1]})" for m, _ in zip(metrics, modes, strict=True)
             if m in best]
    return line + ("; best " + " ".join(shown) if shown else "; best -")


class Ticker:
    """Due every ``interval`` seconds of ``clock`` (never when ``interval`` is 0)."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.next = clock() + interval

    def due(self) -> bool:
        if self.interval <= 0:
            return False
        now = self.clock()
        if now < self.next:
            return False
        self.next = now + self.interval
        return True


class Progress(tune.Callback):
    """Tracks trial states; thread-safe snapshot for the display.

    ``emit``: where plain progress lines go (the CLI passes one where its output is not a
    terminal); ``interval``: seconds between status lines (0: none)."""

    def __init__(self, name: str, num_samples: int, metrics: list[str], modes: list[str],
                 emit: Callable[[str], None] | None = None,
                 interval: float = LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.num_samples = num_samples
        self.metrics = metrics
        self.modes = modes
        self.started = time.time()
        self.emit = emit
        self.clock = clock
        self._mono_start = clock()
        self._ticker = Ticker(interval, clock)
        self._starts: dict[str, float] = {}  # trial id -> clock() when it started
        #: the experiment ended with trials cut short (Ctrl-C or the time budget)
        self.cut_short = False
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.best: dict[str, tuple[float, str]] = {}
        #: trials Tune completed (ended on their own or stopped by a scheduler)
        self.completed: set[str] = set()
        #: packs: Ray trial id -> {member id: (status, its last report)} of members that ended
        self.member_ends: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {}
        #: the user stopped the sweep (SIGINT, Ctrl-C) while it ran
        self.user_stopped = False
        self._sigint: Any = None  # the handler this callback wraps, while it wraps one

    def __getstate__(self) -> dict[str, Any]:  # pickled into tuner.pkl: drop the lock
        state = self.__dict__.copy()
        for unpicklable in ("_lock", "_sigint", "emit", "clock", "_ticker", "_starts"):
            state.pop(unpicklable, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("completed", set())  # pickled by an older prunetune
        self.__dict__.setdefault("user_stopped", False)
        self.__dict__.setdefault("cut_short", False)
        self.__dict__.setdefault("member_ends", {})
        self._sigint = None
        self._lock = threading.Lock()
        self.emit, self.clock = None, time.monotonic
        self._mono_start = self.clock()
        self._ticker = Ticker(0)
        self._starts = {}

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

    @property
    def stopped_on_purpose(self) -> bool:
        """The user stopped the sweep, or it ended with trials cut short (its time budget)."""
        return self.user_stopped or self.cut_short

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        """Put back the handler wrapped by :meth:`setup` when no Ctrl-C came."""
        self.cut_short = self.cut_short or any(
            t.status in ("PENDING", "RUNNING", "PAUSED") or (
                t.status == "TERMINATED" and not (t.last_result or {}).get(FINAL_FLAG)
                and t.trial_id not in self.completed)
            for t in trials)
        wrapped, self._sigint = self._sigint, None
        if wrapped is None or threading.current_thread() is not threading.main_thread():
            return
        mine, previous = wrapped
        if signal.getsignal(signal.SIGINT) is mine:
            signal.signal(signal.SIGINT, previous)

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial,
                       **info: Any) -> None:
        self._starts.setdefault(trial.trial_id, self.clock())

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial,
                        result: dict[str, Any], **info: Any) -> None:
        """A pack's members that ended in this report: counted, and a line each."""
        if members(trial.config) is None:
            return
        ends = self.member_ends.setdefault(trial.trial_id, {})
        for mid, _, report in member_reports(trial.trial_id, result):
            if report.get(FINAL_FLAG):
                status = str(report.get(RESULT_STATUS, "ok"))
            elif report.get(STOPPED_FLAG):
                status = "stopped_early"
            else:
                continue
            if mid in ends:
                continue  # a resumed pack sends its finished members again
            ends[mid] = (status, report)
            if self.emit is not None:
                start = self._starts.get(trial.trial_id)
                self.emit(trial_line(mid, status, report, self.metrics,
                                     None if start is None else self.clock() - start))

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial,
                          **info: Any) -> None:
        self.completed.add(trial.trial_id)
        if members(trial.config) is not None:  # its members had their lines
            self._starts.pop(trial.trial_id, None)
            return
        result = trial.last_result or {}
        status = str(result.get(RESULT_STATUS, "ok")) if result.get(FINAL_FLAG) \
            else "stopped_early"
        self._trial_line(trial, status)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial,
                       **info: Any) -> None:
        if self.emit is None:
            return
        from sweeps.tune.recorder import _error_message

        configs = members(trial.config)
        if configs is not None:  # the members that had not ended
            ends = self.member_ends.get(trial.trial_id, {})
            for i in range(len(configs)):
                mid = member_id(trial.trial_id, i)
                if mid not in ends:
                    self.emit(trial_line(mid, "error", {}, self.metrics, None,
                                         _error_message(trial)))
            return
        self._trial_line(trial, "error", _error_message(trial))

    def _trial_line(self, trial: Trial, status: str, error: str | None = None) -> None:
        if self.emit is None:
            return
        start = self._starts.pop(trial.trial_id, None)  # wall time since it started here
        self.emit(trial_line(trial.trial_id, status, trial.last_result or {}, self.metrics,
                             None if start is None else self.clock() - start, error))

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        counts: dict[str, int] = {}
        best: dict[str, tuple[float, str]] = {}
        for t in trials:
            for key, result, tid in self._entries(t):
                counts[key] = counts.get(key, 0) + 1
                if result is not None:
                    self._better(best, result, tid)
        with self._lock:
            self.counts, self.best = counts, best
        if self.emit is not None and self._ticker.due():
            self.emit(status_line(counts, best, self.metrics, self.modes, self.num_samples,
                                  self.clock() - self._mono_start))

    def _entries(self, t: Trial) -> list[tuple[str, dict[str, Any] | None, str]]:
        """What a Ray trial counts for: (status, its final report or None, id), once for an
        unpacked trial, once per member for a pack."""
        ms = members(t.config)
        if ms is None:
            result = t.last_result or {}
            if t.status != "TERMINATED":
                return [(t.status.lower(), None, t.trial_id)]
            if result.get(FINAL_FLAG):
                return [(str(result.get(RESULT_STATUS, "ok")), result, t.trial_id)]
            done = "stopped_early" if t.trial_id in self.completed else "interrupted"
            return [(done, None, t.trial_id)]
        ends = self.member_ends.get(t.trial_id, {})
        rest = t.status.lower() if t.status != "TERMINATED" else \
            "stopped_early" if t.trial_id in self.completed else "interrupted"
        out: list[tuple[str, dict[str, Any] | None, str]] = []
        for i in range(len(ms)):
            mid = member_id(t.trial_id, i)
            status, report = ends.get(mid, (rest, None))
            out.append((status, report if report and report.get(FINAL_FLAG) else None, mid))
        return out

    def _better(self, best: dict[str, tuple[float, str]], result: Mapping[str, Any],
                tid: str) -> None:
        for m, mode in zip(self.metrics, self.modes, strict=True):
            v = result.get(m)
            if not isinstance(v, int | float) or not math.isfinite(v):
                continue
            cur = best.get(m)
            if cur is None or (v > cur[0] if mode == "max" else v < cur[0]):
                best[m] = (float(v), tid)

    def renderable(self) -> Table:
        with self._lock:
            counts, best = dict(self.counts), dict(self.best)
        finished = sum(n for k, n in counts.items() if k not in NOT_DONE)  # doomed too
        table = Table(title=f"sweep {self.name}: {finished}/{self.num_samples} finished, "
                            f"{time.time() - self.started:.0f} s", title_justify="left")
        for col in ("running", "pending", "ok", "stopped early", "diverged", "doomed", "failed"):
            table.add_column(col, justify="right")
        table.add_row(*(str(counts.get(k, 0)) for k in ("running", "pending", "ok", "stopped_early",
                                                        "diverged", "doomed", "error")))
        if best:
            table.caption = "best so far: " + ", ".join(
                f"{m} {'↑' if mode == 'max' else '↓'} {best[m][0]:.4g} ({best[m][1]})"
                for m, mode in zip(self.metrics, self.modes, strict=True) if m in best)
        return table
