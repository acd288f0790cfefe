"""Checks of where a sweep writes: the ``storage:`` and ``study.storage`` values as the schema
reads them (syntax only, raising ``ValueError`` for pydantic), and before launch, for real: the
results location can be written, an RDB study URL has its driver.
"""

from __future__ import annotations

import re
from pathlib import Path

from pruning_core.base.errors import ConfigError
from sweeps.tune.location import resolve

#: URI schemes results can live under (pyarrow filesystems Ray Tune also writes to)
STORAGE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss", "file")
_BUCKETED = ("s3", "gs", "gcs", "abfs", "abfss")


def check_storage_syntax(storage: str) -> str:
    """``storage:`` is a local directory path or a URI of a supported scheme with a bucket.

    Raises ``ValueError`` (pydantic turns it into the field's message).
    """
    if not storage.strip():
        raise ValueError("empty; give a directory or a URI like s3://bucket/prefix")
    scheme, sep, rest = storage.partition("://")
    if not sep:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:(?![\\/])", storage) and len(scheme) > 1:
            raise ValueError(f"{storage!r} looks like a URI without '//'; use e.g. "
                             "s3://bucket/prefix or a directory path")
        return storage
    scheme = scheme.lower()
    if scheme not in STORAGE_SCHEMES:
        raise ValueError(f"unsupported URI scheme {scheme + '://'!r}; use a directory or one "
                         f"of {', '.join(x + '://' for x in STORAGE_SCHEMES)}")
    bucket = rest.split("?", 1)[0].split("/", 1)[0]
    if scheme in _BUCKETED and not bucket:
        raise ValueError(f"{scheme}:// needs a bucket, e.g. {scheme}://my-bucket/sweeps")
    if "#" in rest:  # pyarrow drops it, so two sweeps told apart by it would share results
        raise ValueError(f"a URI fragment ({'#' + rest.split('#', 1)[1]!r}) is not used by any "
                         "storage; remove it")
    if scheme == "file":
        if not rest.startswith("/"):
            raise ValueError("file:// needs an absolute path, e.g. file:///data/sweeps")
        _check_file_uri(storage, rest)
    # the query string of a remote URI holds pyarrow's filesystem options (endpoint_override,
    # region, scheme, ...): pyarrow refuses a key it does not know when validate writes there
    return storage


def _check_file_uri(storage: str, rest: str) -> None:
    """A ``file://`` URI must name the directory pyarrow (so Ray Tune) reads it as: the path
    after ``file://``, as written (prunetune's own files go there)."""
    if "?" in rest:
        raise ValueError(f"file:// takes no query string ({'?' + rest.split('?', 1)[1]!r} "
                         "would be ignored); remove it")
    import pyarrow.fs as pafs

    try:
        _, path = pafs.FileSystem.from_uri(storage)
    except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ValueError(f"pyarrow cannot read {storage!r} ({first}); give the directory "
                         "path itself, without file://") from None
    if path.rstrip("/") != rest.rstrip("/"):
        raise ValueError(f"pyarrow reads {storage!r} as {path!r} (percent-decoded); give the "
                         "directory path itself, without file://")


#: SQLAlchemy dialects Optuna's RDBStorage is documented and tested with
RDB_DIALECTS = ("sqlite", "postgresql", "mysql")


def check_study_storage(storage: str) -> str:
    """``study.storage`` is a journal file path or an RDB URL (``sqlite:///...``).

    Raises ``ValueError`` (pydantic turns it into the field's message).
    """
    if not storage.strip():
        raise ValueError("empty; give a journal file path or an RDB URL like sqlite:///study.db")
    scheme, sep, rest = storage.partition("://")
    if not sep:
        return storage
    dialect = scheme.split("+", 1)[0].lower()
    if dialect not in RDB_DIALECTS:
        raise ValueError(f"{scheme + '://'!r} is not an Optuna storage; give a local journal "
                         "file path (e.g. results/study.log) or an RDB URL "
                         f"({', '.join(d + '://' for d in RDB_DIALECTS)})")
    if "#" in rest:  # SQLAlchemy would make it part of the database name
        raise ValueError(f"a URL fragment ({'#' + rest.split('#', 1)[1]!r}) is not used by an "
                         "RDB URL; remove it")
    return storage


def check_study_url(url: str) -> None:
    """An RDB ``study.storage`` as SQLAlchemy reads it, without connecting: its driver is
    installed, and every query-string argument is one the driver takes (SQLAlchemy only warns,
    and ignores, one it does not: ``sqlite:///s.db?bogus=1``). ``ConfigError``, one line."""
    import warnings

    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, SAWarning

    scheme = url.partition("://")[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", SAWarning)
            sqlalchemy.create_engine(url).dispose()
    except SAWarning as exc:
        first = str(exc).split(" (Background", 1)[0].splitlines()[0][:300]
        raise ConfigError(f"study.storage: {first}") from None
    except ImportError as exc:
        raise ConfigError(f"study.storage: {scheme}:// needs its database driver ({exc}); "
                          "install it, or give a journal file path") from None
    except (ArgumentError, ValueError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        first = first.replace(url, "the URL")  # it may hold a password
        raise ConfigError(f"study.storage: SQLAlchemy cannot read the URL ({first})") from None



def check_storage(results_dir: str, option: str = "storage") -> None:
    """The results location can be written: a local directory is probed for real; for a URI
    (syntax checked by the schema) an ``endpoint_override`` must answer; credentials and
    buckets are checked by the object store when the sweep writes."""
    where = resolve(results_dir)
    if where.remote:
        _check_endpoint(results_dir)
        _probe_remote(results_dir)
        return
    from sweeps.results.outputs import check_output

    try:
        check_output(option, Path(where.local), directory=True)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace(f"{option} ", f"{option}: ", 1)) from None


def _probe_remote(uri: str) -> None:
    """Write and delete a small object under ``uri`` through pyarrow (what Ray Tune writes
    with), so a missing bucket or missing credentials fail here, before any trial, in one line."""
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        fs.create_dir(path)  # what Ray Tune does first with the storage path
        probe = f"{path.rstrip('/')}/.prunetune-write-probe"
        with fs.open_output_stream(probe) as out:
            out.write(b"ok")
        fs.delete_file(probe)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowException subclasses are among these
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        if "query parameter" in first:  # pyarrow's "Unexpected query parameter in S3 URI"
            raise ConfigError(f"storage: {first}; the query string holds pyarrow's filesystem "
                              "options only (docs/sweeps.md): remove it") from None
        raise ConfigError(f"storage: cannot write to {uri.split('?', 1)[0]} ({first}); check "
                          "that the bucket exists and the credentials may write to it") from None


def _check_endpoint(uri: str, timeout: float = 5.0) -> None:
    """An S3-compatible ``?endpoint_override=host:port`` must answer a TCP connect (an
    unreachable endpoint otherwise fails the sweep only after Ray has started)."""
    import socket
    from urllib.parse import parse_qs, urlsplit

    endpoint = (parse_qs(urlsplit(uri).query).get("endpoint_override") or [""])[0]
    if not endpoint:
        return
    scheme, sep, rest = endpoint.partition("://")
    rest = rest if sep else endpoint
    host, _, port = rest.split("/", 1)[0].rpartition(":")
    if not host or not port.isdigit():
        host, port = rest.split("/", 1)[0], "443" if scheme == "https" else "80"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        why = (exc.strerror or str(exc) or "timed out").lower()
        raise ConfigError(f"storage: endpoint_override {endpoint} does not answer ({why}); "
                          "start the object store or fix the endpoint") from None

