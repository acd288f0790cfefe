import multiprocessing
import os
from pathlib import Path

import pytest

from pruning_core.trials.dense_cache import LocalDenseCache, cache_key, dense_prefix
from pruning_core.trials.experiment import run
from pruning_core.trials.registries import load_trial_config
from pruning_core.trials.timing import TIMINGS


def cfg(timing: str = "after", seed: int = 0, **prune):
    return load_trial_config({
        "seed": seed, "model": {"name": "mlp", "options": {"hidden": [32, 16]}},
        "data": {"name": "digits", "batch_size": 64, "train_limit": 256, "test_limit": 200},
        "train": {"epochs": 2, "optimizer": "sgd", "lr": 0.05},
        "prune": {"criterion": "magnitude", "sparsity": 0.8, "schedule": "linear", "steps": 2,
                  "timing": {"name": timing, "pretrain_epochs": 2, "rewind_epoch": 1},
                  **prune},
    })


def _no_times(r):
    return {k: v for k, v in r.to_dict().items() if not k.endswith("_time_s")}


def test_prefix_is_the_training_before_the_first_prune():
    c = cfg("after")
    plan = TIMINGS.get("after")(c, [0.5, 0.8])
    assert dense_prefix(plan) == 3  # NewOptimizer, Train, Train
    assert dense_prefix(TIMINGS.get("before")(c, [0.5, 0.8])) == 0  # nothing to share
    assert dense_prefix(TIMINGS.get("imp")(c, [0.5, 0.8])) == 4  # + Snapshot at epoch 1


def test_key_depends_on_what_the_dense_phase_depends_on_only():
    plan = TIMINGS.get("after")(cfg(), [0.8])
    base = cache_key(cfg(), plan, 3)
    # the pruning choices after the dense phase do not matter ...
    assert cache_key(cfg(criterion="snip", sparsity=0.9), plan, 3) == base
    # ... seed, training and data do
    assert cache_key(cfg(seed=1), plan, 3) != base
    other = cfg()
    other.train.lr = 0.1
    assert cache_key(other, plan, 3) != base
    other = cfg()
    other.data.train_limit = 128
    assert cache_key(other, plan, 3) != base


@pytest.mark.parametrize("timing", ["after", "imp"])
def test_cached_dense_network_gives_the_same_result_bit_for_bit(tmp_path, timing):
    cache = LocalDenseCache(tmp_path)
    plain = run(cfg(timing))
    seen: list[int] = []
    first = run(cfg(timing), dense_cache=cache, on_epoch=lambda r: seen.append(r.epoch))
    assert len(list(tmp_path.glob("*.pt"))) == 1
    reused_epochs: list[int] = []
    # another criterion and sparsity: the same dense phase, so the same entry
    second = run(cfg(timing), dense_cache=cache, on_epoch=lambda r: reused_epochs.append(r.epoch))
    assert _no_times(first) == _no_times(plain) == _no_times(second)
    # both report every epoch (schedulers count them); the second trial trained none of the
    # dense ones: its reports of them carry the shared state
    assert seen == reused_epochs == list(range(1, first.epochs + 1))
    assert len(list(tmp_path.glob("*.pt"))) == 1


def _worker(root: str, log: str) -> None:
    pid = os.getpid()

    class Counting(LocalDenseCache):
        def get_or_create(self, key, create):
            def counted():
                with open(log, "a") as fh:
                    fh.write(f"{pid} trained\n")
                return create()
            return super().get_or_create(key, counted)

    run(cfg("after"), dense_cache=Counting(root))
    with open(log, "a") as fh:
        fh.write(f"{pid} finished\n")


@pytest.mark.slow
def test_two_concurrent_trials_train_the_dense_network_once(tmp_path):
    log = tmp_path / "epochs.log"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "cache"), str(log)))
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    lines = [line.split() for line in Path(log).read_text().splitlines()]
    trained = {pid for pid, kind in lines if kind == "trained"}
    pids = {pid for pid, _ in lines}
    assert len(pids) == 2 and len(trained) == 1  # both finished; one trained the dense epochs
