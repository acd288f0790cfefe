"""Activations of named layers, streamed over batches, and model-vs-model layer similarity.

Forward hooks record each named layer's output; every batch is reduced to a float64
(examples x features) matrix (conv handling: see ``_inputs``) and handed to a per-method
tracker, so memory is bounded: CKA keeps running moments (O(features²) per layer pair, flat in
the number of examples), minibatch CKA keeps three numbers per pair, SVCCA/PWCCA keep at most
``max_examples`` rows per layer (default 2,000).

The model is left as found: activations are taken in eval mode under ``torch.no_grad()``
(BatchNorm uses and keeps its running statistics, dropout is off), every module's own
train/eval flag is restored afterwards and every hook removed, even on error.

A batch is a tensor of inputs, or a tuple/list whose first item is the inputs (what a
``DataLoader`` yields).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from ..base.errors import ConfigError
from ..base.registry import Registry
from ..masking.targets import PRUNABLE_TYPES
from ._inputs import Conv, as_examples
from .cca import pwcca, svcca
from .cka import Moments, batch_hsic, cka_from_moments, debiased_cka, linear_cka

log = logging.getLogger(__name__)

Pair = tuple[str, str]
Acts = dict[str, torch.Tensor]


# ----------------------------------------------------------------------------- the model
@contextmanager
def model_as_found(model: nn.Module) -> Iterator[None]:
    """Eval mode and no autograd inside; every module's training flag restored on exit."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training


def resolve_layers(model: nn.Module, layers: Iterable[str]) -> dict[str, nn.Module]:
    """``{name: module}``; unknown names raise ``ConfigError`` listing the valid ones."""
    modules = dict(model.named_modules())
    modules.pop("", None)
    names = list(dict.fromkeys(layers))
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise ConfigError(
            f"unknown layer(s) {', '.join(map(repr, unknown))} in {type(model).__name__}; "
            f"valid: {', '.join(modules)}"
        )
    if not names:
        raise ConfigError(f"no layers given for {type(model).__name__}")
    return {n: modules[n] for n in names}


def prunable_layers(model: nn.Module) -> list[str]:
    """Names of the Conv/Linear modules (the default layers to compare), in module order."""
    return [n for n, m in model.named_modules() if n and isinstance(m, PRUNABLE_TYPES)]


def default_pairs(model_a: nn.Module, model_b: nn.Module) -> list[Pair]:
    """(name, name) for every Conv/Linear layer of model_a that model_b has under the same
    name, also as Conv/Linear. Logs the pairs and the layers left out."""
    in_b = set(prunable_layers(model_b))
    layers_a = prunable_layers(model_a)
    pairs = [(n, n) for n in layers_a if n in in_b]
    if not pairs:
        raise ConfigError(
            f"the models share no Conv/Linear layer names (A: {', '.join(layers_a) or 'none'}; "
            f"B: {', '.join(sorted(in_b)) or 'none'}); pass pairs=[(layer_a, layer_b), ...]"
        )
    skipped = sorted((set(layers_a) | in_b) - {a for a, _ in pairs})
    log.info("comparing %d layer pairs: %s", len(pairs), ", ".join(a for a, _ in pairs))
    if skipped:
        log.info("layers in only one model, not compared: %s", ", ".join(skipped))
    return pairs


def _device(model: nn.Module) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def _inputs(batch: Any) -> torch.Tensor:
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(x, torch.Tensor):
        raise ConfigError(
            f"a batch must be a tensor or a (inputs, ...) tuple/list; got {type(batch).__name__}"
        )
    return x


@contextmanager
def _hooked(modules: dict[str, nn.Module]) -> Iterator[Acts]:
    """Record each module's output of one forward pass into the yielded dict."""
    store: Acts = {}

    def hook(name: str) -> Callable[..., None]:
        def record(_m: nn.Module, _inputs: Any, output: Any) -> None:
            if not isinstance(output, torch.Tensor):
                raise ConfigError(
                    f"layer {name!r} returned {type(output).__name__}, not a tensor; "
                    f"pick a layer whose output is a tensor"
                )
            if name in store:
                raise ConfigError(
                    f"layer {name!r} ran more than once in one forward pass (a reused module, "
                    f"e.g. one ReLU applied twice); its activations are ambiguous: pick another"
                )
            store[name] = output.detach()

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in modules.items()]
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def _stream(
    models: Sequence[tuple[nn.Module, Sequence[str]]],
    batches: Iterable[Any],
    conv: Conv,
    max_examples: int | None,
    device: torch.device,
) -> Iterator[list[Acts]]:
    """Per batch, one ``{layer: (rows, features) float64 on device}`` per model; stops after
    ``max_examples`` inputs (the last batch trimmed)."""
    if max_examples is not None and max_examples < 1:
        raise ConfigError(f"max_examples must be >= 1; got {max_examples}")
    resolved = [resolve_layers(model, layers) for model, layers in models]
    seen = 0
    with ExitStack() as stack:
        stores = []
        for (model, _), modules in zip(models, resolved, strict=True):
            stack.enter_context(model_as_found(model))
            stores.append(stack.enter_context(_hooked(modules)))
        for batch in batches:
            x = _inputs(batch)
            take = x.shape[0] if max_examples is None else min(x.shape[0], max_examples - seen)
            out = []
            for (model, layers), store in zip(models, stores, strict=True):
                store.clear()
                model(x.to(_device(model)))
                missing = [n for n in layers if n not in store]
                if missing:
                    raise ConfigError(
                        f"layer(s) {', '.join(map(repr, missing))} of {type(model).__name__} did "
                        f"not run in the forward pass"
                    )
                out.append({n: _trim(as_examples(store[n], conv), x.shape[0], take).to(device)
                            for n in layers})
            yield out
            seen += take
            if max_examples is not None and seen >= max_examples:
                return


def _trim(rows: torch.Tensor, batch: int, take: int) -> torch.Tensor:
    """Keep the rows of the first ``take`` inputs (conv='flatten' gives each input a block)."""
    return rows if take == batch else rows[: take * (rows.shape[0] // batch)]


def capture_activations(
    model: nn.Module,
    batches: Iterable[Any],
    layers: Sequence[str],
    max_examples: int | None = 2000,
    *,
    conv: Conv = "pool",
) -> dict[str, torch.Tensor]:
    """``{layer: (examples, features) float64}`` over the first ``max_examples`` inputs
    (``None``: all); the model is left as found. Memory: examples x features per layer."""
    chunks: dict[str, list[torch.Tensor]] = {n: [] for n in dict.fromkeys(layers)}
    # closing(): the hooks go and the model is restored even if the loop body raises
    with closing(_stream([(model, list(chunks))], batches, conv, max_examples,
                         _device(model))) as stream:
        for (acts,) in stream:
            for n, a in acts.items():
                chunks[n].append(a)
    if not any(chunks.values()):
        raise ConfigError("no batches were given")
    return {n: torch.cat(c) for n, c in chunks.items()}


# ----------------------------------------------------------------------------- methods
class Tracker(Protocol):
    """Streams batches of paired activations; ``results()`` gives one similarity per pair."""

    def update(self, acts_a: Acts, acts_b: Acts) -> None: ...

    def results(self) -> dict[Pair, float]: ...


def _check_rows(pair: Pair, xa: torch.Tensor, xb: torch.Tensor) -> None:
    if xa.shape[0] != xb.shape[0]:
        raise ConfigError(
            f"layers {pair[0]!r} and {pair[1]!r} give {xa.shape[0]} and {xb.shape[0]} rows: "
            f"with conv='flatten' paired layers need the same spatial size; use conv='pool'"
        )


class MomentsTracker:
    """Exact (debiased) linear CKA from running moments: self-moments once per layer."""

    def __init__(self, pairs: Sequence[Pair], debiased: bool) -> None:
        self.pairs, self.debiased = list(pairs), debiased
        self.a = {a: Moments() for a, _ in pairs}
        self.b = {b: Moments() for _, b in pairs}
        self.cross = {p: Moments() for p in self.pairs}

    def update(self, acts_a: Acts, acts_b: Acts) -> None:
        for pair in self.pairs:
            _check_rows(pair, acts_a[pair[0]], acts_b[pair[1]])
        for side, acts in ((self.a, acts_a), (self.b, acts_b)):
            for n, m in side.items():
                m.update(acts[n], acts[n])
        for (a, b), m in self.cross.items():
            m.update(acts_a[a], acts_b[b])

    def results(self) -> dict[Pair, float]:
        return {(a, b): cka_from_moments(self.cross[a, b], self.a[a], self.b[b], self.debiased)
                for a, b in self.pairs}


class MinibatchTracker:
    """Minibatch CKA (Nguyen et al. 2021): each batch is a minibatch; batches with fewer than
    4 rows are skipped."""

    def __init__(self, pairs: Sequence[Pair]) -> None:
        self.pairs = list(pairs)
        self.a = dict.fromkeys((a for a, _ in pairs), 0.0)
        self.b = dict.fromkeys((b for _, b in pairs), 0.0)
        self.cross = dict.fromkeys(self.pairs, 0.0)

    def update(self, acts_a: Acts, acts_b: Acts) -> None:
        ca = {n: acts_a[n] - acts_a[n].mean(dim=0) for n in self.a}
        cb = {n: acts_b[n] - acts_b[n].mean(dim=0) for n in self.b}
        for pair in self.pairs:
            _check_rows(pair, ca[pair[0]], cb[pair[1]])
        if min(t.shape[0] for t in (*ca.values(), *cb.values())) < 4:
            log.debug("minibatch CKA: skipped a batch of fewer than 4 rows")
            return
        for pair in self.pairs:
            self.cross[pair] += batch_hsic(ca[pair[0]], cb[pair[1]])
        for side, c in ((self.a, ca), (self.b, cb)):
            for n in side:
                side[n] += batch_hsic(c[n], c[n])

    def results(self) -> dict[Pair, float]:
        out = {}
        for a, b in self.pairs:
            den = self.a[a] * self.b[b]
            out[a, b] = self.cross[a, b] / den**0.5 if den > 0 else float("nan")
        return out


class CaptureTracker:
    """Keeps every row (callers cap them with ``max_examples``), then applies ``fn`` per pair."""

    def __init__(self, pairs: Sequence[Pair], fn: Callable[[torch.Tensor, torch.Tensor], float]
                 ) -> None:
        self.pairs, self.fn = list(pairs), fn
        self.a: dict[str, list[torch.Tensor]] = {a: [] for a, _ in pairs}
        self.b: dict[str, list[torch.Tensor]] = {b: [] for _, b in pairs}

    def update(self, acts_a: Acts, acts_b: Acts) -> None:
        for n, chunks in self.a.items():
            chunks.append(acts_a[n])
        for n, chunks in self.b.items():
            chunks.append(acts_b[n])

    def results(self) -> dict[Pair, float]:
        a = {n: torch.cat(c) for n, c in self.a.items()}
        b = {n: torch.cat(c) for n, c in self.b.items()}
        for pair in self.pairs:
            _check_rows(pair, a[pair[0]], b[pair[1]])
        return {(x, y): self.fn(a[x], b[y]) for x, y in self.pairs}


@dataclass(frozen=True)
class Method:
    """A similarity method: in-memory ``fn(x, y)``, its streaming tracker, and how many input
    examples it reads by default (``None``: every batch)."""

    fn: Callable[[torch.Tensor, torch.Tensor], float]
    tracker: Callable[[Sequence[Pair]], Tracker]
    max_examples: int | None


def _capture(fn: Callable[[torch.Tensor, torch.Tensor], float]
             ) -> Callable[[Sequence[Pair]], Tracker]:
    return lambda pairs: CaptureTracker(pairs, fn)


#: Larger is more similar for every method; 1.0 for identical representations.
METHODS: Registry[Method] = Registry("similarity method")
METHODS.add("cka", Method(linear_cka, lambda p: MomentsTracker(p, debiased=False), None))
METHODS.add("debiased_cka", Method(debiased_cka, lambda p: MomentsTracker(p, debiased=True), None))
METHODS.add("minibatch_cka", Method(debiased_cka, MinibatchTracker, None))
METHODS.add("svcca", Method(svcca, _capture(svcca), 2000))
METHODS.add("pwcca", Method(pwcca, _capture(pwcca), 2000))


# ----------------------------------------------------------------------------- comparisons
def _run(
    model_a: nn.Module,
    model_b: nn.Module,
    batches: Iterable[Any],
    pairs: Sequence[Pair],
    method: str,
    conv: Conv,
    max_examples: int | None,
) -> dict[Pair, float]:
    spec = METHODS.get(method)
    limit = spec.max_examples if max_examples is None else max_examples
    tracker = spec.tracker(pairs)
    layers_a = list(dict.fromkeys(a for a, _ in pairs))
    layers_b = list(dict.fromkeys(b for _, b in pairs))
    same = model_b is model_a  # one forward per batch serves both sides
    models = ([(model_a, list(dict.fromkeys(layers_a + layers_b)))] if same
              else [(model_a, layers_a), (model_b, layers_b)])
    seen = False
    # closing(): the hooks go and the models are restored even if a tracker raises
    with closing(_stream(models, batches, conv, limit, _device(model_a))) as stream:
        for acts in stream:
            tracker.update(acts[0], acts[0] if same else acts[1])
            seen = True
    if not seen:
        raise ConfigError("no batches were given")
    return tracker.results()


def _as_pairs(pairs: Sequence[Sequence[str]]) -> list[Pair]:
    out = []
    for p in pairs:
        if isinstance(p, str) or len(p) != 2 or not all(isinstance(n, str) for n in p):
            raise ConfigError(f"pairs: each item must be (layer_a, layer_b); got {p!r}")
        out.append((p[0], p[1]))
    if not out:
        raise ConfigError("pairs: empty; pass at least one (layer_a, layer_b) or None")
    return out


def compare_models(
    model_a: nn.Module,
    model_b: nn.Module,
    batches: Iterable[Any],
    method: str = "cka",
    pairs: Sequence[Pair] | None = None,
    *,
    conv: Conv = "pool",
    max_examples: int | None = None,
) -> dict[Pair, float]:
    """Similarity of model_a's and model_b's layers on the same inputs, one number per pair.

    ``pairs``: [(layer_a, layer_b), ...]; default :func:`default_pairs` (Conv/Linear layers with
    the same name in both; logged). ``method``: a name in :data:`METHODS` (``cka``,
    ``debiased_cka``, ``minibatch_cka``, ``svcca``, ``pwcca``). ``max_examples``: inputs read
    (``None``: the method's default, 2,000 for SVCCA/PWCCA, every batch for CKA). ``batches``
    is iterated once; both models see each batch. Returns ``{(layer_a, layer_b): similarity}``
    in the order of ``pairs``.
    """
    pairs = default_pairs(model_a, model_b) if pairs is None else _as_pairs(pairs)
    return _run(model_a, model_b, batches, pairs, method, conv, max_examples)


def similarity_matrix(
    model_a: nn.Module,
    model_b: nn.Module,
    batches: Iterable[Any],
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    method: str = "cka",
    *,
    conv: Conv = "pool",
    max_examples: int | None = None,
) -> torch.Tensor:
    """(len(layers_a), len(layers_b)) float64 matrix of similarities, rows = model_a's layers
    (default: their Conv/Linear layers, in module order), for heatmaps. One pass over
    ``batches``; per-layer statistics are shared across the row/column."""
    la = prunable_layers(model_a) if layers_a is None else list(layers_a)
    lb = prunable_layers(model_b) if layers_b is None else list(layers_b)
    res = _run(model_a, model_b, batches, [(a, b) for a in la for b in lb], method, conv,
               max_examples)
    return torch.tensor([[res[a, b] for b in lb] for a in la], dtype=torch.float64)
