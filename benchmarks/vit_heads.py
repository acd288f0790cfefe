"""Heads against MLP neurons: which nodes each channel criterion removes on a ViT (issue 19).

``granularity: channel`` ranks attention heads and MLP neurons together (one global top-k,
at least one node kept per group). A head owns ``3 d`` rows of q/k/v plus ``d`` out_proj
columns, a neuron one row and one column, so criteria that sum over a node's weights may never
reach the heads. This counts, per criterion and node sparsity, the fraction of heads and of
MLP neurons removed (one shot, ``vit_tiny`` at its defaults: CIFAR shapes, 4 blocks of 4 heads,
width 128, MLP 256; random data, seed 0, CPU).

    PYTHONPATH=. python benchmarks/vit_heads.py [--out benchmarks/results/vit_heads.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.nn import functional as F

from pruning_core.structured import groups, prune_channels
from pruning_core.structured.graph import is_head_group
from pruning_core.structured.iterate import ChannelPruning
from pruning_core.workloads.models import create_model

CRITERIA = ("l1_filter", "l2_filter", "random", "snap", "snip", "synflow")
SPARSITIES = (0.25, 0.5, 0.75)
SHAPE = (3, 32, 32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/vit_heads.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = create_model("vit_tiny", SHAPE, 10)
    gs = groups(model, SHAPE)
    heads = [g for g in gs if is_head_group(g)]
    neurons = [g for g in gs if not is_head_group(g)]
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(32, *SHAPE, generator=gen), torch.randint(0, 10, (32,), generator=gen))]
    rows = []
    print(f"{'criterion':10s} {'sparsity':>8s} {'heads removed':>14s} {'neurons removed':>16s}")
    for crit in CRITERIA:
        for s in SPARSITIES:
            keep = prune_channels(model, gs, ChannelPruning(
                criterion=crit, sparsity=s, batches=batches, input_shape=SHAPE,
                loss_fn=F.cross_entropy))
            h = 1 - sum(int(keep[g.id].sum()) for g in heads) / sum(g.size for g in heads)
            n = 1 - sum(int(keep[g.id].sum()) for g in neurons) / sum(g.size for g in neurons)
            rows.append({"criterion": crit, "node_sparsity": s, "heads_removed": round(h, 4),
                         "neurons_removed": round(n, 4)})
            print(f"{crit:10s} {s:8.2f} {h:14.3f} {n:16.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"model": "vit_tiny", "input_shape": SHAPE,
                                          "heads": sum(g.size for g in heads),
                                          "neurons": sum(g.size for g in neurons),
                                          "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
