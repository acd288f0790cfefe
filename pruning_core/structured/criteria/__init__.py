"""Structured (channel) criteria: small score functions behind one registry (higher = keep)."""

from . import aggregated, cnip, norms, snap  # noqa: F401  (register)
from .base import (
    STRUCTURED_CRITERIA,
    StructuredContext,
    StructuredCriterion,
    structured_criterion,
    to_channels,
)

__all__ = ["STRUCTURED_CRITERIA", "StructuredContext", "StructuredCriterion",
           "structured_criterion", "to_channels"]
