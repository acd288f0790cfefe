"""Training-epoch speed: our device-resident loader + batched augmentation vs a torchvision
DataLoader loop, and a masked epoch vs a dense one, measured in one run.

Both loops train the same ResNet-20 (CIFAR form) with SGD (momentum 0.9, weight decay 5e-4) on
CIFAR-shaped synthetic data (uint8 32×32×3 images, 10 classes) with the standard CIFAR recipe
(random crop 32 with 4-pixel padding, horizontal flip, per-channel normalisation):

- ``torchvision``: a ``Dataset`` of uint8 HWC images with ``transforms.v2`` (ToImage,
  RandomCrop(32, padding=4), RandomHorizontalFlip, ToDtype, Normalize) per example, a
  ``DataLoader`` with ``--workers`` worker processes (pinned memory on CUDA);
- ``ours``: the normalised split held on the device, ``pruning_core.workloads.loader.DeviceLoader``
with
  ``pruning_core.workloads.augment.CropFlip`` (the same recipe, batched);
- ``ours, masked``: the same with masks at sparsity 0.9 (global magnitude) enforced after every
  optimiser step (``MaskSet.apply``), as every prunetune trial trains.

Variants run interleaved (rotating order) and are summarised by medians of per-repetition
ratios, so load on a shared machine hits them alike.

    python benchmarks/bench_train.py --device cpu                  # ~3 min on 2 cores
    python benchmarks/bench_train.py --device cuda --examples 50000 --batch 128 512

Goals (issue 9, H100): ours ≥ 3× faster epochs than the DataLoader loop; masked ≤ 1.05× dense.
Writes ``benchmarks/results/train_<device>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from pruning_core.config import AllocationConfig
from pruning_core.masking.engine import Pruner
from pruning_core.masking.masks import MaskSet
from pruning_core.masking.targets import prunable_parameters
from pruning_core.workloads.augment import CropFlip, black_level
from pruning_core.workloads.loader import DeviceLoader
from pruning_core.workloads.models import create_model

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class _Images(Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Any) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[i]), int(self.labels[i])


def torchvision_loader(images: np.ndarray, labels: np.ndarray, batch: int, workers: int,
                       device: torch.device) -> DataLoader:
    from torchvision.transforms import v2

    tf = v2.Compose([v2.ToImage(), v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(),
                     v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])
    return DataLoader(_Images(images, labels, tf), batch_size=batch, shuffle=True,
                      num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0)


def our_loader(images: np.ndarray, labels: np.ndarray, batch: int,
               device: torch.device) -> DeviceLoader:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    return DeviceLoader(TensorDataset(x, torch.from_numpy(labels).long()), batch, device,
                        torch.Generator().manual_seed(0), shuffle=True,
                        augment=CropFlip(padding=4, fill=black_level(MEAN, STD)))


def epoch(model: nn.Module, loader: Any, opt: torch.optim.Optimizer, device: torch.device,
          masks: MaskSet | None) -> float:
    model.train()
    t0 = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if masks is not None:
            masks.apply()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def run(device: torch.device, n: int, batch: int, workers: int, reps: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    loaders = {"torchvision": torchvision_loader(images, labels, batch, workers, device),
               "ours": our_loader(images, labels, batch, device)}
    models, opts, masks = {}, {}, {}
    for name in ("torchvision", "ours", "ours, masked"):
        torch.manual_seed(0)
        models[name] = create_model("resnet20", (3, 32, 32), 10).to(device)
        opts[name] = torch.optim.SGD(models[name].parameters(), lr=0.05, momentum=0.9,
                                     weight_decay=5e-4)
    m = MaskSet(prunable_parameters(models["ours, masked"]))
    Pruner(model=models["ours, masked"], masks=m, criterion="magnitude",
           allocation=AllocationConfig(name="global"), final_sparsity=0.9, batches=[],
           input_shape=(3, 32, 32)).step(0.9)
    masks["ours, masked"] = m

    def one(name: str) -> float:
        loader = loaders["torchvision" if name == "torchvision" else "ours"]
        return epoch(models[name], loader, opts[name], device, masks.get(name))

    names = list(models)
    for name in names:  # warm-up epoch (workers start, caches, cuDNN autotune)
        one(name)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(reps):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(one(name))
    med = {k: statistics.median(v) for k, v in times.items()}
    speedup = statistics.median(t / o for t, o in zip(times["torchvision"], times["ours"],
                                                      strict=True))
    masked = statistics.median(mk / o for mk, o in zip(times["ours, masked"], times["ours"],
                                                       strict=True))
    sparsity = masks["ours, masked"].sparsity()
    return {"batch": batch, "examples": n, "workers": workers, "reps": reps,
            "epoch_s": med, "speedup_vs_torchvision": speedup, "masked_over_dense": masked,
            "masked_sparsity_after_training": sparsity}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--examples", type=int, default=2048)
    ap.add_argument("--batch", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="JSON path "
                    "(default results/train_<device>.json)")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rows = [run(device, args.examples, b, args.workers, args.reps) for b in args.batch]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        (platform.processor() or platform.machine())
    print(f"\n{name}, torch {torch.__version__}, {args.examples} examples, ResNet-20\n")
    print("| batch | torchvision s/epoch | ours s/epoch | ours masked s/epoch | speed-up | "
          "masked / dense |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        e = r["epoch_s"]
        print(f"| {r['batch']} | {e['torchvision']:.2f} | {e['ours']:.2f} | "
              f"{e['ours, masked']:.2f} | {r['speedup_vs_torchvision']:.2f}× | "
              f"{r['masked_over_dense']:.3f} |")
    RESULTS_DIR.mkdir(exist_ok=True)
    out = {"date": dt.date.today().isoformat(), "device": name, "torch": torch.__version__,
           "threads": args.threads, "rows": rows}
    path = args.out or RESULTS_DIR / f"train_{device.type}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
