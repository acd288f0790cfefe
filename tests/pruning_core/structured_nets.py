"""Tiny networks for the structured tests (importable helpers, not tests)."""

from __future__ import annotations

import torch
from torch import nn


class TinyRes(nn.Module):
    """stem(3->4)+BN, one residual block (conv1 4->4, conv2 4->4, add), flatten, fc(16->3).

    Expected groups: {stem, bn0, conv2 out; conv1, fc in} (the residual add ties conv2 to the
    stem) and {conv1 out; conv2 in}. On 2x2 inputs channel c owns fc columns 4c..4c+3."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(4)
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn0(self.stem(x)))  # (B, 4, 2, 2)
        r = torch.relu(self.conv1(h))
        h = torch.relu(self.conv2(r) + h)
        return self.fc(h.flatten(1))  # (B, 3)


class TinyCat(nn.Module):
    """conv_a (3 ch) and conv_b (2 ch) concatenated into conv_c (5->4), pooled, fc(4->3)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv_a = nn.Conv2d(3, 3, 3, padding=1)
        self.conv_b = nn.Conv2d(3, 2, 3, padding=1)
        self.conv_c = nn.Conv2d(5, 4, 3, padding=1)
        self.bn_c = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([torch.relu(self.conv_a(x)), torch.relu(self.conv_b(x))], 1)  # (B, 5, ..)
        h = torch.relu(self.bn_c(self.conv_c(h)))
        return self.fc(h.mean((2, 3)))


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters (identity BN hides bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                    m.bias.copy_(torch.rand(n, generator=g) * 2 - 1)
    return model


def snapshot(model: nn.Module):
    """Everything a criterion must leave as found (as tests/pruning_core/test_criteria.py)."""
    return (
        {k: v.detach().clone() for k, v in model.state_dict().items()},
        {n: p.requires_grad for n, p in model.named_parameters()},
        {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        [m.training for m in model.modules()],
        [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
         for m in model.modules()],
    )


def assert_same_snapshot(before, after) -> None:
    for k, v in before[0].items():
        assert torch.equal(v, after[0][k]), f"changed {k}"
    assert before[1] == after[1]
    for k, g in before[2].items():
        assert (g is None and after[2][k] is None) or torch.equal(g, after[2][k]), k
    assert before[3] == after[3]
    assert before[4] == after[4]
