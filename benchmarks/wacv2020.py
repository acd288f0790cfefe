"""Tables for the WACV 2020 study ("Is Pruning Compression?") from a finished sweep.

    prunetune sweep search_spaces/wacv2020_mnist1d.yaml
    python benchmarks/wacv2020.py results/wacv2020_mnist1d      # markdown tables on stdout

Reads the sweep's Parquet rows (`sweeps.results.pareto.load_results`): test accuracy and mean layer
similarity to the dense network (linear CKA) per method x sparsity (mean ± std over seeds), the
per-layer similarity, and the dense network's own accuracy. Writes
``benchmarks/results/<name of the first results directory>.json`` (``wacv2020_mnist1d.json``,
``wacv2020_digits.json``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sweeps.results.pareto import load_results

METHODS = {"none": "magnitude pruning (train, prune, fine-tune)",
           "reinit": "post-pruning re-initialisation",
           "random_sparse": "random sparse initialisation"}
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _ms(values) -> str:
    v = [float(x) for x in values]
    mean = sum(v) / len(v)
    std = (sum((x - mean) ** 2 for x in v) / (len(v) - 1)) ** 0.5 if len(v) > 1 else 0.0
    return f"{mean:.3f} ± {std:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+")
    args = ap.parse_args()
    df = load_results(args.results)
    df = df[df["status"] == "ok"]
    layers = sorted(c for c in df.columns if c.startswith("similarity.") and c != "similarity_mean")
    sparsities = sorted(df["config.prune.sparsity"].unique())
    out: dict[str, object] = {"trials": len(df), "rows": []}
    print(f"{len(df)} finished trials; per-trial compute {df['duration_s'].sum():.0f} s "
          f"(sum of trial durations)\n")
    for metric, label in (("test_accuracy", "test accuracy"),
                          ("similarity_mean", "mean layer similarity to dense (CKA)")):
        print(f"### {label}\n")
        print("| method | " + " | ".join(f"s = {s}" for s in sparsities) + " |")
        print("|---|" + "---|" * len(sparsities))
        for variant, name in METHODS.items():
            cells = []
            for s in sparsities:
                sel = df[(df["config.prune.variant"] == variant) &
                         (df["config.prune.sparsity"] == s)]
                cells.append(_ms(sel[metric]) if len(sel) else "")
                out["rows"].append({"variant": variant, "sparsity": s, "metric": metric,
                                    "values": sel[metric].tolist()})
            print(f"| {name} | " + " | ".join(cells) + " |")
        print()
    print("### per-layer similarity to dense (CKA), mean over seeds\n")
    print("| method | s | " + " | ".join(c.removeprefix("similarity.") for c in layers) + " |")
    print("|---|---|" + "---|" * len(layers))
    for variant in METHODS:
        for s in sparsities:
            sel = df[(df["config.prune.variant"] == variant) & (df["config.prune.sparsity"] == s)]
            cells = [f"{sel[c].mean():.3f}" for c in layers]
            print(f"| {variant} | {s} | " + " | ".join(cells) + " |")
    RESULTS_DIR.mkdir(exist_ok=True)
    name = Path(args.results[0].rstrip("/")).name or "wacv2020"
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
