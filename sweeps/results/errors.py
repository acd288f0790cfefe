"""What goes wrong reading results: :class:`ResultsError` and the one-line messages every
results reader gives (an unknown column with near matches, results with nothing readable)."""

from __future__ import annotations

from collections.abc import Sequence

from pruning_core.base.suggest import did_you_mean


class ResultsError(ValueError):
    """Bad input to a results query; the message names what is wrong and how to fix it."""


def unknown_column_msg(name: str, columns: Sequence[str]) -> str:
    hint = did_you_mean(name, columns) or \
        "see the columns with: prunetune query RESULTS \"DESCRIBE trials\""
    return f"unknown column {name!r}; {hint}"


def unreadable_msg(sources: Sequence[str], bad: Sequence[tuple[str, str]]) -> str:
    """The one error line for results whose every file is unreadable: the results, how many
    files, the first file and why."""
    n = len(bad)
    files = "its one results file is" if n == 1 else f"all {n} results files are"
    path, why = bad[0]
    return (f"results {', '.join(map(str, sources))}: nothing readable: {files} unreadable "
            f"(damaged or not Parquet; {'' if n == 1 else 'first: '}{path}: {why}); point at "
            "results written by prunetune sweep")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
