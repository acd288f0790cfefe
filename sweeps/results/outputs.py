"""The one output-path check, run by every command *before* its work starts.

A path given to ``--json``, ``--masks``, ``--plot``, ``--out`` or ``--png-dir`` that cannot be
written used to fail after a trial had trained or a report had been built. ``check_outputs``
tries each one first and raises a one-line ``ConfigError`` naming the option.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pruning_core.errors import ConfigError


def _first_existing(path: Path) -> Path:
    for parent in (path, *path.parents):
        if os.path.lexists(parent):
            return parent
    return Path(".")


def _probe_dir(directory: Path) -> str | None:
    """Why files cannot be created in ``directory`` (``None``: they can). Tries for real:
    permission bits do not tell the truth to root, nor on read-only mounts."""
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".prunetune-probe-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


#: the longest file or directory name most file systems take (NAME_MAX), in bytes
NAME_MAX = 255


def _short(text: str, keep: int = 40) -> str:
    return text if len(text) <= 2 * keep else f"{text[:keep]}...{text[-keep // 2:]}"


def check_name_lengths(option: str, path: str | Path) -> None:
    """Every component of ``path`` fits in ``NAME_MAX`` bytes (a longer one fails only when
    the file is created, after the work)."""
    for part in Path(path).parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            raise ConfigError(f"{option} {_short(str(path))}: the name {_short(part, 16)!r} is "
                              f"{size} bytes, more than the {NAME_MAX} a file name may have; "
                              "use a shorter name")


def check_output(option: str, path: Path | None, directory: bool = False) -> None:
    """``path`` can be written as a file (or, with ``directory``, used as a directory).

    Missing parent directories are fine when they can be created under the first existing
    ancestor (the commands create them); nothing is created here.
    """
    if path is None:
        return
    if str(path) in ("", "-"):
        raise ConfigError(f"{option}: give a file path")
    p = Path(path).expanduser()
    check_name_lengths(option, p)
    anchor = _first_existing(p.absolute())
    if anchor == p.absolute():
        if directory:
            if not p.is_dir():
                raise ConfigError(f"{option} {path}: exists and is not a directory; "
                                  "give a directory")
            why = _probe_dir(p)
        else:
            if p.is_dir():
                raise ConfigError(f"{option} {path}: is a directory; give a file name")
            if not p.is_file():
                raise ConfigError(f"{option} {path}: exists and is not a regular file")
            try:
                with p.open("ab"):  # append: opens for writing, changes nothing
                    why = None
            except OSError as exc:
                why = exc.strerror or str(exc)
    elif not anchor.is_dir():
        raise ConfigError(f"{option} {path}: {anchor} is not a directory")
    else:
        why = _probe_dir(anchor)
    if why is not None:
        raise ConfigError(f"{option} {path}: cannot write there ({why.lower()}); "
                          "choose a writable path")


def check_outputs(files: dict[str, Path | None] | None = None,
                  directories: dict[str, Path | None] | None = None) -> None:
    """``check_output`` for each ``{option: path}`` (``None`` paths are skipped)."""
    for option, path in (files or {}).items():
        check_output(option, path)
    for option, path in (directories or {}).items():
        check_output(option, path, directory=True)
