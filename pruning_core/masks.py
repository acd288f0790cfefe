"""Masks kept outside the model.

The model stays a plain ``nn.Module`` with unchanged ``state_dict`` keys. Pruned weights are
zeroed in place and re-zeroed after every optimiser step (one fused ``_foreach_mul_``), which keeps
them exactly zero under momentum and weight decay at ~1.02x the dense step cost, where
``torch.nn.utils.prune``'s forward pre-hooks cost ~1.2x.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from .errors import ConfigError


class MaskSet:
    """``{parameter name: bool mask}`` bound to the parameters of one model."""

    def __init__(self, params: dict[str, nn.Parameter],
                 masks: dict[str, torch.Tensor] | None = None) -> None:
        self.params = params
        if masks is None:
            masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()}
        missing = set(params) - set(masks)
        if missing:
            raise ConfigError(f"masks: no mask for {sorted(missing)}")
        self.masks = {n: masks[n].to(device=p.device, dtype=torch.bool) for n, p in params.items()}
        self._float: list[torch.Tensor] | None = None

    # ---- views -------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[str]:
        return iter(self.masks)

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.masks[name]

    def numel(self) -> int:
        return sum(m.numel() for m in self.masks.values())

    def kept(self) -> int:
        return int(sum(int(m.sum()) for m in self.masks.values()))

    def kept_per_layer(self) -> dict[str, int]:
        counts = torch.stack([m.sum() for m in self.masks.values()]).tolist()  # one host sync
        return dict(zip(self.masks, counts, strict=True))

    def sparsity(self) -> float:
        total = self.numel()
        return 1.0 - self.kept() / total if total else 0.0

    def layer_sparsity(self) -> dict[str, float]:
        return {n: 1.0 - float(m.sum()) / m.numel() for n, m in self.masks.items()}

    def collapsed(self) -> list[str]:
        """Layers with zero kept weights: the network is disconnected there."""
        return [n for n, m in self.masks.items() if not bool(m.any())]

    # ---- updates -----------------------------------------------------------------------------
    def update(self, masks: dict[str, torch.Tensor]) -> None:
        """Replace masks, nesting: a weight pruned before stays pruned."""
        for n, m in masks.items():
            self.masks[n] = self.masks[n] & m.to(self.masks[n].device, torch.bool)
        self._float = None

    def replace(self, masks: dict[str, torch.Tensor]) -> None:
        """Replace masks without nesting (random sparse re-initialisation, loading)."""
        for n, m in masks.items():
            self.masks[n] = m.to(self.masks[n].device, torch.bool)
        self._float = None

    @torch.no_grad()
    def apply(self) -> None:
        """Zero pruned weights in place (call after every optimiser step)."""
        if self._float is None:
            self._float = [m.to(p.dtype) for m, p in zip(self.masks.values(), self.params.values(),
                                                         strict=True)]
        params = [p.data for p in self.params.values()]
        torch._foreach_mul_(params, self._float)

    def rebind(self, params: dict[str, nn.Parameter]) -> MaskSet:
        """The same masks on another model's parameters (e.g. a re-initialised copy)."""
        return MaskSet(params, {n: m.clone() for n, m in self.masks.items()})

    # ---- persistence (no pickle) -------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        save_file({n: m.to("cpu", torch.uint8).contiguous() for n, m in self.masks.items()},
                  str(path), metadata={"format": "prunetune-masks", "version": "1"})

    @classmethod
    def load(cls, path: str | Path, params: dict[str, nn.Parameter]) -> MaskSet:
        from safetensors.torch import load_file

        try:
            raw = load_file(str(path))
        except Exception as exc:  # safetensors raises several types for a bad file
            raise ConfigError(f"masks file {path}: unreadable ({exc})") from None
        for n, p in params.items():
            if n in raw and tuple(raw[n].shape) != tuple(p.shape):
                raise ConfigError(
                    f"masks file {path}: {n} has shape {tuple(raw[n].shape)}, "
                    f"model has {tuple(p.shape)}"
                )
        return cls(params, {n: t.bool() for n, t in raw.items() if n in params})
