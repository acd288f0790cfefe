"""JSON-safe scalars from DataFrame cells (NaN/inf/NA -> None, numpy -> Python, time -> ISO)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def json_scalar(v: Any) -> Any:
    if v is None or v is pd.NaT:
        return None
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if hasattr(v, "item"):  # numpy scalar
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, float | int | str | bool):
        return v
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return str(v)
