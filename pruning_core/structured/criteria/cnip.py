"""CNIP (Verdenius et al. 2020): weights and nodes ranked together on equal footing.

The authors' ``models/criterions/CNIP.py`` (SNIP-it) concatenates SNIP weight elasticities
|g ⊙ w| / |L| and SNAP node elasticities |∂L/∂gate| / |L| (both in eval mode, gradients of the
batch-averaged loss), takes one threshold that keeps ``(1 − s)`` of all of them, and prunes the
weights and the nodes below it. Here the channel half is :func:`~.snap.snap`; the weight half is
the ``snip`` weight criterion rescaled to the same footing (see
:func:`pruning_core.structured.pruner.joint_weight_scores`); the joint selection is
``ChannelPruner``'s (it knows about the ``joint_weights`` flag).
"""

from __future__ import annotations

import torch

from .base import StructuredContext, structured_criterion
from .snap import snap


@structured_criterion("cnip", joint_weights="snip")
def cnip(ctx: StructuredContext) -> dict[int, torch.Tensor]:
    """The node half of CNIP: SNAP's channel scores."""
    return snap(ctx)
