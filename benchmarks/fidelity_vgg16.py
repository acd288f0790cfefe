"""Fidelity check on VGG-16-BN at CIFAR-100 shapes: layer collapse under each scoring choice.

Reproduces the measurements behind issue 7 with the engine as it is now, in one run:

a. SNIP, one-shot global pruning at initialisation, 4 scoring batches of 128 random 3×32×32
   inputs with random labels (100 classes): empty prunable layers at each sparsity for
   ``mode`` train/eval × ``estimator`` per_batch/accumulated, and the overlap of the kept sets
   of the two estimators in eval mode.
b. Global magnitude pruning at initialisation with the model's ``init: reference`` (kaiming
   normal fan_in on every conv and linear weight) and ``init: torch`` (PyTorch defaults): the
   sparsity at which the first layer empties, found by bisection.

    python benchmarks/fidelity_vgg16.py            # ~2 min on 2 cores
    python benchmarks/fidelity_vgg16.py --seeds 0 1 2

Prints markdown tables and writes ``benchmarks/results/fidelity_vgg16.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
from pathlib import Path
from typing import Any

import torch

from pruning_core.config import AllocationConfig
from pruning_core.masking.engine import Pruner
from pruning_core.masking.masks import MaskSet
from pruning_core.masking.targets import prunable_parameters
from pruning_core.workloads.models import create_model

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SHAPE, CLASSES = (3, 32, 32), 100
SPARSITIES = [0.99, 0.995, 0.997, 0.999]


def _model(seed: int, init: str) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("vgg16_bn", SHAPE, CLASSES, init=init)


def _batches(seed: int, n: int = 4, size: int = 128) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed + 1000)
    return [(torch.randn(size, *SHAPE, generator=g),
             torch.randint(0, CLASSES, (size,), generator=g)) for _ in range(n)]


def _prune(model: torch.nn.Module, criterion: str, sparsity: float, batches: list,
           options: dict[str, Any] | None = None) -> MaskSet:
    masks = MaskSet(prunable_parameters(model))
    pruner = Pruner(model=model, masks=masks, criterion=criterion,
                    allocation=AllocationConfig(name="global"), final_sparsity=sparsity,
                    batches=batches, input_shape=SHAPE, criterion_options=options or {})
    pruner.step(sparsity)
    return masks


def snip_collapse(seed: int) -> dict[str, Any]:
    batches = _batches(seed)
    out: dict[str, Any] = {}
    kept: dict[str, dict[float, torch.Tensor]] = {}
    for mode in ("train", "eval"):
        for estimator in ("per_batch", "accumulated"):
            label = f"{mode}/{estimator}"
            model = _model(seed, "reference")
            pruner = Pruner(model=model, masks=MaskSet(prunable_parameters(model)),
                            criterion="snip", allocation=AllocationConfig(name="global"),
                            final_sparsity=0.999, batches=batches, input_shape=SHAPE,
                            criterion_options={"mode": mode, "estimator": estimator})
            scores = pruner.scores()  # score once, select at every sparsity
            row = {}
            for s in SPARSITIES:
                masks = MaskSet(prunable_parameters(model))
                p = Pruner(model=model, masks=masks, criterion="magnitude",
                           allocation=AllocationConfig(name="global"), final_sparsity=s,
                           batches=[], input_shape=SHAPE)
                p.scores = lambda scores=scores: scores  # the SNIP scores, selected globally
                p.step(s)
                row[s] = len(masks.collapsed())
                kept.setdefault(label, {})[s] = torch.cat(
                    [m.flatten() for m in masks.masks.values()])
            out[label] = row
    overlap = {}
    for s in SPARSITIES:
        a, b = kept["eval/per_batch"][s], kept["eval/accumulated"][s]
        overlap[s] = float((a & b).sum()) / max(int(b.sum()), 1)
    out["overlap_eval_per_batch_vs_accumulated"] = overlap
    return out


def magnitude_first_collapse(seed: int, init: str) -> dict[str, Any]:
    model = _model(seed, init)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    lo, hi = 0.5, 0.9999
    first_layer = None
    for _ in range(18):  # bisection on the first sparsity with an empty layer
        mid = (lo + hi) / 2
        model.load_state_dict(state)  # a step zeroes the pruned weights: start dense each time
        masks = _prune(model, "magnitude", mid, [])
        if masks.collapsed():
            hi, first_layer = mid, masks.collapsed()[0]
        else:
            lo = mid
    return {"first_collapse_sparsity": hi, "first_collapsed_layer": first_layer}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    torch.set_num_threads(2)
    results: dict[str, Any] = {"date": dt.date.today().isoformat(), "host": platform.processor()
                               or platform.machine(), "torch": torch.__version__, "seeds": {}}
    for seed in args.seeds:
        snip = snip_collapse(seed)
        mag = {init: magnitude_first_collapse(seed, init) for init in ("reference", "torch")}
        results["seeds"][seed] = {"snip": snip, "magnitude": mag}
        print(f"\n### seed {seed}: SNIP, empty prunable layers (of 14) at sparsity\n")
        print("| mode / estimator | " + " | ".join(f"{s}" for s in SPARSITIES) + " |")
        print("|---|" + "---|" * len(SPARSITIES))
        for label in ("train/per_batch", "train/accumulated", "eval/per_batch",
                      "eval/accumulated"):
            print(f"| {label} | " + " | ".join(str(snip[label][s]) for s in SPARSITIES) + " |")
        ov = snip["overlap_eval_per_batch_vs_accumulated"]
        print("\nkept-set overlap, eval mode, per_batch vs accumulated: "
              + ", ".join(f"{s}: {ov[s]:.3f}" for s in SPARSITIES))
        print("\nglobal magnitude at init, first empty layer: "
              + "; ".join(f"{init}: {m['first_collapse_sparsity']:.4f} "
                          f"({m['first_collapsed_layer']})" for init, m in mag.items()))
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "fidelity_vgg16.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
