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
from dataclasses import dataclass

import torch
from torch import nn

from ...base.errors import ConfigError
from .base import Batch, forward, restored_mode

#: called with (parameter name, (tokens, features) rows, examples in the batch)
Sink = Callable[[str, torch.Tensor, int], None]


@dataclass(frozen=True)
class Tap:
    """Where a prunable weight's input is read: a module's forward pre-hook, and how its
    ``(args, kwargs)`` become ``(tokens, features)`` rows."""

    module: nn.Module
    rows: Callable[[nn.Module, tuple, dict], torch.Tensor]


def _layer_rows(mod: nn.Module, args: tuple, kwargs: dict) -> torch.Tensor:
    return as_rows(mod, args[0] if args else kwargs["input"])


def _qkv(args: tuple, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    names = ("query", "key", "value")
    q, k, v = (*args, *(kwargs[n] for n in names[len(args):]))[:3]
    return q, k, v


def _mha_in_rows(mod: nn.Module, args: tuple, kwargs: dict) -> torch.Tensor:
    """``in_proj_weight`` (3E, E) multiplies query, key and value: self-attention only, where
    all three are one tensor (torchvision's ``self_attention(x, x, x)``)."""
    q, k, v = _qkv(args, kwargs)
    if not (q is k is v or (torch.equal(q, k) and torch.equal(q, v))):
        raise ConfigError("prune.criterion: calibration criteria read in_proj_weight's input "
                          "only for self-attention (query = key = value); exclude it")
    return q.reshape(-1, q.shape[-1])


def _mha_out_rows(mod: nn.Module, args: tuple, kwargs: dict) -> torch.Tensor:
    """``out_proj`` is applied inside ``F.multi_head_attention_forward`` (its module's forward
    never runs): the attention output it multiplies is recomputed with an identity out_proj."""
    q, k, v = _qkv(args, kwargs)
    if mod.batch_first:
        q, k, v = (t.transpose(0, 1) for t in (q, k, v))
    e = mod.embed_dim
    eye = torch.eye(e, dtype=q.dtype, device=q.device)
    out, _ = nn.functional.multi_head_attention_forward(
        q, k, v, e, mod.num_heads, mod.in_proj_weight, mod.in_proj_bias, mod.bias_k,
        mod.bias_v, mod.add_zero_attn, 0.0, eye, None, training=False,
        key_padding_mask=kwargs.get("key_padding_mask"), need_weights=False,
        attn_mask=kwargs.get("attn_mask"), is_causal=kwargs.get("is_causal", False))
    return out.reshape(-1, e)


def owner_modules(model: nn.Module, names: list[str]) -> dict[str, Tap]:
    """``{parameter name: where its input is read}``: the ``weight`` of Linear, Conv1d and
    Conv2d modules, and a self-attention ``nn.MultiheadAttention``'s ``in_proj_weight`` and
    ``out_proj.weight``; anything else is refused in one line."""
    modules = dict(model.named_modules())
    out = {}
    for name in names:
        mod_name, _, leaf = name.rpartition(".")
        mod = modules.get(mod_name)
        parent = modules.get(mod_name.rpartition(".")[0]) if mod_name else None
        if isinstance(mod, nn.MultiheadAttention) and leaf == "in_proj_weight":
            out[name] = Tap(mod, _mha_in_rows)
        elif isinstance(parent, nn.MultiheadAttention) and mod is parent.out_proj \
                and leaf == "weight":
            out[name] = Tap(parent, _mha_out_rows)
        elif leaf == "weight" and isinstance(mod, nn.Linear | nn.Conv1d | nn.Conv2d):
            if isinstance(mod, nn.Conv1d | nn.Conv2d):
                _check_conv(name, mod)
            out[name] = Tap(mod, _layer_rows)
        else:
            raise ConfigError(
                f"prune.criterion: calibration criteria (wanda, sparsegpt) score the weight of "
                f"Linear, Conv1d, Conv2d and self-attention layers only; {name} is not one: "
                f"exclude it (prune.exclude: [{name!r}])"
            )
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
def _hooks(taps: dict[str, Tap], sink: Sink, stop: bool) -> Iterator[None]:
    handles = []
    for name, tap in taps.items():

        def hook(m: nn.Module, args: tuple, kwargs: dict, _name: str = name,
                 _tap: Tap = tap) -> None:
            rows = _tap.rows(m, args, kwargs)
            first = args[0] if args else next(iter(kwargs.values()))
            batch = first.shape[1] if getattr(m, "batch_first", True) is False else first.shape[0]
            sink(_name, rows.detach(), batch)
            if stop:
                raise _Captured

        handles.append(tap.module.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def capture(model: nn.Module, taps: dict[str, Tap], batches: list[Batch],
            sink: Sink, stop: bool = False) -> None:
    """Run every calibration batch through ``model`` (eval mode), handing each hooked layer's
    input to ``sink``. ``stop``: end each forward at the first hooked layer (one layer at a
    time, as SparseGPT's sequential pass needs: what comes after it is never computed)."""
    if not batches:
        raise ConfigError("prune.score_batches: calibration criteria need training batches")
    with restored_mode(model), _hooks(taps, sink, stop):
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

    def require(self, name: str) -> Gram:
        """This Gram, or one line saying the layer never saw an input."""
        if self.sum is None:
            raise ConfigError(
                f"prune.criterion: {name} received no input on the calibration batches (its "
                "module is never called, e.g. a weight used through a functional call); "
                f"exclude it (prune.exclude: [{name!r}])")
        return self

    def diag(self) -> torch.Tensor:
        assert self.sum is not None
        return self.sum if self.diag_only else self.sum.diagonal()


def layer_grams(model: nn.Module, names: list[str], batches: list[Batch],
                diag_only: bool = False) -> dict[str, Gram]:
    """One pass over the calibration batches: every listed layer's input Gram matrix."""
    grams = {n: Gram(diag_only) for n in names}
    capture(model, owner_modules(model, names), batches,
            lambda name, rows, b: grams[name].add(rows, b))
    return {n: g.require(n) for n, g in grams.items()}


def sequential(model: nn.Module, params: dict[str, nn.Parameter], batches: list[Batch],
               layer: Callable[[str, Gram], torch.Tensor], diag_only: bool = False
               ) -> dict[str, torch.Tensor]:
    """Layer by layer, in module order: capture the layer's input through the network whose
    earlier layers are already pruned (and updated), call ``layer(name, gram) -> keep mask``,
    and zero what it pruned before moving on (Wanda's and SparseGPT's sequential passes)."""
    taps = owner_modules(model, list(params))
    out = {}
    for name, tap in taps.items():
        gram = Gram(diag_only)
        capture(model, {name: tap}, batches, lambda _n, rows, b, g=gram: g.add(rows, b),
                stop=True)
        out[name] = layer(name, gram.require(name))
        with torch.no_grad():
            params[name].mul_(out[name].to(params[name].dtype))
    return out
