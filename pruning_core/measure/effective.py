"""Effective sparsity: which kept weights still lie on an input -> output path.

A kept weight whose input unit receives nothing (every weight into it pruned) or whose output
unit feeds nothing is dead weight: it can never change the network's output. Reported sparsity
then overstates the network that is left; Vysogorets & Kempe, "Connectivity Matters: Neural
Network Pruning Through the Lens of Effective Sparsity" (JMLR 2023) call the true figure
*effective sparsity*.

Computed exactly with the SynFlow path-count trick (Tanaka et al. 2020,
github.com/ganguli-lab/Synaptic-Flow ``Pruners/pruners.py`` ``SynFlow.score``): replace every
kept weight by 1 (pruned by 0), zero every bias, feed an all-ones input and take
``R = sum(output)``. ``dR/dw`` for weight ``w: j -> i`` is (paths from the input into ``j``) x
(paths from ``i`` to the output), so it is non-zero exactly when ``w`` lies on some path. The
probe is a float64 copy with every non-linearity made path-preserving:

- ReLU-like activations pass non-negative values unchanged; BatchNorm becomes the identity
  (eval mode, unit statistics; a channel with ``gamma == 0`` is cut); LayerNorm/GroupNorm
  become the identity (normalising an all-ones vector would give zeros, a false "no path");
- max pooling becomes average pooling of the same window (the max routes the gradient to one
  input only, which would mark the others disconnected);
- softmax attention (``nn.MultiheadAttention``) becomes its first-order linearisation
  ``(1 + s) / n_keys`` (``pruning_core/masking/linearised.py``): q and k lie on a path through the
  scores, v through the values, and v still passes when q or k are pruned away; the same for
  ``F.scaled_dot_product_attention`` called directly, and ``F.layer_norm`` is the identity;
- residual sums, concatenation, flattening and average pooling need nothing.

Path counts overflow only for very wide and deep networks; then the probe is redone with each
weight scaled by ``1 / fan_in`` (averages instead of counts), which keeps every value <= 1.
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from ..masking.linearised import Linearised, LinearisedAttention
from ..masking.masks import MaskSet

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
_MAXPOOL = {nn.MaxPool1d: nn.AvgPool1d, nn.MaxPool2d: nn.AvgPool2d, nn.MaxPool3d: nn.AvgPool3d}
_ADAPTIVE = {nn.AdaptiveMaxPool1d: nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool2d: nn.AdaptiveAvgPool2d,
             nn.AdaptiveMaxPool3d: nn.AdaptiveAvgPool3d}


@dataclass
class Connectivity:
    """What is left of a masked network once disconnected weights are discounted."""

    masks: dict[str, torch.Tensor]  # kept AND on some input -> output path
    kept: int  # weights kept by the masks
    effective: int  # of those, on some path
    total: int  # prunable weights
    layer_effective_sparsity: dict[str, float] = field(default_factory=dict)
    dead_units: dict[str, int] = field(default_factory=dict)  # output units with no live weight

    @property
    def effective_sparsity(self) -> float:
        return 1.0 - self.effective / self.total if self.total else 0.0

    @property
    def disconnected(self) -> int:
        """Kept weights on no path."""
        return self.kept - self.effective

    @property
    def has_path(self) -> bool:
        """Some input still reaches the output through the prunable layers."""
        return self.effective > 0


def _swap_modules(probe: nn.Module) -> None:
    """Make every module of ``probe`` path-preserving (see the module docstring)."""
    for name, mod in list(probe.named_modules()):
        new: nn.Module | None = None
        if type(mod) in _MAXPOOL:
            new = _MAXPOOL[type(mod)](mod.kernel_size, mod.stride, mod.padding,  # type: ignore
                                      ceil_mode=mod.ceil_mode)
        elif type(mod) in _ADAPTIVE:
            new = _ADAPTIVE[type(mod)](mod.output_size)  # type: ignore[arg-type]
        elif isinstance(mod, nn.MultiheadAttention):
            new = LinearisedAttention(mod)
        elif isinstance(mod, _NORMS):
            new = _Scale(getattr(mod, "weight", None))
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            new = _Scale(mod.weight, channel_dim=1)
        if new is not None and name:
            parent, _, child = name.rpartition(".")
            setattr(probe.get_submodule(parent) if parent else probe, child, new)


class _Scale(nn.Module):
    """Identity, except that units whose affine weight is 0 are cut (their output is constant)."""

    def __init__(self, weight: torch.Tensor | None, channel_dim: int = -1) -> None:
        super().__init__()
        w = None if weight is None else (weight.detach() != 0).double()
        self.register_buffer("keep", w)
        self.channel_dim = channel_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.keep is None:
            return x
        if self.channel_dim == -1:  # LayerNorm: weight covers the trailing dims
            return x * self.keep
        shape = [1] * x.dim()
        shape[1] = -1
        return x * self.keep.view(shape)


def _probe(model: nn.Module, masks: MaskSet, per_fan_in: bool) -> nn.Module:
    probe = copy.deepcopy(model).double().eval()
    _swap_modules(probe)
    named = dict(probe.named_parameters())
    with torch.no_grad():
        for name, p in named.items():
            if name in masks.masks:
                value = masks[name].to(p.device, torch.float64)
                if per_fan_in and p.dim() > 1:
                    value = value / max(1, p[0].numel())
                p.copy_(value)
            elif p.dim() <= 1:  # biases and norm parameters: no path of their own
                p.zero_()
            else:  # a weight nobody prunes (e.g. an embedding): its non-zeros carry paths
                p.copy_((p != 0).double())
            p.requires_grad_(name in masks.masks)
    return probe


def connectivity(model: nn.Module, masks: MaskSet, input_shape: tuple[int, ...],
                 example: torch.Tensor | None = None) -> Connectivity:
    """The effective masks of ``model`` under ``masks`` (the model itself is not changed).

    ``example``: an input to use instead of ones of ``input_shape`` (e.g. token ids; its
    values are not used by the path count beyond selecting what the model reads)."""
    grads: dict[str, torch.Tensor] = {}
    for per_fan_in in (False, True):
        probe = _probe(model, masks, per_fan_in)
        device = next(probe.parameters()).device
        x = example.to(device) if example is not None else torch.ones(
            (1, *input_shape), dtype=torch.float64, device=device)
        with Linearised(affine=False):  # functional attention / layer_norm (nanoGPT blocks)
            out = probe(x)
        out = out if isinstance(out, torch.Tensor) else out[0]
        named = dict(probe.named_parameters())
        params = [named[n] for n in masks.masks]
        total = out.double().sum()
        gs = torch.autograd.grad(total, params, allow_unused=True)
        if torch.isfinite(total) and all(g is None or bool(torch.isfinite(g).all()) for g in gs):
            grads = {n: (torch.zeros_like(p) if g is None else g)
                     for n, p, g in zip(masks.masks, params, gs, strict=True)}
            break
    if not grads:  # overflowed both ways: say nothing is disconnected rather than guess
        grads = {n: m.double() for n, m in masks.masks.items()}
    live = {n: (grads[n].to(m.device) != 0) & m for n, m in masks.masks.items()}
    kept, eff = masks.kept(), int(sum(int(m.sum()) for m in live.values()))
    return Connectivity(
        masks=live, kept=kept, effective=eff, total=masks.numel(),
        layer_effective_sparsity={n: 1.0 - float(m.sum()) / m.numel() for n, m in live.items()},
        dead_units={n: int((~m.reshape(m.shape[0], -1).any(1)).sum()) if m.dim() > 1 else 0
                    for n, m in live.items()},
    )


class ConnectivityFn(Protocol):
    def __call__(self, model: nn.Module, masks: MaskSet, input_shape: tuple[int, ...]
                 ) -> Connectivity: ...


class ConnectivityMemo:
    """``connectivity`` of the last network asked about, reused while nothing it reads has
    changed: the model object, the input shape, the masks, and which of the other parameters
    are non-zero (a weight nobody prunes carries paths through its non-zeros; a norm weight of
    0 cuts its unit). A trial probes after its last prune (the screen) and again for its
    record; where training left the masks as they were (pruning before training), the second
    probe, a deep copy and a float64 forward and backward, is the first one's answer."""

    def __init__(self) -> None:
        self._model: weakref.ref[nn.Module] | None = None
        self._reads: tuple[Any, ...] | None = None
        self._value: Connectivity | None = None

    def __call__(self, model: nn.Module, masks: MaskSet, input_shape: tuple[int, ...]
                 ) -> Connectivity:
        reads = _reads(model, masks, input_shape)
        model_then = self._model() if self._model is not None else None
        if model_then is model and self._reads is not None and _same(self._reads, reads):
            assert self._value is not None
            return self._value
        value = connectivity(model, masks, input_shape)
        self._model, self._reads, self._value = weakref.ref(model), reads, value
        return value


def _reads(model: nn.Module, masks: MaskSet, input_shape: tuple[int, ...]) -> tuple[Any, ...]:
    masked = {n: m.clone() for n, m in masks.masks.items()}
    nonzero = {n: (p.detach() != 0) for n, p in model.named_parameters() if n not in masked}
    return tuple(input_shape), masked, nonzero


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    if a[0] != b[0]:
        return False
    for da, db in zip(a[1:], b[1:], strict=True):
        if da.keys() != db.keys():
            return False
        if not all(da[n].shape == db[n].shape and torch.equal(da[n], db[n]) for n in da):
            return False
    return True


def remove_disconnected(model: nn.Module, masks: MaskSet, input_shape: tuple[int, ...]
                        ) -> Connectivity:
    """Prune every kept weight that lies on no path (``prune.remove_disconnected``): the
    network computes the same function, and its reported sparsity becomes the effective one."""
    conn = connectivity(model, masks, input_shape)
    masks.update(conn.masks)
    masks.apply()
    return conn


def effective_record(model: nn.Module, masks: MaskSet, input_shape: tuple[int, ...],
                     record_masks: MaskSet | None = None,
                     probe: ConnectivityFn = connectivity) -> dict[str, object]:
    """The trial record's connectivity fields. ``model``/``masks``: the network as it runs
    (a compact model and its leftover masks); ``record_masks``: the full-size masks the
    reported sparsity is counted on (default ``masks``); ``probe``: ``connectivity`` or a
    trial's ``ConnectivityMemo``."""
    from .metrics import flops

    record_masks = record_masks or masks
    conn = probe(model, masks, input_shape)
    live = MaskSet(masks.params, conn.masks)
    effective = record_masks.kept() - conn.disconnected
    layer = {n: 1.0 - (int(record_masks[n].sum()) - (int(masks[n].sum()) - int(m.sum())))
             / record_masks[n].numel() for n, m in conn.masks.items() if n in record_masks.masks}
    total_params = sum(p.numel() for p in model.parameters())
    return {
        "effective_sparsity": 1.0 - effective / record_masks.numel() if record_masks.numel()
        else 0.0,
        "disconnected_weights": conn.disconnected,
        "dead_units": sum(conn.dead_units.values()),
        "effective_params": total_params - (live.numel() - live.kept()),
        "effective_flops": flops(model, input_shape, live)[1],
        "layer_effective_sparsity": layer,
    }
