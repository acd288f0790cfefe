"""A dense network trained once and shared by every trial that starts from it.

Trials of a sweep that train dense before pruning (``timing: after``, IMP's first phase, a
``during`` trial's epochs before its first prune event) repeat the same work when model, data,
training config and seed agree. Since a plan is data (``timing.py``) and a checkpoint is "the
state after action i" (bit-exact, every random state included), the shared piece is simply the
checkpoint after the plan's *dense prefix*: the actions before the first ``Prune``. Its cache
key hashes everything that prefix depends on (model, data, train config, seed, the prunable
set, the prefix's actions, the engine version); a trial that loads it ends bit for bit where a
trial that trained itself ends.

``LocalDenseCache`` keeps entries as ``<key>.pt`` (``torch.save``, read back with
``weights_only=True``) under a directory; concurrent trials on one machine (or on a shared
POSIX filesystem with working ``flock``) wait on ``<key>.lock`` for the one writer instead of each
training their own. Sweeps with remote storage use ``sweeps``' cache over pyarrow filesystems.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import torch

from ..config import TrialConfig
from .timing import Action, Prune, Train

log = logging.getLogger(__name__)

#: bump when the checkpoint layout or anything the dense phase computes changes
CACHE_VERSION = 1

State = dict[str, Any]


class DenseCache(Protocol):
    def get_or_create(self, key: str, create: Callable[[], State]) -> State:
        """The state stored under ``key``, or ``create()``'s, stored by exactly one writer."""
        ...


def dense_prefix(plan: list[Action]) -> int:
    """Number of leading actions before the first ``Prune``, if they train (else 0)."""
    n = next((i for i, a in enumerate(plan) if isinstance(a, Prune)), len(plan))
    return n if any(isinstance(a, Train) for a in plan[:n]) else 0


def cache_key(cfg: TrialConfig, plan: list[Action], n: int) -> str:
    """Hash of everything the first ``n`` actions of ``plan`` depend on."""
    what = {
        "version": CACHE_VERSION,
        "seed": cfg.seed,
        "model": cfg.model.model_dump(mode="json"),
        "data": cfg.data.model_dump(mode="json"),
        "train": cfg.train.model_dump(mode="json"),
        "prunable": [cfg.prune.include, cfg.prune.exclude]
        + (["channel"] if cfg.prune.granularity == "channel" else []),  # its masks' layout
        "score_batches": cfg.prune.score_batches,
        **({"score_samples_per_class": cfg.prune.score_samples_per_class}
           if cfg.prune.score_samples_per_class else {}),
        "actions": [repr(a) for a in plan[:n]],
    }
    blob = json.dumps(what, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


class LocalDenseCache:
    """Entries under ``root``; one writer per key through an exclusive ``flock``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{key}.lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # waits while another trial writes
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def get_or_create(self, key: str, create: Callable[[], State]) -> State:
        path = self.path(key)
        if path.exists():
            return torch.load(path, weights_only=True)
        with self._locked(key):
            if path.exists():  # written while we waited
                log.info("dense network %s: reusing the one another trial trained", key)
                return torch.load(path, weights_only=True)
            log.info("dense network %s: training it once for the sweep", key)
            state = create()
            fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
            os.close(fd)
            torch.save(state, tmp)
            os.replace(tmp, path)  # atomic: readers see all of it or nothing
            return state
