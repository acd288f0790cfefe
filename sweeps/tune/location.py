"""Where a sweep's results live: the one resolver of a results location.

A location is a local directory path, a ``file://`` URI (the same local directory, as pyarrow and
Ray Tune read it) or a URI of a remote filesystem (``s3://``, ``gs://``, ... : pyarrow's
filesystems, which Ray Tune writes to). Every module that asks "is this remote?" or "which local
directory is this?" asks :func:`resolve`, as Optuna's ``get_storage`` is its one resolver of a
storage argument. The scheme is read case-insensitively (``FILE:///x`` is the local ``/x``), as
pyarrow reads it. The schema's check of a ``storage:`` value (``sweeps/tune/storage_checks.py``)
says which schemes a sweep accepts; this module only tells them apart.

It sits in ``sweeps/tune`` (not ``sweeps/results``) because the trainable asks it on Ray's
workers, and the driver's ``sweeps/results`` does not reach them: ``code_env.EXCLUDES``'s
``results/`` also matches ``sweeps/results`` inside the shipped ``py_modules``. It imports
nothing, so the read-side commands may use it without Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: the scheme of a local directory given as a URI
FILE_SCHEME = "file"


@dataclass(frozen=True)
class Location:
    """A results location, resolved: ``scheme`` is ``""`` for a plain path, else lower case."""

    raw: str
    scheme: str

    @property
    def remote(self) -> bool:
        """On a remote filesystem (not this machine's disk)."""
        return self.scheme not in ("", FILE_SCHEME)

    @property
    def local(self) -> str:
        """The local directory path (``file://`` removed); ``ValueError`` for a remote one."""
        if self.remote:
            raise ValueError(f"{self.raw} is not on the local disk")
        return self.raw[len(FILE_SCHEME) + 3:] if self.scheme else self.raw


def resolve(location: str | Path) -> Location:
    """``location`` (a path or a URI) -> :class:`Location`."""
    raw = str(location)
    scheme, sep, _ = raw.partition("://")
    return Location(raw, scheme.lower() if sep else "")


def is_remote(location: str | Path) -> bool:
    """The location is on a remote filesystem (``s3://``, ``gs://``, ...; not ``file://``)."""
    return resolve(location).remote


def is_uri(location: str | Path) -> bool:
    """The location is written as a URI (``scheme://``), ``file://`` included."""
    return bool(resolve(location).scheme)


def local_path(location: str | Path) -> str:
    """The local directory of a path or ``file://`` URI (``ValueError`` for a remote one)."""
    return resolve(location).local
