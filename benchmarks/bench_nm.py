"""2:4 semi-structured sparsity: dense against ``to_sparse_semi_structured`` latency, on CUDA.

For every weight shape, dtype (float16, bfloat16) and batch (rows of the input, 1 to 4096),
a random weight is 2:4-masked (the 2 largest |w| of every 4 inputs, ``masking.compare``),
converted with ``pruning_core.measure.semistructured.to_semi_structured`` and ``F.linear`` is timed
against the dense masked weight in alternating pairs (``structured/speed.py``'s
``_paired_ms``: warm-up, then the median of per-pair ratios dense / sparse). Shapes:

- the small ViT's linear layers (width 128: 128->384 QKV, 128->128 out_proj, 128->256,
  256->128, 128->512 and 512->128 MLP);
- a 4096 x 4096 weight, where published figures disagree: 0.11x for one vector
  (pytorch#111339), 0.40-0.95x in PyTorch's tutorial on an H100, >1x for many rows.

Without CUDA there is no semi-structured kernel: the script says so, measures nothing and writes
JSON with ``"status": "open"`` (a figure is never estimated).

    python benchmarks/bench_nm.py                       # CUDA: full table (a few minutes)
    python benchmarks/bench_nm.py --quick               # fewer batches and repeats
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pruning_core.masking.compare import n_of_m
from pruning_core.measure.semistructured import NO_KERNEL, to_semi_structured
from pruning_core.structured.speed import _paired_ms

VIT_SHAPES = [(128, 384), (128, 128), (128, 256), (256, 128), (128, 512), (512, 128)]
BIG_SHAPES = [(4096, 4096)]
BATCHES = [1, 8, 64, 256, 1024, 4096]
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
OUT = Path(__file__).parent / "results" / "nm.json"


def two_four(out_f: int, in_f: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    w = torch.randn(out_f, in_f, device=device)
    keep = n_of_m(w.abs(), torch.ones_like(w, dtype=torch.bool), 0, (2, 4))
    return (w * keep).to(dtype)


def measure(in_f: int, out_f: int, batch: int, dtype: torch.dtype, device: torch.device,
            warmup: int, repeats: int) -> dict[str, float | int | str]:
    dense = nn.Linear(in_f, out_f, bias=False).to(device=device, dtype=dtype).eval()
    with torch.no_grad():
        dense.weight.copy_(two_four(out_f, in_f, dtype, device))
    sparse = nn.Linear(in_f, out_f, bias=False).to(device=device, dtype=dtype).eval()
    with torch.no_grad():
        sparse.weight.copy_(dense.weight)
    to_semi_structured(sparse)
    x = torch.randn(batch, in_f, device=device, dtype=dtype)
    with torch.no_grad():
        err = float((sparse(x) - dense(x)).abs().max())

    def run(m: nn.Module):
        def fn() -> object:
            with torch.no_grad():
                return F.linear(x, m.weight)
        return fn

    sparse_ms, dense_ms, ratio = _paired_ms(run(sparse), run(dense), device, warmup, repeats)
    return {"in": in_f, "out": out_f, "batch": batch, "dtype": str(dtype).split(".")[-1],
            "dense_ms": dense_ms, "sparse_ms": sparse_ms, "speedup": ratio,
            "max_abs_diff": err}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    device = torch.device(args.device)
    meta = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "torch": torch.__version__, "python": platform.python_version(),
            "device": str(device), "shapes": VIT_SHAPES + BIG_SHAPES, "batches": BATCHES,
            "dtypes": list(DTYPES)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if device.type != "cuda" or not torch.cuda.is_available():
        reason = NO_KERNEL.format(device=device.type if device.type != "cuda" else "this host")
        print(f"bench_nm needs CUDA: {reason}. Nothing measured; the figures stay open.")
        args.out.write_text(json.dumps({**meta, "status": "open", "reason": reason,
                                        "rows": []}, indent=2))
        print(f"wrote {args.out}")
        return
    meta["gpu"] = torch.cuda.get_device_name(device)
    warmup, repeats = (3, 10) if args.quick else (10, 50)
    batches = [1, 256, 4096] if args.quick else BATCHES
    rows = []
    print(f"{'in':>5} {'out':>5} {'batch':>5} {'dtype':>8} {'dense ms':>9} {'2:4 ms':>9} "
          f"{'speed-up':>8}")
    for name, dtype in DTYPES.items():
        for in_f, out_f in VIT_SHAPES + BIG_SHAPES:
            for b in batches:
                r = measure(in_f, out_f, b, dtype, device, warmup, repeats)
                rows.append(r)
                print(f"{in_f:>5} {out_f:>5} {b:>5} {name:>8} {r['dense_ms']:>9.4f} "
                      f"{r['sparse_ms']:>9.4f} {r['speedup']:>7.2f}x")
    args.out.write_text(json.dumps({**meta, "status": "measured", "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
