"""Flags on trials a reader should not trust at face value: chance accuracy, collapsed layers.

**Chance accuracy.** A trial is flagged when ``test_accuracy <= 1/K + CHANCE_MARGIN``
(margin 0.02), K being the number of classes, taken per row from the first of:

1. a ``num_classes`` (or ``config.data.num_classes``) column;
2. ``num_classes`` inside the JSON ``config.data.options`` (the ``synthetic`` dataset);
3. the dataset named in ``config.data.name`` when its class count is fixed
   (:data:`KNOWN_CLASSES`).

Rows whose K is still unknown (a user's data factory, ``imagefolder``) are judged with
``ASSUMED_CLASSES`` (10) classes and their flag says so (``chance accuracy?``). This is the
CLI's rule (``flags.trial_note``): the constants and the per-row K come from ``flags.py``, this
module only computes them for a whole frame at once (a test checks both agree row by row). The
page states which rule applied.

**Collapsed layer.** ``n_collapsed > 0`` (a layer whose every weight was pruned, which
disconnects the network).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sweeps.results.flags import (
    ASSUMED_CLASSES,
    CHANCE_MARGIN,
    CLASS_SOURCES,
    KNOWN_CLASSES,
    NOTE_INPUTS,
    chance_threshold,
    class_count,
)

__all__ = ["CHANCE_MARGIN", "KNOWN_CLASSES", "Flags", "flag_trials", "num_classes"]


@dataclass
class Flags:
    """Per row of the frame they were computed on."""

    chance: np.ndarray
    collapsed: np.ndarray
    n_collapsed: np.ndarray
    threshold: np.ndarray  # the chance threshold used per row (NaN: none)
    rules: list[str] = field(default_factory=list)  # how the thresholds were set
    #: rows whose number of classes is unknown (judged with ``ASSUMED_CLASSES``)
    assumed: np.ndarray | None = None

    @property
    def any(self) -> np.ndarray:
        return self.chance | self.collapsed

    def label(self, i: int) -> str:
        parts = []
        if self.chance[i]:
            if self.assumed is not None and self.assumed[i]:
                parts.append(f"chance accuracy? (≤ {self.threshold[i]:.3g}, "
                             f"{ASSUMED_CLASSES} classes assumed)")
            else:
                parts.append(f"chance accuracy (≤ {self.threshold[i]:.3g})")
        if self.collapsed[i]:
            parts.append(f"{int(self.n_collapsed[i])} collapsed layer(s)")
        return "; ".join(parts)


def num_classes(df: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """K per row (NaN where unknown) and which sources gave it, in :data:`CLASS_SOURCES`
    order: :func:`sweeps.results.flags.class_count` of every row."""
    cols = [c for c in NOTE_INPUTS if c in df.columns and c not in ("test_accuracy",
                                                                    "n_collapsed")]
    found = [class_count(r) for r in df[cols].to_dict("records")] if cols else \
        [(None, None)] * len(df)
    k = np.array([np.nan if kk is None else kk for kk, _ in found], dtype=float)
    seen = {source for _, source in found}
    return k, [s for s in CLASS_SOURCES if s in seen]


def flag_trials(df: pd.DataFrame) -> Flags:
    """The flags of every row of ``df`` (any status)."""
    n = len(df)
    acc = (pd.to_numeric(df["test_accuracy"], errors="coerce").to_numpy(np.float64,
                                                                         na_value=np.nan)
           if "test_accuracy" in df.columns else np.full(n, np.nan))
    k, used = num_classes(df)
    threshold = chance_threshold(k)
    rules = [f"chance: test_accuracy ≤ 1/K + {CHANCE_MARGIN}, K from {', '.join(used)}"] \
        if used else []
    assumed = np.isnan(k)
    unknown = assumed & np.isfinite(acc)
    if unknown.any():
        threshold[assumed] = chance_threshold(ASSUMED_CLASSES)
        rules.append(f"chance (number of classes unknown for {int(unknown.sum())} trials): "
                     f"test_accuracy ≤ 1/{ASSUMED_CLASSES} + {CHANCE_MARGIN}, "
                     f"{ASSUMED_CLASSES} classes assumed")
    with np.errstate(invalid="ignore"):
        chance = np.isfinite(acc) & np.isfinite(threshold) & (acc <= threshold)
    nc = (pd.to_numeric(df["n_collapsed"], errors="coerce").fillna(0).to_numpy(np.float64)
          if "n_collapsed" in df.columns else np.zeros(n))
    rules.append("collapsed: n_collapsed > 0 (a layer with every weight pruned)")
    return Flags(chance=chance, collapsed=nc > 0, n_collapsed=nc, threshold=threshold,
                 rules=rules, assumed=assumed)
