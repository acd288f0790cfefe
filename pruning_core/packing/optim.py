"""The optimiser step of K members at once, on stacked ``(K, ...)`` parameters.

Each member keeps its own ``torch.optim`` optimiser (``make_optimizer``): its hyperparameters
(learning rate, weight decay, momentum) and its state are read from it before a packed epoch and
written back after, so checkpoints, ``NewOptimizer`` and everything else stay the solo code's.
The step itself follows torch's single-tensor implementations (``torch/optim/sgd.py``
``_single_tensor_sgd``, ``torch/optim/adam.py`` ``_single_tensor_adam``; AdamW is Adam with
decoupled weight decay), with each scalar taken per member: the same operations in the same
order, so a member's update equals its own optimiser's to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..base.errors import ConfigError

#: the only options ``make_optimizer`` leaves at torch's defaults and this step assumes
_DEFAULTS = {"dampening": 0, "nesterov": False, "maximize": False, "amsgrad": False}


def _per_member(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """``(K, 1, ..., 1)`` float tensor of one scalar per member, broadcasting over ``like``.

    The scalars are rounded to the parameters' dtype, as torch's kernels round a Python
    scalar (``alpha=``, ``value=``) before using it."""
    t = torch.tensor(list(values), dtype=like.dtype, device=like.device)
    return t.view(-1, *([1] * (like.dim() - 1)))


class BatchedOptimizer:
    """SGD (momentum, weight decay), Adam or AdamW over stacked parameters of K members.

    ``optimizers[k]`` is member k's optimiser over ``params_k`` (its model's parameters in
    ``names`` order); ``load`` stacks their state, ``store`` writes it back."""

    def __init__(self, kind: str, optimizers: Sequence[torch.optim.Optimizer],
                 names: Sequence[str]) -> None:
        if kind not in ("sgd", "adam", "adamw"):
            raise ConfigError(f"train.optimizer: {kind!r} cannot be packed; use sgd, adam or "
                              "adamw, or budget.pack: 1")
        self.kind, self.optimizers, self.names = kind, list(optimizers), list(names)
        groups = [opt.param_groups for opt in self.optimizers]
        if any(len(g) != 1 for g in groups):
            raise ConfigError("packing: each member's optimiser must have one parameter group")
        self.groups = [g[0] for g in groups]
        for g in self.groups:
            for key, default in _DEFAULTS.items():
                if g.get(key, default) != default:
                    raise ConfigError(f"packing: optimiser option {key}={g[key]!r} is not "
                                      "supported in a pack; run this config alone")
        self.state: dict[str, dict[str, torch.Tensor]] = {}
        self.steps: list[float] = []
        #: per-member scalars as (K, 1, ..., 1) tensors, made once per shape (the epoch's lr,
        #: weight decay, momentum) or once per step (Adam's bias corrections): one host-to-
        #: device copy per shape, not one per parameter
        self._scalars: dict[tuple[Any, ...], torch.Tensor] = {}

    def _scalar(self, key: str, values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
        k = (key, like.dim(), like.dtype, like.device)
        if k not in self._scalars:
            self._scalars[k] = _per_member(values, like)
        return self._scalars[k]

    # ---- state in and out ------------------------------------------------------------------
    def load(self, params: dict[str, torch.Tensor]) -> None:
        """Stack the members' optimiser state (zeros where a member has none yet)."""
        member_params = [g["params"] for g in self.groups]
        keys = ("momentum_buffer",) if self.kind == "sgd" else ("exp_avg", "exp_avg_sq")
        self.state = {}
        for j, name in enumerate(self.names):
            slots = [self.optimizers[k].state.get(ps[j], {}) for k, ps in enumerate(member_params)]
            self.state[name] = {
                key: torch.stack([s[key].detach() if s.get(key) is not None
                                  else torch.zeros_like(params[name][k])
                                  for k, s in enumerate(slots)])
                for key in keys}
        first = [self.optimizers[k].state.get(ps[0], {}) if ps else {}
                 for k, ps in enumerate(member_params)]
        self.steps = [float(s["step"]) if "step" in s else 0.0 for s in first]

    def store(self, live: Sequence[int] | None = None) -> None:
        """Write the stacked state back into the members' optimisers (those in ``live``)."""
        for k, opt in enumerate(self.optimizers):
            if live is not None and k not in live:
                continue
            params = self.groups[k]["params"]
            momentum = self.groups[k]["momentum"] if self.kind == "sgd" else 0.0
            for j, name in enumerate(self.names):
                st = self.state[name]
                if self.kind == "sgd":
                    if momentum != 0:  # torch keeps no buffer without momentum
                        opt.state[params[j]] = {"momentum_buffer": st["momentum_buffer"][k].clone()}
                else:
                    opt.state[params[j]] = {
                        "step": torch.tensor(self.steps[k], dtype=torch.float32),
                        "exp_avg": st["exp_avg"][k].clone(),
                        "exp_avg_sq": st["exp_avg_sq"][k].clone()}

    # ---- the step --------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor]) -> None:
        if self.kind == "sgd":
            self._sgd(params, grads)
        else:
            self._adam(params, grads)

    def _sgd(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor]) -> None:
        lrs = [-g["lr"] for g in self.groups]
        wds = [g["weight_decay"] for g in self.groups]
        moms = [g["momentum"] for g in self.groups]
        for name in self.names:
            p, grad = params[name], grads[name]
            if any(wds):  # grad.add(param, alpha=wd); + 0 * param for members without decay
                grad = grad + self._scalar("wd", wds, p) * p
            if any(moms):
                buf = self.state[name]["momentum_buffer"]
                # buf.mul_(momentum).add_(grad); a new buffer is the gradient (0 * m + g);
                # a member without momentum gets m = 0, i.e. the gradient itself
                buf.mul_(self._scalar("momentum", moms, p)).add_(grad)
                grad = buf
            p.add_(grad * self._scalar("-lr", lrs, p))

    def _adam(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor]) -> None:
        self.steps = [s + 1.0 for s in self.steps]
        self._scalars = {k: v for k, v in self._scalars.items()
                         if k[0] not in ("step_size", "bc2_sqrt")}  # they change every step
        lrs = [g["lr"] for g in self.groups]
        wds = [g["weight_decay"] for g in self.groups]
        betas = {tuple(g["betas"]) for g in self.groups}
        eps = {g["eps"] for g in self.groups}
        if len(betas) != 1 or len(eps) != 1:
            raise ConfigError("packing: members of a pack share Adam's betas and eps")
        (beta1, beta2), (eps_,) = betas.pop(), eps
        step_sizes = [-lr / (1 - beta1 ** s) for lr, s in zip(lrs, self.steps, strict=True)]
        bc2_sqrt = [(1 - beta2 ** s) ** 0.5 for s in self.steps]
        decay = [1 - lr * wd for lr, wd in zip(lrs, wds, strict=True)]
        for name in self.names:
            p, grad = params[name], grads[name]
            st = self.state[name]
            if any(wds):
                if self.kind == "adamw":  # param.mul_(1 - lr * weight_decay)
                    p.mul_(self._scalar("decay", decay, p))
                else:  # grad.add(param, alpha=weight_decay)
                    grad = grad + self._scalar("wd", wds, p) * p
            st["exp_avg"].lerp_(grad, 1 - beta1)
            st["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (st["exp_avg_sq"].sqrt() / self._scalar("bc2_sqrt", bc2_sqrt, p)).add_(eps_)
            # param.addcdiv_(exp_avg, denom, value=-step_size)
            p.add_(self._scalar("step_size", step_sizes, p) * (st["exp_avg"] / denom))
