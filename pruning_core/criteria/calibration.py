"""Calibration inputs of prunable layers, captured with forward hooks (Wanda, SparseGPT).

A layer's input is turned into a matrix ``(tokens, features)`` whose columns line up with
``weight.flatten(1)``:

- ``nn.Linear``: features on the last dim, every leading dim (batch, sequence) is a token;
- ``nn.Conv1d`` / ``nn.Conv2d``: the input is unfolded (im2col, ``nn.functional.unfold``) so
  each output position is a token and a feature is (input channel, kernel offset), in the order
  of ``weight.flatten(1)``; this follows GPTQ's ``add_batch`` for ``nn.Conv2d``
  (IST-DASLab/gptq ``gptq.py``: ``nn.Unfold`` then ``permute([1, 0, 2]).flatten(1)``).
  SparseGPT's own ``add_batch`` has no conv branch and Wanda's image-classifier code prunes
  only ``nn.Linear`` (locuslab/wanda ``image_classifiers/prune_utils.py``), so conv support is
  this extension, not the authors'. Grouped convs, non-zero padding modes and string padding
  are refused with one line, as is ``nn.Conv3d``.

The model runs in eval mode, without gradients, through ``criteria.base.forward`` (buffers
cloned), so capturing changes nothing in it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import ConfigError
from .base import Batch, forward, restored_mode

#: called with (parameter name, (tokens, features) rows, examples in the batch)
Sink = Callable[[str, torch.Tensor, int], None]


def owner_modules(model: nn.Module, names: list[str]) -> dict[str, nn.Module]:
    """``{parameter name: the module whose .weight it is}``; anything else is refused."""
    modules = dict(model.named_modules())
    out = {}
    for name in names:
        mod_name, _, leaf = name.rpartition(".")
        mod = modules.get(mod_name)
        if leaf != "weight" or not isinstance(mod, nn.Linear | nn.Conv1d | nn.Conv2d):
            raise ConfigError(
                f"prune.criterion: calibration criteria (wanda, sparsegpt) score the weight of "
                f"Linear, Conv1d and Conv2d layers only; {name} is not one: exclude it "
                f"(prune.exclude: [{name!r}])"
            )
        out[name] = mod
    return out


def _check_conv(name: str, mod: nn.Conv1d | nn.Conv2d) -> None:
    if mod.groups != 1 or mod.padding_mode != "zeros" or isinstance(mod.padding, str):
        raise ConfigError(
            f"prune.criterion: {name} is a grouped conv or has {mod.padding_mode!r}/string "
            "padding, which calibration criteria (wanda, sparsegpt) do not unfold; exclude it"
        )


def as_rows(mod: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A layer's input as (tokens, features), features in ``weight.flatten(1)`` order."""
    if isinstance(mod, nn.Linear):
        return x.reshape(-1, x.shape[-1])  # (B * L, in)
    if isinstance(mod, nn.Conv1d):
        x = x.unsqueeze(2)  # (B, C, 1, L): a 1 x k conv2d
        k, d, p, s = ((1, mod.kernel_size[0]), (1, mod.dilation[0]), (0, mod.padding[0]),
                      (1, mod.stride[0]))
    else:
        k, d, p, s = mod.kernel_size, mod.dilation, mod.padding, mod.stride
    cols = nn.functional.unfold(x, k, dilation=d, padding=p, stride=s)  # (B, C*kh*kw, L)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])  # (B * L, C*kh*kw)


class _Captured(Exception):
    """Raised by a hook to stop the forward once the wanted layer has its input."""


@contextmanager
def _hooks(modules: dict[str, nn.Module], sink: Sink, stop: bool) -> Iterator[None]:
    handles = []
    for name, mod in modules.items():
        if isinstance(mod, nn.Conv1d | nn.Conv2d):
            _check_conv(name, mod)

        def hook(m: nn.Module, args: tuple, _name: str = name) -> None:
            x = args[0]
            sink(_name, as_rows(m, x.detach()), x.shape[0])
            if stop:
                raise _Captured

        handles.append(mod.register_forward_pre_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def capture(model: nn.Module, modules: dict[str, nn.Module], batches: list[Batch],
            sink: Sink, stop: bool = False) -> None:
    """Run every calibration batch through ``model`` (eval mode), handing each hooked layer's
    input to ``sink``. ``stop``: end each forward at the first hooked layer (one layer at a
    time, as SparseGPT's sequential pass needs: what comes after it is never computed)."""
    if not batches:
        raise ConfigError("prune.score_batches: calibration criteria need training batches")
    with restored_mode(model), _hooks(modules, sink, stop):
        model.eval()
        for x, _ in batches:
            try:
                forward(model, x)
            except _Captured:
                pass


class Gram:
    """Running ``Σ xxᵀ`` over calibration tokens (or only its diagonal ``Σ x_j²``), and the
    number of examples seen (SparseGPT's ``nsamples``: batch items, not tokens)."""

    def __init__(self, diag_only: bool = False) -> None:
        self.diag_only = diag_only
        self.sum: torch.Tensor | None = None
        self.examples = 0

    def add(self, rows: torch.Tensor, examples: int) -> None:
        rows = rows.double() if rows.dtype == torch.float64 else rows.float()
        part = rows.pow(2).sum(0) if self.diag_only else rows.T @ rows
        self.sum = part if self.sum is None else self.sum + part
        self.examples += examples

    def diag(self) -> torch.Tensor:
        assert self.sum is not None
        return self.sum if self.diag_only else self.sum.diagonal()


def layer_grams(model: nn.Module, names: list[str], batches: list[Batch],
                diag_only: bool = False) -> dict[str, Gram]:
    """One pass over the calibration batches: every listed layer's input Gram matrix."""
    grams = {n: Gram(diag_only) for n in names}
    capture(model, owner_modules(model, names), batches,
            lambda name, rows, b: grams[name].add(rows, b))
    return grams


def sequential(model: nn.Module, params: dict[str, nn.Parameter], batches: list[Batch],
               layer: Callable[[str, Gram], torch.Tensor], diag_only: bool = False
               ) -> dict[str, torch.Tensor]:
    """Layer by layer, in module order: capture the layer's input through the network whose
    earlier layers are already pruned (and updated), call ``layer(name, gram) -> keep mask``,
    and zero what it pruned before moving on (Wanda's and SparseGPT's sequential passes)."""
    modules = owner_modules(model, list(params))
    out = {}
    for name, mod in modules.items():
        gram = Gram(diag_only)
        capture(model, {name: mod}, batches, lambda _n, rows, b, g=gram: g.add(rows, b),
                stop=True)
        out[name] = layer(name, gram)
        with torch.no_grad():
            params[name].mul_(out[name].to(params[name].dtype))
    return out
