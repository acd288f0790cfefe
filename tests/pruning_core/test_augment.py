import pytest
import torch
from torch.utils.data import TensorDataset

from pruning_core.workloads.augment import CropFlip, black_level
from pruning_core.workloads.loader import DeviceLoader


def _windows(x: torch.Tensor, p: int, fill: torch.Tensor) -> list[torch.Tensor]:
    """Every crop torchvision's RandomCrop(size, padding=p) + flip can produce, by hand."""
    c, h, w = x.shape
    padded = fill.view(c, 1, 1).expand(c, h + 2 * p, w + 2 * p).clone()
    padded[:, p:p + h, p:p + w] = x
    out = []
    for i in range(2 * p + 1):
        for j in range(2 * p + 1):
            crop = padded[:, i:i + h, j:j + w]
            out += [crop, crop.flip(-1)]
    return out


def test_each_output_is_one_padded_window_possibly_flipped():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 6, 5)
    fill = torch.tensor([-1.0, -2.0, -3.0])
    out = CropFlip(padding=2, fill=tuple(fill.tolist()))(x, g)
    assert out.shape == x.shape
    for xi, oi in zip(x, out, strict=True):
        assert any(torch.equal(oi, cand) for cand in _windows(xi, 2, fill))


def test_offsets_and_flips_cover_the_recipe():
    g = torch.Generator().manual_seed(1)
    # distinct non-zero pixels: every (offset, flip) gives a different crop
    x = (1 + torch.arange(32 * 32, dtype=torch.float32)).view(1, 1, 32, 32).expand(4000, 1, 32, 32)
    out = CropFlip(padding=4)(x, g)
    # 9 x 9 offsets x 2 flips = 162 possible crops; 4,000 draws see all of them
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) == 162
    # pixel values grow left to right; a flipped crop's centre pixels decrease
    flipped = (out[:, 0, 16, 15] > out[:, 0, 16, 16]).float().mean()
    assert 0.3 < float(flipped) < 0.7


def test_same_generator_same_crops_and_padding_uses_fill():
    x = torch.ones(64, 2, 8, 8)
    a = CropFlip(fill=(5.0, 7.0))(x, torch.Generator().manual_seed(3))
    b = CropFlip(fill=(5.0, 7.0))(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert set(a[:, 0].unique().tolist()) <= {1.0, 5.0} and (a[:, 0] == 5.0).any()
    assert set(a[:, 1].unique().tolist()) <= {1.0, 7.0}


def test_black_level_is_normalised_zero():
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    assert black_level(mean, std) == pytest.approx([-m / s for m, s in zip(mean, std,
                                                                            strict=True)])


def test_device_loader_yields_every_example_once_per_epoch_in_generator_order():
    x, y = torch.arange(10.0).view(10, 1), torch.arange(10)
    g = torch.Generator().manual_seed(0)
    loader = DeviceLoader(TensorDataset(x, y), batch_size=4, device=torch.device("cpu"),
                          generator=g, shuffle=True)
    assert len(loader) == 3
    batches = list(loader)
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    seen = torch.cat([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(10))
    assert seen.tolist() == torch.randperm(10, generator=torch.Generator().manual_seed(0)).tolist()
    assert torch.equal(torch.cat([b[0] for b in batches]).squeeze(1), seen.float())
    second = torch.cat([b[1] for b in loader])
    assert second.tolist() != seen.tolist()  # a new order each epoch


def test_device_loader_resumes_from_the_generator_state():
    ds = TensorDataset(torch.randn(50, 3, 4, 4), torch.arange(50))
    g = torch.Generator().manual_seed(0)
    loader = DeviceLoader(ds, 8, torch.device("cpu"), g, shuffle=True, augment=CropFlip(1))
    list(loader)
    state = g.get_state()
    expected = [b[0] for b in loader]
    g2 = torch.Generator()
    g2.set_state(state)
    again = DeviceLoader(ds, 8, torch.device("cpu"), g2, shuffle=True, augment=CropFlip(1))
    assert all(torch.equal(a, b) for a, b in zip(expected, (b[0] for b in again), strict=True))
