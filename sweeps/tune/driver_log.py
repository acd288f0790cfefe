"""The sweep driver's log file, and quiet messages about trials cut short on purpose.

While a sweep runs, every record the driver logs at WARNING or above (prunetune's, Ray's,
Optuna's) also goes to a log file: ``<results>/driver.log`` (``<name>.driver.log`` in the
current directory for results on object storage). When the sweep is stopped on purpose (Ctrl-C,
its time budget), the messages Ray and prunetune's W&B sink print about the runs that stop cut
short (Ray's ``Tuner.restore(...)`` advice, "Failed to fetch metrics ... FileNotFoundError" of
trials that never reported, W&B runs that never started) go to that file only; the CLI says
what was saved and how to resume in one line of its own. Anything else, a real failure
included, still reaches the terminal in full.

Only public logging configuration is used: a ``logging.FileHandler`` on the root logger and on
``ray`` (whose records do not propagate to the root), and a ``logging.Filter`` on the console
handlers found there.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sweeps.tune.location import resolve

#: the driver log's file name in the results directory
DRIVER_LOG = "driver.log"
#: ``extra={CUT_SHORT: True}`` marks prunetune's own messages about trials cut short
CUT_SHORT = "prunetune_cut_short"
#: Ray's messages about an experiment stopped on purpose: (logger name prefix, message start)
RAY_CUT_SHORT: tuple[tuple[str, str], ...] = (
    ("ray.tune", "Stop signal received"),  # Ctrl-C: "ending Ray Tune run ..."
    ("ray.tune", "Experiment has been interrupted"),  # "... Resume with: Tuner.restore(...)"
    ("ray.tune", "Failed to fetch metrics"),  # trials stopped before their first report
)
#: the loggers whose handlers print to the terminal (``ray`` does not propagate to the root)
CONSOLE_LOGGERS = ("", "ray", "optuna")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def driver_log_path(results_root: str, name: str) -> Path:
    """Where the driver log of a sweep with these results goes: next to local results; for
    results in object storage, the system's temporary directory (a sweep with remote results
    writes nothing in the directory it runs from)."""
    where = resolve(results_root)
    if where.remote:
        return Path(tempfile.gettempdir()) / f"prunetune-{name}.driver.log"
    return Path(where.local) / DRIVER_LOG


def is_cut_short(record: logging.LogRecord) -> bool:
    """A message about trials cut short by a stop (Ray's, or one prunetune marked)."""
    if getattr(record, CUT_SHORT, False):
        return True
    message = record.getMessage()
    return any((record.name == prefix or record.name.startswith(prefix + "."))
               and message.startswith(start) for prefix, start in RAY_CUT_SHORT)


class HideCutShort(logging.Filter):
    """Drops messages about trials cut short while ``stopped()`` says the sweep was stopped on
    purpose; prunetune's own marked messages always (they only exist after such a stop)."""

    def __init__(self, stopped: Callable[[], bool]) -> None:
        super().__init__()
        self.stopped = stopped

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, CUT_SHORT, False):
            return False
        return not (is_cut_short(record) and self.stopped())


@contextmanager
def driver_log(path: Path, stopped: Callable[[], bool]) -> Iterator[Path]:
    """Log the driver to ``path`` and keep messages about trials cut short off the terminal
    while ``stopped()``, for the duration of the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    file_handler.setLevel(logging.WARNING)
    file_handler.setFormatter(logging.Formatter(FORMAT))
    hide = HideCutShort(stopped)
    loggers = [logging.getLogger(n) for n in CONSOLE_LOGGERS]
    consoles = {h for lg in loggers for h in lg.handlers
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)}
    seen: list[logging.Logger] = []
    for lg in loggers:
        if lg is logging.getLogger() or not lg.propagate:
            lg.addHandler(file_handler)  # once per record: where propagation stops
            seen.append(lg)
    for h in consoles:
        h.addFilter(hide)
    try:
        yield path
    finally:
        for h in consoles:
            h.removeFilter(hide)
        for lg in seen:
            lg.removeHandler(file_handler)
        file_handler.close()
