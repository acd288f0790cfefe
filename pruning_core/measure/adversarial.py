"""Adversarial accuracy of a trained network on a fixed, seeded subset of its test set.

Attacks (``metrics.adversarial.attack``), all through foolbox 3.3.4 (Rauber et al. 2017/2020;
``docs/robustness.md`` says why this library):

- ``fgsm``: one signed-gradient step of size ε (Goodfellow et al. 2015); with ``norm: l2``
  the L2 fast gradient method (one step of size ε along the normalised gradient).
- ``pgd``: projected gradient descent from a random start in the ε-ball (Madry et al. 2018),
  ``steps`` steps of ``step_size``. Defaults follow HYDRA (Sehwag et al. 2020,
  github.com/inspire-group/hydra ``configs/configs.yml`` and ``utils/adv.py::pgd_whitebox``):
  ε = 8/255 (their 0.031), 10 steps of ε/4 (their 0.0078), uniform random start, L∞.
- ``carlini_wagner``: Carlini & Wagner's L2 attack (2017) exactly as SNIP-it evaluates its
  networks (Verdenius et al. 2020, github.com/StijnVerdenius/SNIP-it
  ``models/testers/AdversarialEvaluation.py``: foolbox's ``L2CarliniWagnerAttack()`` at its
  defaults: 9 binary-search steps over the constant from 1e-3, 10,000 Adam steps of 0.01,
  confidence 0, early abort). It finds the smallest L2 perturbation that flips each example;
  an example counts as robust when that perturbation is larger than ε (always L2).

Units. The attack works on ``u = (x - lo) / (hi - lo)`` in [0, 1]: the model's normalised input
``x`` mapped back onto its valid box ``[lo, hi]`` (``input_bounds``; per channel where the
dataset normalises per channel). ε, the step size and the L2 norms are therefore in units of
the valid range: pixel units ([0, 1] images) for normalised image data, the scale in which
HYDRA's 8/255 is stated, whatever mean/std the model sees. Every example the attack makes lies
in ``[lo, hi]``.

Robust accuracy counts an example as correct only when the clean input and every point the
attack evaluated are classified correctly: for PGD each iterate, not only the last (so more
steps can never raise it), and never more than the clean accuracy.

The model is attacked in eval mode with its parameters' ``requires_grad`` switched off; both,
and the RNG of the caller, are restored afterwards; no hook or gradient is left on the model.
"""

from __future__ import annotations

import functools
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from ..base.errors import ConfigError
from ..config import AdversarialConfig

log = logging.getLogger(__name__)

#: L∞ budget in pixel units: HYDRA's ``epsilon: 0.031`` (configs/configs.yml), i.e. 8/255
LINF_EPS = 8 / 255
#: L2 budget in pixel units: the CIFAR-10 L2 threat model of RobustBench (Croce et al. 2021)
L2_EPS = 0.5
#: PGD steps and step size relative to ε: HYDRA's ``num_steps: 10``, ``step_size: 0.0078``
PGD_STEPS = 10
PGD_STEP_FRACTION = 0.25
#: foolbox 3's ``L2CarliniWagnerAttack`` defaults, which SNIP-it's evaluation runs unchanged
CW_STEPS = 10_000
CW_STEPSIZE = 1e-2
CW_BINARY_SEARCH_STEPS = 9
CW_INITIAL_CONST = 1e-3
CW_CONFIDENCE = 0.0

#: a lower or upper input bound: one number, or one per channel (axis 1 of a batch)
Bound = float | tuple[float, ...]


@dataclass
class AdversarialResult:
    adv_accuracy: float  # accuracy on the attacked subset
    clean_accuracy: float  # accuracy on the same subset without attack
    samples: int
    time_s: float
    settings: dict[str, float | int | str]  # attack, eps, steps, step_size, norm, samples, library


@dataclass(frozen=True)
class AttackSettings:
    """An attack with every default resolved (what the record stores)."""

    attack: str
    norm: str
    eps: float
    steps: int
    step_size: float

    def as_dict(self, samples: int) -> dict[str, float | int | str]:
        out: dict[str, float | int | str] = {**asdict(self), "samples": samples,
                                             "library": library()}
        if self.attack == "carlini_wagner":
            out.update(binary_search_steps=CW_BINARY_SEARCH_STEPS,
                       initial_const=CW_INITIAL_CONST, confidence=CW_CONFIDENCE)
        return out


def resolve(cfg: AdversarialConfig) -> AttackSettings:
    """Fill ``cfg``'s unset fields with the defaults of its attack (module docstring)."""
    norm = "l2" if cfg.attack == "carlini_wagner" else cfg.norm
    if cfg.attack == "carlini_wagner" and cfg.norm != "l2":
        log.debug("carlini_wagner is an L2 attack; norm %s ignored", cfg.norm)
    eps = cfg.eps if cfg.eps is not None else (LINF_EPS if norm == "linf" else L2_EPS)
    if cfg.attack == "fgsm":
        steps, step_size = 1, eps
    elif cfg.attack == "pgd":
        steps = cfg.steps if cfg.steps is not None else PGD_STEPS
        step_size = cfg.step_size if cfg.step_size is not None else PGD_STEP_FRACTION * eps
    else:
        steps = cfg.steps if cfg.steps is not None else CW_STEPS
        step_size = cfg.step_size if cfg.step_size is not None else CW_STEPSIZE
    return AttackSettings(cfg.attack, norm, float(eps), int(steps), float(step_size))


# --------------------------------------------------------------------------- foolbox


@functools.cache
def _foolbox() -> Any:
    """foolbox, imported on first use (its ``attacks.blur`` imports a deprecated scipy path)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import foolbox
    return foolbox


def library() -> str:
    return f"foolbox {_foolbox().__version__}"


class _Tracker:
    """Per example: whether any input the attack evaluated was misclassified."""

    def __init__(self, labels: torch.Tensor) -> None:
        self.labels = labels
        self.broken = torch.zeros_like(labels, dtype=torch.bool)

    def see(self, logits: torch.Tensor) -> None:
        self.broken |= logits.argmax(-1) != self.labels


@functools.cache
def _tracking_attacks() -> dict[tuple[str, str], type]:
    """foolbox's gradient attacks, their loss function (foolbox's documented override point,
    ``BaseGradientDescent.get_loss_fn``) also telling a ``_Tracker`` each iterate it sees."""
    fb = _foolbox()
    import eagerpy as ep

    class Tracking:
        tracker: _Tracker | None = None

        def get_loss_fn(self, model: Any, labels: Any) -> Callable[[Any], Any]:
            def loss_fn(inputs: Any) -> Any:
                logits = model(inputs)
                if self.tracker is not None:
                    self.tracker.see(logits.raw.detach())
                return ep.crossentropy(logits, labels).sum()

            return loss_fn

    a = fb.attacks
    bases = {("fgsm", "linf"): a.LinfFastGradientAttack, ("fgsm", "l2"): a.L2FastGradientAttack,
             ("pgd", "linf"): a.LinfProjectedGradientDescentAttack,
             ("pgd", "l2"): a.L2ProjectedGradientDescentAttack}
    return {k: type(f"Tracking{b.__name__}", (Tracking, b), {}) for k, b in bases.items()}


def _make_attack(s: AttackSettings) -> Any:
    if s.attack == "carlini_wagner":
        return _foolbox().attacks.L2CarliniWagnerAttack(
            binary_search_steps=CW_BINARY_SEARCH_STEPS, steps=s.steps, stepsize=s.step_size,
            confidence=CW_CONFIDENCE, initial_const=CW_INITIAL_CONST, abort_early=True)
    cls = _tracking_attacks()[(s.attack, s.norm)]
    if s.attack == "fgsm":
        return cls(random_start=False)
    return cls(steps=s.steps, abs_stepsize=s.step_size, random_start=True)


# --------------------------------------------------------------------------- bounds


def input_bounds(dataset: Dataset, name: str | None = None, **options: Any) -> tuple[Bound, Bound]:
    """The valid input range in the model's (normalised) input space.

    Built-in image datasets (``pruning_core/data.py``): pixels in [0, 1], standardised with the
    dataset's mean and std, so ``((0 - mean) / std, (1 - mean) / std)``; per channel (tuples)
    for CIFAR and image folders (``normalize: false`` gives (0, 1)). ``digits`` is [0, 1]
    unnormalised. Anything else (``mnist1d``'s synthetic signals, ``synthetic``, a user's data,
    or no ``name``): the min and max over the dataset's inputs, as SNIP-it bounds its attack by
    the min and max of the attacked batch. ``options`` are the dataset's options
    (``data.options``), as for ``data.black_pixel``.
    """
    from ..workloads.data import CIFAR_STATS, IMAGENET_STATS, MNIST_STATS

    normalize = bool(options.get("normalize", True))
    stats: dict[str, tuple[Sequence[float], Sequence[float]]] = {
        **CIFAR_STATS, "imagefolder": IMAGENET_STATS,
        **{k: ((m,), (s,)) for k, (m, s) in MNIST_STATS.items()}}
    if name == "digits" or (name in stats and not normalize):
        return 0.0, 1.0
    if name in stats:
        mean, std = stats[name]
        lo = tuple(-m / s for m, s in zip(mean, std, strict=True))
        hi = tuple((1 - m) / s for m, s in zip(mean, std, strict=True))
        return (lo[0], hi[0]) if len(lo) == 1 else (lo, hi)
    return _data_range(dataset)


def _data_range(dataset: Dataset) -> tuple[float, float]:
    if isinstance(dataset, TensorDataset):
        x = dataset.tensors[0]
        return float(x.min()), float(x.max())
    lo, hi = float("inf"), float("-inf")
    for i in range(len(dataset)):  # type: ignore[arg-type]
        x = torch.as_tensor(dataset[i][0])
        lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
    return lo, hi


def _box(bounds: tuple[Bound, Bound], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, hi) as tensors that broadcast against the batch ``x`` (channel axis 1)."""
    lo, hi = (torch.as_tensor(b, dtype=x.dtype, device=x.device) for b in bounds)
    if lo.ndim == 1 and x.ndim >= 2:  # per channel
        shape = (1, -1) + (1,) * (x.ndim - 2)
        lo, hi = lo.view(shape), hi.view(shape)
    if bool((hi <= lo).any()):
        raise ConfigError(f"adversarial: input bounds need lower < upper; got {bounds}")
    return lo, hi


# --------------------------------------------------------------------------- the model


@contextmanager
def frozen_eval(model: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients for the duration; each module's mode and each
    parameter's ``requires_grad`` are put back afterwards (gradients of a frozen parameter
    are never accumulated, so ``.grad`` stays as it was)."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, training in modes:
            m.train(training)


def attack_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: AttackSettings,
                 bounds: tuple[Bound, Bound]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Attack one batch on ``x``'s device: ``(x_adv, clean_correct, robust)``.

    ``x_adv``: the attack's examples in the model's input space, inside ``bounds`` (PGD's last
    iterate; Carlini-Wagner's smallest adversarial perturbation, cut to length ε). ``robust``:
    the clean input and every point the attack evaluated are classified correctly. Uses the
    current torch RNG (PGD's random start).
    """
    fb = _foolbox()
    lo, hi = _box(bounds, x)
    scale = hi - lo
    u = (x - lo) / scale
    if bool(((u < -1e-4) | (u > 1 + 1e-4)).any()):
        log.warning("adversarial: inputs outside the bounds %s clamped into them", bounds)
    u0 = u.clamp(0.0, 1.0)
    tracker = _Tracker(y)
    with frozen_eval(model):
        wrapped = _Affine(model, lo, scale).eval()
        fmodel = fb.PyTorchModel(wrapped, bounds=(0.0, 1.0), device=x.device)
        with torch.no_grad():
            clean = fmodel(u0).argmax(-1) == y
        attack = _make_attack(settings)
        attack.tracker = tracker  # read by the PGD / FGSM loss; Carlini-Wagner has none
        _, u_adv, success = attack(fmodel, u0, fb.criteria.Misclassification(y),
                                   epsilons=settings.eps)
    x_adv = torch.minimum(torch.maximum(lo + scale * u_adv, lo), hi)  # rounding of lo + scale
    return x_adv.detach(), clean, clean & ~success & ~tracker.broken


class _Affine(nn.Module):
    """``model(lo + scale * u)``: the model seen from the unit box the attack works in."""

    def __init__(self, model: nn.Module, lo: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.model, self.lo, self.scale = model, lo, scale

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.model(self.lo + self.scale * u)


# --------------------------------------------------------------------------- entry point


def _on(actual: torch.device, wanted: torch.device) -> bool:
    """``actual`` is ``wanted`` (``cuda`` without an index: any CUDA device)."""
    return actual.type == wanted.type and wanted.index in (None, actual.index)


def _seed(seed: int, device: torch.device) -> None:
    """Seed the generators PGD's random start draws from: the CPU's and ``device``'s only
    (``torch.manual_seed`` would reseed every GPU, and ``fork_rng`` restores just these)."""
    torch.random.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)


def seeded_subset(dataset: Dataset, samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``samples`` examples of a permutation drawn from
    ``torch.Generator().manual_seed(seed)``: the same for every trial with this seed, whatever
    its masks. All examples if ``samples`` >= the dataset's size."""
    n = len(dataset)  # type: ignore[arg-type]
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: min(samples, n)]
    if isinstance(dataset, TensorDataset):
        x, y = dataset.tensors[0][idx], dataset.tensors[1][idx]
    else:
        pairs = [dataset[int(i)] for i in idx]
        x = torch.stack([torch.as_tensor(p[0]) for p in pairs])
        y = torch.as_tensor([int(p[1]) for p in pairs])
    return x.float(), y.long()


def adversarial_accuracy(model: nn.Module, dataset: Dataset, cfg: AdversarialConfig, *,
                         seed: int, device: torch.device, batch_size: int = 256,
                         bounds: tuple[Bound, Bound] | None = None) -> AdversarialResult:
    """Clean and robust accuracy of ``model`` on ``cfg.samples`` seeded test examples.

    ``bounds``: the valid input range (``input_bounds(dataset, data.name, **data.options)``);
    None takes the min and max of the dataset's inputs. The model must already be on
    ``device``. PGD's random start is drawn from a generator seeded by ``seed`` (the caller's
    RNG state is restored), so a repeat gives the same figures.
    """
    t0 = time.perf_counter()
    elsewhere = {str(p.device) for p in model.parameters() if not _on(p.device, device)}
    if elsewhere:  # foolbox would move the model; the caller's model stays where it is
        raise ValueError(f"adversarial: the model has parameters on {sorted(elsewhere)}, "
                         f"not on {device}; move it there first")
    s = resolve(cfg)
    bounds = input_bounds(dataset) if bounds is None else bounds
    x_all, y_all = seeded_subset(dataset, cfg.samples, seed)
    clean = robust = 0
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), frozen_eval(model):
        _seed(seed, device)
        for i in range(0, len(y_all), batch_size):
            x = x_all[i:i + batch_size].to(device)
            y = y_all[i:i + batch_size].to(device)
            _, c, r = attack_batch(model, x, y, s, bounds)
            clean, robust = clean + int(c.sum()), robust + int(r.sum())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    n = len(y_all)
    result = AdversarialResult(adv_accuracy=robust / n, clean_accuracy=clean / n, samples=n,
                               time_s=time.perf_counter() - t0, settings=s.as_dict(n))
    log.info("adversarial %s: accuracy %.4f clean, %.4f attacked (%d examples, %.1f s)",
             s.attack, result.clean_accuracy, result.adv_accuracy, n, result.time_s)
    return result
