"""Two small transformers you can train on a CPU: ``vit_tiny`` and ``gpt_tiny``.

The modules and their initialisers live here; ``models.py`` registers the builders (so this file
imports nothing from it). Plain PyTorch: every matrix is an ``nn.Linear`` (or, in the ViT, the
``in_proj_weight`` of an ``nn.MultiheadAttention``, exactly like torchvision's
``VisionTransformer``), norms are ``nn.LayerNorm``.

- :class:`ViTTiny` follows timm's ``vision_transformer.py`` (pre-norm blocks, class token,
  learned position embedding, head on the class token) at CIFAR shapes: patch 4, 4 layers,
  4 heads, width 128, MLP 256 by default. Its head is drawn like every other Linear
  (truncated normal, std 0.02; timm's ``init_weights_vit_timm``), never zeros: a zero head gives
  every |θ|-based score 0 there and the classifier is pruned away first.
- :class:`GPTTiny` follows karpathy/nanoGPT ``model.py`` (token + position embeddings, pre-LN
  blocks, causal self-attention with one ``c_attn`` Linear for Q/K/V, MLP 4x with GELU,
  ``ln_f``, ``lm_head``; init N(0, 0.02), residual projections N(0, 0.02 / sqrt(2 n_layer))).
  Two deliberate differences:

  * logits come out as ``(B, vocab, T)``, not nanoGPT's ``(B, T, vocab)``: with targets
    ``(B, T)`` the engine's ``F.cross_entropy(out, y)`` is then the mean per-token loss and
    ``out.argmax(1) == y`` the per-token accuracy, with no change to the training loop;
  * token ids may arrive as floats: the engine's data-free probes (FLOP counter, SynFlow,
    connectivity) push ``zeros`` / ``ones`` of the input shape; they are read as token ids
    0 / 1 (``x.long()``).

  Weight tying (nanoGPT's default) is **off** by default: tied, ``lm_head.weight`` *is*
  ``wte.weight`` (one Parameter), so pruning the head also zeroes embedding entries, and
  ``named_parameters`` lists the shared tensor once, under ``wte.weight``. ``tie_weights: true``
  builds nanoGPT's tied model for those who want it.
  Attention is computed explicitly (nanoGPT's own fallback path: ``q @ k^T``, causal mask,
  softmax) unless ``sdpa: true``; the explicit path has a double backward everywhere, which
  GraSP needs (the fused CPU kernel has none).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

INIT_STD = 0.02  # nanoGPT's and timm's weight std


# --------------------------------------------------------------------------- ViT


class ViTBlock(nn.Module):
    """Pre-norm encoder block: x + MHA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, width: int, heads: int, mlp: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp, width), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, width)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class ViTTiny(nn.Module):
    """A Vision Transformer for small images: (B, C, H, W) -> (B, num_classes)."""

    def __init__(self, channels: int, image: tuple[int, int], num_classes: int, patch: int,
                 depth: int, heads: int, width: int, mlp: int, dropout: float) -> None:
        super().__init__()
        h, w = image
        self.patch_embed = nn.Conv2d(channels, width, patch, stride=patch)
        tokens = (h // patch) * (w // patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens + 1, width))
        self.blocks = nn.Sequential(*(ViTBlock(width, heads, mlp, dropout) for _ in range(depth)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, width)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed  # (B, N + 1, width)
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])  # (B, num_classes)


def timm_vit_init(model: nn.Module) -> None:
    """timm ``vision_transformer.py`` (``init_weights`` mode '' and ``init_weights_vit_timm``):
    every Linear weight (the head included) and each ``in_proj_weight`` (timm's ``qkv`` Linear)
    truncated normal std 0.02, their biases 0; ``pos_embed`` truncated normal 0.02;
    ``cls_token`` N(0, 1e-6); LayerNorm 1 / 0; the patch Conv2d keeps PyTorch's default."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=INIT_STD)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.MultiheadAttention):
            nn.init.trunc_normal_(m.in_proj_weight, std=INIT_STD)
            nn.init.zeros_(m.in_proj_bias)
        elif isinstance(m, nn.LayerNorm | nn.Conv2d):
            m.reset_parameters()
    if isinstance(model, ViTTiny):
        nn.init.trunc_normal_(model.pos_embed, std=INIT_STD)
        nn.init.normal_(model.cls_token, std=1e-6)


def torch_vit_init(model: nn.Module) -> None:
    """PyTorch's defaults: ``reset_parameters`` everywhere, ``nn.MultiheadAttention``'s own
    ``_reset_parameters`` (xavier uniform in_proj), the same embeddings as the reference."""
    for m in model.modules():
        if isinstance(m, nn.MultiheadAttention):
            m._reset_parameters()
        elif isinstance(m, nn.Linear | nn.LayerNorm | nn.Conv2d):
            m.reset_parameters()
    if isinstance(model, ViTTiny):
        nn.init.trunc_normal_(model.pos_embed, std=INIT_STD)
        nn.init.normal_(model.cls_token, std=1e-6)


# --------------------------------------------------------------------------- GPT


class CausalSelfAttention(nn.Module):
    """nanoGPT's attention: one Linear for Q, K, V of all heads, causal, then ``c_proj``."""

    def __init__(self, width: int, heads: int, dropout: float, sdpa: bool) -> None:
        super().__init__()
        self.c_attn = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)
        self.heads, self.dropout, self.sdpa = heads, dropout, sdpa

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C)
        b, t, c = x.shape
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2)  # (B, nh, T, hs)
                   for z in self.c_attn(x).split(c, dim=2))
        if self.sdpa:
            y = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.shape[-1]))  # (B, nh, T, T)
            causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            att = self.attn_dropout(F.softmax(att.masked_fill(~causal, float("-inf")), dim=-1))
            y = att @ v
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        return self.resid_dropout(self.c_proj(y))


class GPTBlock(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float, sdpa: bool) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, dropout, sdpa)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, 4 * width))
        self.mlp.add_module("gelu", nn.GELU())
        self.mlp.add_module("c_proj", nn.Linear(4 * width, width))
        self.mlp.add_module("dropout", nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPTTiny(nn.Module):
    """A decoder-only LM: token ids (B, T) -> logits (B, vocab, T) (see the module doc)."""

    def __init__(self, vocab: int, block_size: int, n_layer: int, n_head: int, n_embd: int,
                 dropout: float, tie_weights: bool, sdpa: bool) -> None:
        super().__init__()
        self.block_size = block_size
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.h = nn.Sequential(*(GPTBlock(n_embd, n_head, dropout, sdpa)
                                 for _ in range(n_layer)))
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        if tie_weights:
            self.wte.weight = self.lm_head.weight  # one Parameter (nanoGPT's weight tying)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        idx = idx.long()  # float probes (zeros / ones of the input shape) read as token ids
        t = idx.shape[1]
        pos = torch.arange(t, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        x = self.ln_f(self.h(x))
        return self.lm_head(x).transpose(1, 2)  # (B, vocab, T)


def nanogpt_init(model: nn.Module) -> None:
    """nanoGPT ``GPT._init_weights``: Linear and Embedding weights N(0, 0.02), biases 0,
    LayerNorm 1 / 0; then every ``c_proj.weight`` N(0, 0.02 / sqrt(2 n_layer)) (GPT-2's scaled
    residual init)."""
    layers = sum(1 for m in model.modules() if isinstance(m, GPTBlock))
    for m in model.modules():
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=INIT_STD)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            m.reset_parameters()
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            nn.init.normal_(p, mean=0.0, std=INIT_STD / math.sqrt(2 * max(layers, 1)))


def torch_gpt_init(model: nn.Module) -> None:
    """PyTorch's defaults (``reset_parameters``: Embedding N(0, 1), Linear U(±1/sqrt(fan_in)))."""
    for m in model.modules():
        if isinstance(m, nn.Linear | nn.Embedding | nn.LayerNorm):
            m.reset_parameters()
