"""The batched epoch's pieces: stacked batches and the optimiser step against torch.optim."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from pruning_core.packing.batched import StackedModels, packed_batches
from pruning_core.packing.optim import BatchedOptimizer
from pruning_core.workloads.loader import DeviceLoader


def _loaders(shared: bool, seeds=(0, 1, 2)):
    g = torch.Generator().manual_seed(9)
    ds = TensorDataset(torch.randn(50, 3, generator=g), torch.randint(0, 4, (50,), generator=g))
    out = []
    for s in seeds:
        d = ds if shared else TensorDataset(ds.tensors[0].clone(), ds.tensors[1].clone())
        out.append(DeviceLoader(d, 16, torch.device("cpu"), torch.Generator().manual_seed(s),
                                shuffle=True))
    if shared:  # as share_data leaves them: one tensor
        for ld in out[1:]:
            ld.x, ld.y = out[0].x, out[0].y
    return out


def test_one_gather_per_step_gives_each_member_its_own_loader_batches():
    fused, apart = _loaders(shared=True), _loaders(shared=False)
    a = list(packed_batches(fused, torch.device("cpu")))
    b = list(packed_batches(apart, torch.device("cpu")))
    assert len(a) == len(b) == 4 and a[-1][0].shape == (3, 2, 3)  # 50 = 3 x 16 + 2
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a[0][1][0], a[0][1][1])  # members draw their own orders
    for f, p in zip(fused, apart, strict=True):  # the generators moved alike
        assert torch.equal(f.generator.get_state(), p.generator.get_state())


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_batched_step_matches_each_members_torch_optimiser(kind):
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)) for _ in range(3)]
    hyper = [dict(lr=0.1, weight_decay=0.0, momentum=0.9), dict(lr=0.01, weight_decay=0.01,
             momentum=0.0), dict(lr=0.05, weight_decay=1e-3, momentum=0.5)]

    def make(m, h):
        if kind == "sgd":
            return torch.optim.SGD(m.parameters(), **h)
        cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
        return cls(m.parameters(), lr=h["lr"], weight_decay=h["weight_decay"])

    refs = [nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)) for _ in range(3)]
    for r, m in zip(refs, models, strict=True):
        r.load_state_dict(m.state_dict())
    ref_opts = [make(r, h) for r, h in zip(refs, hyper, strict=True)]
    stack = StackedModels(models)
    opt = BatchedOptimizer(kind, [make(m, h) for m, h in zip(models, hyper, strict=True)],
                           stack.names)
    opt.load(stack.params)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):  # fixed gradients: the update rule alone is compared
        grads = {n: torch.randn(p.shape, generator=g) for n, p in stack.params.items()}
        for k, (r, o) in enumerate(zip(refs, ref_opts, strict=True)):
            for (n, p) in r.named_parameters():
                p.grad = grads[n][k].clone()
            o.step()
        opt.step(stack.params, grads)
    stack.write_back()
    opt.store()
    for k, (r, m) in enumerate(zip(refs, models, strict=True)):
        for (n, a), b in zip(r.named_parameters(), m.parameters(), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7, msg=f"member {k} {n}")
        st_ref = ref_opts[k].state_dict()["state"]
        st = opt.optimizers[k].state_dict()["state"]
        assert st_ref.keys() == st.keys()
        for i in st_ref:
            assert st_ref[i].keys() == st[i].keys()
            for key in st_ref[i]:
                torch.testing.assert_close(st[i][key], st_ref[i][key], rtol=1e-6, atol=1e-7)
