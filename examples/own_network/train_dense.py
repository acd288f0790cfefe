"""Stand-in for "the network you already trained": plain PyTorch, saved as safetensors.

    python train_dense.py            # writes dense.safetensors (~10 s on a CPU)
"""

from __future__ import annotations

import torch
from mynets.data import load
from mynets.nets import build
from safetensors.torch import save_file
from torch.utils.data import DataLoader


def main(epochs: int = 10, out: str = "dense.safetensors") -> None:
    torch.manual_seed(0)
    data = load(seed=0)
    model = build(data["input_shape"], data["num_classes"], width=16)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for _ in range(epochs):
        model.train()
        for x, y in DataLoader(data["train"], batch_size=64, shuffle=True):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    save_file(model.state_dict(), out)


if __name__ == "__main__":
    main()
