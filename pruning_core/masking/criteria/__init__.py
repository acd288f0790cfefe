"""Pruning criteria: small score functions behind one registry (higher score = keep)."""

from . import grasp, simple, snip, sparsegpt, synflow, wanda  # noqa: F401  (register)
from .base import CRITERIA, Criterion, ScoreContext, criterion

__all__ = ["CRITERIA", "Criterion", "ScoreContext", "criterion"]
