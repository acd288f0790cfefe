"""Layer similarity: SVCCA, PWCCA, linear / debiased / minibatch CKA, and activation capture.

In-memory functions take (examples x features) matrices, or conv activations (N, C, *positions)
reduced by ``conv="pool" | "flatten"``; model-level functions hook named layers and stream
batches with bounded memory. See docs/similarity.md.
"""

from ._inputs import CONV_MODES, as_examples
from .capture import (
    METHODS,
    capture_activations,
    compare_models,
    default_pairs,
    model_as_found,
    prunable_layers,
    resolve_layers,
    similarity_matrix,
)
from .cca import canonical_correlations, pwcca, svcca
from .cka import (
    MinibatchCKA,
    Moments,
    StreamingCKA,
    cka_from_moments,
    debiased_cka,
    linear_cka,
    minibatch_cka,
    unbiased_hsic,
)

__all__ = [
    "CONV_MODES",
    "METHODS",
    "MinibatchCKA",
    "Moments",
    "StreamingCKA",
    "as_examples",
    "canonical_correlations",
    "capture_activations",
    "cka_from_moments",
    "compare_models",
    "debiased_cka",
    "default_pairs",
    "linear_cka",
    "minibatch_cka",
    "model_as_found",
    "prunable_layers",
    "pwcca",
    "resolve_layers",
    "similarity_matrix",
    "svcca",
    "unbiased_hsic",
]
