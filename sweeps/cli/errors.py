"""The one way every ``prunetune`` command reports bad input, and the console it prints with."""

from __future__ import annotations

import os
import re
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console
from typer.core import TyperGroup

try:  # recent typer (0.29 here) vendors click as typer._click; older typer used click
    from typer._click import exceptions as _click_exc
except ImportError:  # pragma: no cover - older typer
    import click.exceptions as _click_exc  # type: ignore[no-redef]

UsageError = _click_exc.UsageError
#: ``no_args_is_help``: the help text, shown as it is (click >= 8.2; absent before)
_NoArgsIsHelp: tuple[type[BaseException], ...] = tuple(
    c for c in (getattr(_click_exc, "NoArgsIsHelpError", None),) if c is not None)

#: pydantic's error types (recent typer converts option values with pydantic) -> what the
#: value is not
_NOT_A = {"int_parsing": "a valid integer", "int_type": "a valid integer",
          "int_from_float": "a valid integer", "float_parsing": "a valid number",
          "float_type": "a valid number", "bool_parsing": "a valid boolean",
          "bool_type": "a valid boolean"}
#: the longest quoted value an error line shows
_MAX_VALUE = 80


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped (``\\n``): a value the
    user typed never splits an error line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


#: the width of output that is not a terminal (a pipe, a CI log) and sets no ``COLUMNS``:
#: rich would cut every table at 80 columns there
PIPE_WIDTH = 240


def output_console(stderr: bool = False) -> Console:
    """A rich console for command output. On a terminal: its width, as rich finds it. Not a
    terminal: ``COLUMNS`` when set, else :data:`PIPE_WIDTH` (tables that still do not fit fold
    their cells instead of cutting them with "…")."""
    stream = sys.stderr if stderr else sys.stdout
    width = None
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        tty = False
    if not tty and not os.environ.get("COLUMNS", "").strip().isdigit():
        width = PIPE_WIDTH
    return Console(width=width, stderr=stderr)


def fail(msg: str, code: int = 2) -> NoReturn:
    """One plain line on stderr (no markup: messages quote brackets like ``[0, 1)``), exit 2."""
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def warn(msg: str) -> None:
    """One plain ``warning:`` line on stderr; the command goes on."""
    typer.echo(f"warning: {msg}", err=True)


def _quoted(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else repr(str(value))
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 4] + "...'"


def _field(e: Exception) -> str:
    """The option (its long name), argument or command a usage error is about."""
    param = getattr(e, "param", None)
    if param is not None:
        if getattr(param, "param_type_name", "") == "argument" or not param.opts:
            return str(param.name)
        longs = [o for o in param.opts if o.startswith("--")]
        return max(longs or param.opts, key=len)
    option = getattr(e, "option_name", None)
    if option:
        return str(option)
    if e.__class__ is UsageError and str(e).startswith("No such command"):
        return "command"
    ctx = getattr(e, "ctx", None)
    return ctx.command_path if ctx is not None else "prunetune"


def _value_error(e: Exception) -> str | None:
    """``'abc' is not a valid integer`` for a value typer could not convert (typer >= 0.2x
    converts with pydantic and keeps its error as the cause); None for other errors."""
    if not isinstance(e, _click_exc.BadParameter) or isinstance(e, _click_exc.MissingParameter):
        return None
    errors = getattr(e.__cause__, "errors", None)
    first: Any = None
    if callable(errors):
        try:
            first = errors()[0]
        except Exception:  # a cause of another shape: use the message
            first = None
    if isinstance(first, dict) and "input" in first:
        not_a = _NOT_A.get(str(first.get("type")))
        if not_a:
            return f"{_quoted(first['input'])} is not {not_a}"
        msg = str(first.get("msg", e.message))
        return f"{_quoted(first['input'])}: {_lower(msg)}"
    return _lower(e.message)


def _lower(msg: str) -> str:
    msg = msg.strip().rstrip(".")
    return msg[:1].lower() + msg[1:]


def _what(e: Exception) -> str:
    """What is wrong and the fix, without click's ``Invalid value for ...`` prefix."""
    value = _value_error(e)
    if value is not None:
        return value
    if isinstance(e, _click_exc.MissingParameter):
        what = f"missing {e.param_type or getattr(e.param, 'param_type_name', None) or 'value'}"
    elif isinstance(e, _click_exc.NoSuchOption):
        what = "no such option"
        if e.possibilities:
            what += f" (did you mean {', '.join(sorted(e.possibilities))}?)"
    elif isinstance(e, _click_exc.BadOptionUsage) and re.match(
            r"Option '[^']*' requires (an argument|\d+ arguments)", e.message):
        what = "needs a value"
    else:
        what = _lower(re.sub(r"\.\s+Did you mean (.*)\?$", r" (did you mean \1?)",
                             e.format_message()))
    ctx = getattr(e, "ctx", None)
    return what + (f"; see '{ctx.command_path} --help'" if ctx is not None else "")


def usage_error_line(e: Exception) -> str:
    """A click usage error (bad value, missing argument, unknown option or command) as the one
    line every refusal is: ``<field>: <what and the fix>`` (without ``error:``)."""
    return one_line(f"{_field(e)}: {_what(e)}")


class OneLineUsageGroup(TyperGroup):
    """The ``prunetune`` group: click's usage errors, raised while parsing any command line of
    the app (the group's own, a sub-group's or a command's) or by a command body, are printed
    as one ``error: <field>: ...`` line, exit 2 — not click's ``Usage: ... / Try ... / Error``
    box. ``--help`` and the help shown for a bare group (``no_args_is_help``) are unchanged.

    ``make_context`` covers the group's own options; ``invoke`` covers everything below it
    (sub-groups and commands are parsed and run inside it). Both the console script and
    ``typer.testing.CliRunner`` go through these two methods."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except UsageError as e:
            _refuse(e)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as e:
            _refuse(e)


def _refuse(e: Exception) -> NoReturn:
    if isinstance(e, _NoArgsIsHelp):
        raise e
    fail(usage_error_line(e), getattr(e, "exit_code", 2) or 2)
