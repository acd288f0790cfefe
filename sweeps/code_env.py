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

import logging
import os
from pathlib import Path
from typing import Any

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


def runtime_env(working_dir: str | Path | None) -> dict[str, Any]:
    """The ``runtime_env`` for ``ray.init``: ``working_dir`` (if given) plus the driver's
    prunetune packages."""
    packages = _packages()
    # trials run in the working directory, not in Tune's per-trial directory, so relative paths
    # of a config (model.weights, data.root) mean the same on every worker as on the driver
    # (RAY_CHDIR_TO_TRIAL_DIR is Ray Tune's documented switch)
    env: dict[str, Any] = {"py_modules": [str(p) for p in packages],
                           "env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0"}}
    if working_dir is not None:
        wd = Path(working_dir).resolve()
        excludes = list(EXCLUDES)
        for pkg in packages:  # the working dir's own copy would shadow the driver's
            if (wd / pkg.name).is_dir():
                excludes.append(f"/{pkg.name}/")
        env.update(working_dir=str(wd), excludes=excludes)
        # EXCLUDES already holds Ray's defaults (.git, .venv, venv, __pycache__); emptying the
        # defaults (Ray's documented switch) silences its "now ignored by default" warnings
        os.environ.setdefault("RAY_OVERRIDE_RUNTIME_ENV_DEFAULT_EXCLUDES", "")
        log.info("shipping %s to the workers (excludes: %s)", wd, ", ".join(excludes))
    return env
