"""Layer collapse on a small ViT at 90 % sparsity: every criterion x allocation (issue 19).

torchvision's ``VisionTransformer`` (image 32, patch 4, 4 layers, 4 heads, width 128, MLP 256,
10 classes; its own init, which zeroes the classifier ``heads.head``), random CIFAR-shaped
scoring data (one batch of 8), one-shot pruning to 90 % of the 18 prunable tensors (Q/K/V
``in_proj_weight`` included), every registered criterion at its defaults and every
allocation that needs no per-layer vector (``explicit`` is what a sweep searches). Three
conditions:

- ``zero head pruned``: ``prune.prune_zero_layers: true`` (prunetune before issue 19);
- ``zero head left out``: the default; the all-zero head is left out of pruning;
- ``head drawn``: the head re-drawn N(0, 0.02) before scoring (what scoring after some
  training sees), to separate the head's own collapse from what a zero head does upstream.

Per cell: collapsed layers (zero kept weights), effective sparsity (kept weights on no
input -> output path count as removed: ``pruning_core/effective.py``), and layers whose every
score is 0 (their ranking is arbitrary: ties broken by index).

``--iterative N`` adds SynFlow as its paper uses it (N steps on the exponential schedule,
rescoring the masked network each step) with global allocation, for the last two conditions.

    python benchmarks/transformer_collapse.py                  # ~10 min on 2 shared CPU cores
    python benchmarks/transformer_collapse.py --iterative 100  # + ~7 min
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import torch
import torchvision

from pruning_core.base.errors import ConfigError
from pruning_core.config import AllocationConfig
from pruning_core.masking.engine import Pruner
from pruning_core.masking.masks import MaskSet
from pruning_core.masking.schedules import sparsity_steps
from pruning_core.masking.targets import prunable_parameters
from pruning_core.measure.effective import connectivity
from pruning_core.trials.registries import ALLOCATIONS, CRITERIA

REPO = Path(__file__).resolve().parents[1]
INPUT = (3, 32, 32)
CONDITIONS = ("zero head pruned", "zero head left out", "head drawn")


def vit(seed: int, head_drawn: bool) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = torchvision.models.VisionTransformer(image_size=32, patch_size=4, num_layers=4,
                                             num_heads=4, hidden_dim=128, mlp_dim=256,
                                             num_classes=10)
    if head_drawn:
        with torch.no_grad():
            m.heads.head.weight.normal_(0, 0.02, generator=torch.Generator().manual_seed(seed))
    return m


def cell(criterion: str, allocation: str, condition: str, sparsity: float,
         batches: list[tuple[torch.Tensor, torch.Tensor]], seed: int, steps: int = 1
         ) -> dict[str, Any]:
    model = vit(seed, head_drawn=condition == "head drawn")
    masks = MaskSet(prunable_parameters(model))
    start = time.perf_counter()
    try:
        pruner = Pruner(model, masks, criterion, AllocationConfig(name=allocation), sparsity,
                        batches, INPUT, seed=seed,
                        exclude_zero_layers=condition != "zero head pruned")
        scores = pruner.scores()
        for s in sparsity_steps("exponential" if steps > 1 else "one_shot", sparsity, steps):
            pruner.step(s)
    except ConfigError as exc:  # e.g. lamp refuses GraSP's signed scores
        return {"criterion": criterion, "allocation": allocation, "condition": condition,
                "refused": str(exc)}
    conn = connectivity(model, masks, INPUT)
    return {
        "criterion": criterion, "allocation": allocation, "condition": condition,
        "steps": steps, "sparsity": masks.sparsity(), "collapsed": masks.collapsed(),
        "n_collapsed": len(masks.collapsed()), "excluded": pruner.excluded,
        "effective_sparsity": conn.effective_sparsity,
        "zero_score_layers": [n for n, s in scores.items() if not bool(s.ne(0).any())],
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iterative", type=int, default=0, metavar="N",
                    help="also SynFlow in N exponential steps (global allocation)")
    ap.add_argument("--out", type=Path,
                    default=REPO / "benchmarks" / "results" / "transformer_collapse.json")
    args = ap.parse_args()
    logging.getLogger("pruning_core.masking.engine").setLevel(logging.ERROR)  # the head's warning
    g = torch.Generator().manual_seed(args.seed)
    batches = [(torch.randn(8, *INPUT, generator=g), torch.randint(0, 10, (8,), generator=g))]
    allocations = [a for a in ALLOCATIONS.names() if a != "explicit"]
    rows = [cell(c, a, cond, args.sparsity, batches, args.seed)
            for c in CRITERIA.names() for a in allocations for cond in CONDITIONS]
    print(f"collapsed layers of 18 / effective sparsity, ViT at {args.sparsity:g}")
    print(f"{'criterion':10} {'allocation':10} " + " ".join(f"{c:>22}" for c in CONDITIONS))
    for c in CRITERIA.names():
        for a in allocations:
            cells = []
            for cond in CONDITIONS:
                r = next(r for r in rows if (r["criterion"], r["allocation"], r["condition"])
                         == (c, a, cond))
                cells.append("refused" if "refused" in r else
                             f"{r['n_collapsed']:2d} / {r['effective_sparsity']:.3f}"
                             + (f" z{len(r['zero_score_layers'])}"
                                if r["zero_score_layers"] else ""))
            print(f"{c:10} {a:10} " + " ".join(f"{x:>22}" for x in cells))
    if args.iterative > 1:
        for cond in CONDITIONS[1:]:
            r = cell("synflow", "global", cond, args.sparsity, batches, args.seed,
                     args.iterative)
            rows.append(r)
            print(f"synflow, {args.iterative} exponential steps, global, {cond}: "
                  f"{r['n_collapsed']} collapsed, effective sparsity "
                  f"{r['effective_sparsity']:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "date": dt.date.today().isoformat(), "machine": platform.processor() or
        platform.machine(), "torch": torch.__version__, "sparsity": args.sparsity,
        "seed": args.seed, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
