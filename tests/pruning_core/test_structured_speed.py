import time

import torch
from torch import nn

from pruning_core.structured import latency_ms, measure_speed, train_step_ms
from tests.pruning_core.structured_nets import (
    TinyRes,
    assert_same_snapshot,
    randomise_bn,
    snapshot,
)


class _Sleepy(nn.Module):
    """Sleeps 50 ms in train mode, 5 ms in eval mode: timings must see the right mode."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.05 if self.training else 0.005)
        return self.fc(x)


def test_latency_is_the_median_of_eval_forwards():
    model = _Sleepy().train()
    ms = latency_ms(model, (4,), batch_size=2, warmup=1, repeats=3)
    assert 4.5 <= ms < 40  # eval-mode forward (5 ms), not train mode (50 ms)
    assert model.training  # mode restored


def test_train_step_runs_in_train_mode_on_a_copy():
    model = _Sleepy().eval()
    before = snapshot(model)
    ms = train_step_ms(model, (4,), batch_size=4, warmup=1, repeats=3)
    assert ms >= 49.5
    assert_same_snapshot(before, snapshot(model))


def test_measure_speed_leaves_model_as_found():
    model = randomise_bn(TinyRes()).train()
    before = snapshot(model)
    report = measure_speed(model, (3, 2, 2), train_batch=8, warmup=1, repeats=2)
    assert_same_snapshot(before, snapshot(model))  # BN statistics untouched by the train steps
    assert report.train_batch == 8 and report.device == "cpu"
    assert min(report.latency_ms_batch1, report.latency_ms_train_batch,
               report.train_step_ms) > 0
    assert set(report.as_dict()) == {"latency_ms_batch1", "latency_ms_train_batch",
                                     "train_step_ms", "train_batch", "device"}


class _Fixed(nn.Module):
    """Sleeps a fixed time per forward (train: 4x): a known speed ratio."""

    def __init__(self, ms: float) -> None:
        super().__init__()
        self.ms = ms
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.ms / 1e3 * (4 if self.training else 1))
        return self.fc(x)


def test_compare_speed_pairs_give_the_known_ratio_and_leave_models_as_found():
    from pruning_core.structured.speed import compare_speed

    # sleeps long enough that a loaded machine's scheduling delays (ms) cannot move the ratio
    fast, slow = _Fixed(20.0).train(), _Fixed(60.0).eval()
    before = snapshot(fast), snapshot(slow)
    pair = compare_speed(fast, slow, (4,), train_batch=4, warmup=1, repeats=5)
    assert 2.0 <= pair.ratio_latency <= 3.3  # 60 ms / 20 ms, minus a little overhead
    assert 2.0 <= pair.ratio_train_step <= 3.3  # 240 ms / 80 ms forward (backward is tiny)
    assert pair.candidate.latency_ms_batch1 >= 19 and pair.baseline.latency_ms_batch1 >= 59
    assert fast.training and not slow.training  # modes restored
    assert_same_snapshot(before[0], snapshot(fast))
    assert_same_snapshot(before[1], snapshot(slow))
