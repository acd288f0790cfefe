"""Path-preserving stand-ins for a transformer's non-linear, non-homogeneous pieces.

SynFlow's data-free score (Tanaka et al. 2020) and the effective-sparsity path count push an
all-ones input through |θ| and read gradients as *path counts*. That reading holds for
ReLU networks; a transformer breaks it twice:

- **LayerNorm** normalises: an all-ones token becomes zeros (a false "no path"), and on
  other inputs it subtracts the mean, so signs appear. The zero-cost-proxy code that ports
  SynFlow to arbitrary networks drops normalisation: SamsungLabs/zero-cost-nas
  ``foresight/pruners/measures/synflow.py`` (``bn=False``: norm forwards become no-ops) and
  deeplite-torch-zoo ``zero_cost_proxies/synflow.py`` (``dummify_bns``, every normalisation
  layer, LayerNorm included). We keep the affine part, ``x ↦ γ ⊙ x + β`` (``|γ|``, ``|β|``
  under SynFlow), so a channel the norm scales by 0 is still cut.
- **softmax** attention: with identical all-ones tokens the attention weights are uniform and
  their gradient through softmax is zero, so queries and keys would score 0 (and the
  logits overflow on |θ|). Softmax is replaced by its first-order Taylor expansion at
  uniform attention, ``exp(s) ≈ 1 + s``, normalised by the number of keys: the linearised
  attention of Li et al. 2020 ("Linear Attention Mechanism: An Efficient Attention for
  Semantic Segmentation", arXiv:2007.14902) and the kernel view of Katharopoulos et
  al. 2020 ("Transformers are RNNs", arXiv:2006.16236). On non-negative inputs every term is
  non-negative, so a q/k/v weight gets a non-zero gradient exactly when it lies on a path,
  and ``v`` still passes when q or k are pruned away (uniform attention, as softmax would).

TF-TAS (Zhou et al. CVPR 2022, "Training-free Transformer Architecture Search") scores the
MLPs of a ViT with SynFlow's saliency and notes that CNN proxies do not carry over to
attention unchanged; it publishes no linearisation of LayerNorm/softmax that we could follow.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     attn_mask: torch.Tensor | None = None, is_causal: bool = False,
                     scale: float | None = None) -> torch.Tensor:
    """``softmax(s) ≈ (1 + s) / n_keys`` attention over ``(..., L, D)`` tensors; masked keys
    (bool ``False`` / float ``-inf``, as ``F.scaled_dot_product_attention`` reads them, or
    ``is_causal``) are left out of the sum and the count."""
    lq, lk = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    weights = 1.0 + (q @ k.transpose(-2, -1)) * scale  # (..., Lq, Lk)
    allowed = torch.ones(lq, lk, dtype=torch.bool, device=q.device)
    if is_causal:
        allowed = allowed.tril()
    if attn_mask is not None:
        allowed = allowed & (attn_mask if attn_mask.dtype == torch.bool
                             else torch.isfinite(attn_mask))
    n_keys = allowed.sum(-1, keepdim=True).clamp_min(1)
    return (weights * allowed / n_keys) @ v


class Linearised(TorchFunctionMode):
    """While active, ``F.scaled_dot_product_attention`` is :func:`linear_attention` and
    ``F.layer_norm`` keeps only its affine part: the same linearisation for attention and
    norms written with the functional API (nanoGPT's ``CausalSelfAttention`` and
    ``LayerNorm``), which replacing modules cannot reach. ``affine=False``: ``F.layer_norm``
    is the identity (the effective-sparsity probe, which zeroes norm parameters as having no
    path of their own)."""

    def __init__(self, affine: bool = True) -> None:
        super().__init__()
        self.affine = affine

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = dict(kwargs or {})
        if func is F.scaled_dot_product_attention:
            names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
            bound = {**dict(zip(names, args, strict=False)), **kwargs}
            return linear_attention(bound["query"], bound["key"], bound["value"],
                                    bound.get("attn_mask"), bool(bound.get("is_causal")),
                                    bound.get("scale"))
        if func is F.layer_norm:
            names = ("input", "normalized_shape", "weight", "bias", "eps")
            bound = {**dict(zip(names, args, strict=False)), **kwargs}
            x, w, b = bound["input"], bound.get("weight"), bound.get("bias")
            if not self.affine:
                return x
            x = x * w if w is not None else x
            return x + b if b is not None else x
        return func(*args, **kwargs)


class LinearisedAttention(nn.Module):
    """``nn.MultiheadAttention`` with softmax replaced by ``(1 + s) / n_keys``.

    Holds the original module's parameters under the same names (``in_proj_weight``, ...,
    ``out_proj.weight``), so ``functional_call`` state dicts of the original model apply.
    ``bias_k`` / ``bias_v`` / ``add_zero_attn`` (rare) are not modelled: their extra key is
    left out of the path count."""

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        for name in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight",
                     "in_proj_bias"):
            setattr(self, name, getattr(mha, name, None))
        self.out_proj = mha.out_proj
        self.num_heads = mha.num_heads
        self.embed_dim = mha.embed_dim
        self.batch_first = mha.batch_first

    def _projections(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        e = self.embed_dim
        if self.in_proj_weight is not None:
            ws = self.in_proj_weight.split(e, dim=0)
        else:
            ws = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)
        bs = self.in_proj_bias.split(e) if self.in_proj_bias is not None else (None,) * 3
        return tuple(F.linear(t, w, b) for t, w, b in zip((q, k, v), ws, bs, strict=True))

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, None]:
        if not self.batch_first:  # (L, B, E) -> (B, L, E)
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        q, k, v = self._projections(query, key, value)
        b, lq, e = q.shape
        lk, h = k.shape[1], self.num_heads
        q, k, v = (t.reshape(b, -1, h, e // h).transpose(1, 2) for t in (q, k, v))  # (B,H,L,D)
        allowed = torch.ones(b, 1, lq, lk, dtype=torch.bool, device=q.device)
        if attn_mask is not None:  # MHA's masks: bool True / float -inf = not allowed
            am = ~attn_mask if attn_mask.dtype == torch.bool else torch.isfinite(attn_mask)
            allowed = allowed & am.reshape(-1, 1, lq, lk)[:1]
        if key_padding_mask is not None:  # (B, Lk), True = padding
            allowed = allowed & (~key_padding_mask.bool())[:, None, None, :]
        out = linear_attention(q, k, v, allowed, is_causal)  # (B, H, Lq, D)
        out = F.linear(out.transpose(1, 2).reshape(b, lq, e), self.out_proj.weight,
                       self.out_proj.bias)
        return (out if self.batch_first else out.transpose(0, 1)), None


class AffineOnly(nn.Module):
    """LayerNorm without the normalisation: ``x ↦ γ ⊙ x + β`` on the trailing dims."""

    def __init__(self, norm: nn.LayerNorm) -> None:
        super().__init__()
        self.weight = norm.weight
        self.bias = norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is not None:
            x = x * self.weight
        return x + self.bias if self.bias is not None else x


def has_attention_or_layernorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.MultiheadAttention | nn.LayerNorm) for m in model.modules())


def linearise(model: nn.Module, norms: bool = True) -> None:
    """Replace, in place, every ``nn.MultiheadAttention`` by :class:`LinearisedAttention` and
    (``norms``) every ``nn.LayerNorm`` by :class:`AffineOnly` (call it on a copy)."""
    for name, mod in list(model.named_modules()):
        new: nn.Module | None = None
        if isinstance(mod, nn.MultiheadAttention):
            new = LinearisedAttention(mod)
        elif norms and isinstance(mod, nn.LayerNorm):
            new = AffineOnly(mod)
        if new is not None and name:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, new)
