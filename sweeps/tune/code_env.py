"""What code Ray's workers run: the user's working directory and the driver's own prunetune.

A sweep's trials import the user's factories (``model.name: "my_pkg.nets:build"``) and
prunetune itself on every worker process, on every node. Both travel in Ray's ``runtime_env``
(a public Ray API):

- ``working_dir``: the user's directory (``prunetune sweep --working-dir``, default the current
  directory), zipped into the cluster's object store and put first on every worker's path; the
  usual bulky or private folders are left out (``EXCLUDES``).
- ``py_modules``: the ``pruning_core`` and ``sweeps`` packages the *driver* imported, so a sweep
  started from another checkout never mixes two prunetune versions (the working directory's own
  copies, if it is a prunetune checkout, are excluded).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
from pathlib import Path
from typing import Any

from pruning_core.base.errors import ConfigError

log = logging.getLogger(__name__)

#: never uploaded from the working directory (gitignore syntax, as Ray reads ``excludes``).
#: Checkpoints are *not* excluded: a relative ``model.weights`` must reach every worker (Ray
#: caps the package at a few hundred MB: keep big checkpoints on shared storage instead).
EXCLUDES = [".git/", ".venv/", "venv/", "results/", "wandb/", "__pycache__/", "*.pyc",
            ".pytest_cache/", ".ruff_cache/", "*.egg-info/", ".devbundle/", "build/", "dist/",
            "*.parquet"]


def _packages() -> list[Path]:
    import pruning_core
    import sweeps

    return [Path(m.__file__).resolve().parent for m in (pruning_core, sweeps)]


def trust_env() -> dict[str, str]:
    """The user's import allowances (``pruning_core.base.code_trust``) for every worker: the
    packages they allowed and their code roots, from the driver's environment (never from a
    config). On a worker, the shipped working directory is its current directory, a root."""
    from pruning_core.base.code_trust import ALLOW_ENV, ROOTS_ENV

    return {k: os.environ[k] for k in (ALLOW_ENV, ROOTS_ENV) if os.environ.get(k)}


def runtime_env(working_dir: str | Path | None) -> dict[str, Any]:
    """The ``runtime_env`` for ``ray.init``: ``working_dir`` (if given) plus the driver's
    prunetune packages."""
    packages = _packages()
    # trials run in the working directory, not in Tune's per-trial directory, so relative paths
    # of a config (model.weights, data.root) mean the same on every worker as on the driver
    # (RAY_CHDIR_TO_TRIAL_DIR is Ray Tune's documented switch)
    env: dict[str, Any] = {"py_modules": [str(p) for p in packages],
                           "env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0", **trust_env()}}
    if working_dir is not None:
        wd = Path(working_dir).resolve()
        excludes = list(EXCLUDES)
        for pkg in packages:  # the working dir's own copy would shadow the driver's
            if (wd / pkg.name).is_dir():
                excludes.append(f"/{pkg.name}/")
        excludes += special_files(wd, excludes)
        env.update(working_dir=str(wd), excludes=excludes)
        # EXCLUDES already holds Ray's defaults (.git, .venv, venv, __pycache__); emptying the
        # defaults (Ray's documented switch) silences its "now ignored by default" warnings
        os.environ.setdefault("RAY_OVERRIDE_RUNTIME_ENV_DEFAULT_EXCLUDES", "")
        log.info("shipping %s to the workers (excludes: %s)", wd, ", ".join(excludes))
    return env


#: the most directory entries a working directory may hold (after the excludes) before the
#: scan gives up: a sweep started from $HOME or /tmp would otherwise hash it all
MAX_ENTRIES = 200_000


def _excluded(rel: str, is_dir: bool, patterns: list[str]) -> bool:
    """Our ``EXCLUDES`` patterns, gitignore-style: ``name/`` (a directory at any depth),
    ``/name/`` (at the top), ``*.ext`` (a file name at any depth)."""
    name = rel.rsplit("/", 1)[-1]
    for p in patterns:
        if p.startswith("/") and p.endswith("/"):
            if is_dir and rel == p.strip("/"):
                return True
        elif p.endswith("/"):
            if is_dir and fnmatch.fnmatch(name, p.rstrip("/")):
                return True
        elif fnmatch.fnmatch(name, p):
            return True
    return False


def special_files(wd: Path, excludes: list[str]) -> list[str]:
    """Excludes for the working directory's FIFOs, sockets and devices (Ray hashes every file
    it ships, and opening a FIFO blocks forever: a sweep started next to one hung). Raises a
    one-line ``ConfigError`` when the directory holds more than ``MAX_ENTRIES`` entries."""
    extra: list[str] = []
    seen = 0
    for root, dirs, files in os.walk(wd, followlinks=False):
        rel_root = os.path.relpath(root, wd)
        rel_root = "" if rel_root == "." else rel_root + "/"
        dirs[:] = [d for d in dirs if not _excluded(rel_root + d, True, excludes)]
        seen += len(dirs) + len(files)
        if seen > MAX_ENTRIES:
            raise ConfigError(
                f"--working-dir {wd}: more than {MAX_ENTRIES:,} files and folders to ship to "
                "the workers; run the sweep from your project's directory or pass "
                "--working-dir with just your code")
        for f in files:
            rel = rel_root + f
            if _excluded(rel, False, excludes):
                continue
            try:
                mode = os.lstat(os.path.join(root, f)).st_mode
            except OSError:
                continue
            if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                extra.append("/" + rel)
    if extra:
        log.warning("not shipping %d special files of %s (FIFOs, sockets, devices): %s",
                    len(extra), wd, ", ".join(extra[:5]))
    return extra
