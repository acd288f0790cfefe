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

from ..base.errors import ConfigError


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
        if params:  # an empty set (a compact model) has nothing to zero
            torch._foreach_mul_(params, self._float)

    def rebind(self, params: dict[str, nn.Parameter]) -> MaskSet:
        """The same masks on another model's parameters (e.g. a re-initialised copy)."""
        return MaskSet(params, {n: m.clone() for n, m in self.masks.items()})

    # ---- persistence (no pickle) -------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        save_file({n: m.to("cpu", torch.uint8).contiguous() for n, m in self.masks.items()},
                  str(path), metadata={"format": MASKS_FORMAT, "version": str(MASKS_VERSION)})

    @classmethod
    def load(cls, path: str | Path, params: dict[str, nn.Parameter]) -> MaskSet:
        """Masks saved by :meth:`save` (safetensors: never unpickled). A masks file is
        untrusted input: its format/version metadata must be ours, and every value must be
        exactly 0 or 1 (0.5, 7 or NaN are refused, never read as ``True``)."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                raw = {n: f.get_tensor(n) for n in f.keys()}
        except Exception as exc:  # safetensors raises several types for a bad file
            raise ConfigError(f"masks file {path}: unreadable ({_one_line(exc)})") from None
        _check_metadata(path, meta)
        for n, p in params.items():
            if n in raw and tuple(raw[n].shape) != tuple(p.shape):
                raise ConfigError(
                    f"masks file {path}: {n} has shape {tuple(raw[n].shape)}, "
                    f"model has {tuple(p.shape)}"
                )
        missing = sorted(set(params) - set(raw))
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more"
                                              if len(missing) > 5 else "")
            raise ConfigError(
                f"masks file {path}: no mask for {len(missing)} of the model's {len(params)} "
                f"pruned layer(s) ({shown}); the file holds {len(raw)} mask(s): use masks "
                "written for this model and these include patterns")
        masks = {n: _as_bool(path, n, t) for n, t in raw.items() if n in params}
        return cls(params, masks)


MASKS_FORMAT = "prunetune-masks"
MASKS_VERSION = 1


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _check_metadata(path: str | Path, meta: dict[str, str]) -> None:
    fmt, version = meta.get("format"), meta.get("version")
    if fmt != MASKS_FORMAT:
        raise ConfigError(f"masks file {path}: metadata format is {fmt!r}, expected "
                          f"{MASKS_FORMAT!r}; write masks with prunetune (--masks) or "
                          "MaskSet.save")
    if version is None or not version.isdigit() or int(version) < 1:
        raise ConfigError(f"masks file {path}: metadata version {version!r} is not a masks "
                          f"version; expected 1 to {MASKS_VERSION}")
    if int(version) > MASKS_VERSION:
        raise ConfigError(f"masks file {path}: masks version {version} is newer than this "
                          f"prunetune reads (≤ {MASKS_VERSION}); upgrade prunetune")


def _as_bool(path: str | Path, name: str, t: torch.Tensor) -> torch.Tensor:
    """A 0/1 tensor of any dtype -> bool; anything else (0.5, 7, -1, NaN, inf) is refused."""
    if t.dtype == torch.bool:
        return t
    if t.is_complex():
        raise ConfigError(f"masks file {path}: {name} is complex; masks hold only 0 and 1")
    bad = (t != 0) & (t != 1)  # NaN != 0 and NaN != 1: refused too
    if bool(bad.any()):
        value = t[bad].flatten()[0].item()
        raise ConfigError(f"masks file {path}: {name} holds {value!r} ({int(bad.sum())} "
                          "value(s) other than 0 and 1); a mask keeps (1) or prunes (0)")
    return t == 1
