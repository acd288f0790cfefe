"""``prune.granularity: channel`` through the engine: every timing, compaction, resume, metrics."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from pruning_core.base.errors import ConfigError
from pruning_core.structured import STRUCTURED_CRITERIA
from pruning_core.trials.experiment import Trial, run
from pruning_core.trials.registries import load_trial_config
from pruning_core.trials.timing import Compact, Prune, Train


def cfg(**prune: object) -> object:
    base = {
        "seed": 0, "model": {"name": "mlp", "options": {"hidden": [32, 16]}},
        "data": {"name": "digits", "batch_size": 64, "train_limit": 256, "test_limit": 120},
        "train": {"epochs": 3, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9},
        "prune": {"granularity": "channel", "criterion": "snap", "sparsity": 0.5, **prune},
    }
    return load_trial_config(base)


def test_channel_run_compacts_to_the_kept_channels() -> None:
    r = run(cfg(schedule="snip_it", steps=2))
    assert r.status == "ok"
    # 48 hidden units, half removed: 24 kept (the selection is a global top-k; each hidden
    # layer keeps >= 1). Parameters of the compact MLP follow from its widths.
    assert r.node_sparsity == pytest.approx(0.5)
    trial = Trial(cfg(schedule="snip_it", steps=2))
    for a in trial.plan:
        trial.execute(a, None)
    widths = [m.out_features for m in trial.model if isinstance(m, torch.nn.Linear)]
    assert sum(widths[:2]) == 24 and widths[2] == 10  # the classifier's outputs untouched
    h1, h2 = widths[:2]
    assert r.params_kept == 64 * h1 + h1 + h1 * h2 + h2 + h2 * 10 + 10
    assert r.params == 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    assert r.flops == 2 * (64 * h1 + h1 * h2 + h2 * 10)  # real FLOPs of the compact model
    assert r.flops_dense == 2 * (64 * 32 + 32 * 16 + 16 * 10)
    # weight sparsity over all Linear weights: rows and columns of removed units
    dense_w = 64 * 32 + 32 * 16 + 16 * 10
    assert r.sparsity == pytest.approx(1 - (64 * h1 + h1 * h2 + h2 * 10) / dense_w)
    # training FLOPs: 3 x forward x examples x epochs, on the compact network from the start
    assert r.train_flops == 3 * r.flops * 256 * 3


def test_plan_compacts_after_the_last_prune_event() -> None:
    t = Trial(cfg(schedule="linear", steps=2, timing={"name": "during",
                                                        "prune_epochs": [0, 1]}))
    kinds = [type(a).__name__ for a in t.plan]
    assert kinds == ["NewOptimizer", "Prune", "Train", "Prune", "Compact", "Train", "Train"]
    assert not any(isinstance(a, Compact) for a in Trial(cfg(compact=False)).plan)
    assert sum(isinstance(a, Prune) for a in t.plan) == 2
    assert sum(isinstance(a, Train) for a in t.plan) == 3


@pytest.mark.parametrize("timing", ["before", "during", "after"])
def test_compact_model_computes_what_the_masked_model_computes(timing: str) -> None:
    """The same trial with and without compaction: identical predictions (fp tolerance)."""
    extra = {"timing": {"name": timing, "pretrain_epochs": 1,
                        **({"prune_epochs": [0, 1]} if timing == "during" else {})},
             "schedule": "linear", "steps": 2}
    compact, masked = Trial(cfg(**extra)), Trial(cfg(compact=False, **extra))
    for t in (compact, masked):
        for a in t.plan:
            t.execute(a, None)
    assert compact.compacted and not masked.compacted
    x = torch.stack([compact.data.test[i][0] for i in range(50)])
    compact.model.eval(), masked.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(compact.model(x), masked.model(x), rtol=1e-4, atol=1e-5)
    assert sum(p.numel() for p in compact.model.parameters()) < \
        sum(p.numel() for p in masked.model.parameters())


@pytest.mark.parametrize("timing", ["before", "during", "after"])
def test_resume_of_a_compacted_trial_is_bit_exact(tmp_path, timing: str) -> None:
    """Checkpoints after compaction hold the smaller model; resuming rebuilds it from the kept
    channels and ends bit for bit where the uninterrupted run ends."""
    c = cfg(schedule="linear", steps=2,
            timing={"name": timing, "pretrain_epochs": 1,
                    **({"prune_epochs": [0, 1]} if timing == "during" else {})})
    states = {}

    def keep(rep):
        path = tmp_path / f"ckpt{rep.epoch}.pt"
        torch.save(rep.checkpoint(), path)
        states[rep.epoch] = path

    full_w, resumed_w = tmp_path / "full.safetensors", tmp_path / "resumed.safetensors"
    full = run(c, on_epoch=keep, weights_out=full_w)
    for k in sorted(states)[:-1]:
        state = torch.load(states[k], weights_only=True)
        resumed = run(c, resume=state, weights_out=resumed_w)
        a = {k2: v for k2, v in full.to_dict().items() if not k2.endswith("_time_s")}
        b = {k2: v for k2, v in resumed.to_dict().items() if not k2.endswith("_time_s")}
        assert a == b, k
        wa, wb = load_file(full_w), load_file(resumed_w)
        assert all(torch.equal(wa[n], wb[n]) for n in wa)
    assert any(torch.load(p, weights_only=True)["compacted"] for p in states.values())


def test_momentum_is_carried_over_when_compacting_during_training() -> None:
    """``during``: the optimiser after compaction holds the old momentum of the kept rows."""
    t = Trial(cfg(schedule="linear", steps=1, timing={"name": "during", "prune_epochs": [1]}))
    i = 0
    while not isinstance(t.plan[i], Compact):
        t.execute(t.plan[i], None)
        i += 1
    dense = t.model
    first = dense[1].weight if isinstance(dense[1], torch.nn.Linear) else dense[0].weight
    old = t.optimizer.state[first]["momentum_buffer"].clone()
    t.execute(t.plan[i], None)
    kept = t.compact_indices[next(n for n in t.compact_indices
                                  if dense.get_submodule(n).weight is first)]["out"]
    new_first = next(p for n, p in t.model.named_parameters()
                     if p.shape[1] == first.shape[1] and n.endswith("weight"))
    torch.testing.assert_close(t.optimizer.state[new_first]["momentum_buffer"],
                               old[kept])


@pytest.mark.parametrize("name", sorted(set(STRUCTURED_CRITERIA.names()) - {"cnip"}))
def test_every_channel_criterion_runs_through_the_engine(name: str) -> None:
    r = run(cfg(criterion=name, schedule="snip_it", steps=2))
    # 48 hidden units: 24 removed, or one fewer per layer a criterion would empty (the floor)
    assert r.status == "ok" and 0.5 - 2 / 48 <= r.node_sparsity <= 0.5


def test_speed_metrics_are_measured_on_request() -> None:
    c = cfg()
    assert run(c).speedup is None
    c.metrics.speed = type(c.metrics).model_fields["speed"].annotation.__args__[0](repeats=3)
    r = run(c)
    for k in ("latency_ms", "latency_ms_batch1", "train_step_ms", "latency_ms_dense",
              "train_step_ms_dense"):
        assert getattr(r, k) > 0, k
    assert r.speedup > 0 and r.inference_speedup > 0


@pytest.mark.parametrize("prune, field", [
    ({"criterion": "magnitude"}, "prune.criterion"),
    ({"allocation": "erk"}, "prune.allocation"),
    ({"timing": "imp"}, "prune.timing.name"),
    ({"variant": "reinit"}, "prune.variant"),
])
def test_unsupported_channel_settings_name_the_field(prune: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        cfg(**prune)


def test_weight_granularity_is_unchanged_by_the_new_fields() -> None:
    c = cfg(granularity="weight", criterion="snip", sparsity=0.8)
    r = run(c)
    assert r.node_sparsity is None and r.sparsity == pytest.approx(0.8, abs=1e-3)


def test_export_compact_loads_without_pickle_and_predicts_the_same(tmp_path) -> None:
    from safetensors import safe_open

    from pruning_core.structured import load_compact

    out = tmp_path / "small.safetensors"
    c = cfg(schedule="snip_it", steps=2)
    run(c, compact_out=out)
    trial = Trial(c)
    for a in trial.plan:
        trial.execute(a, None)
    loaded = load_compact(out)
    assert [p.shape for p in loaded.parameters()] == [p.shape for p in trial.model.parameters()]
    x = torch.stack([trial.data.test[i][0] for i in range(20)])
    loaded.eval(), trial.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), trial.model(x))
    with safe_open(str(out), framework="pt") as f:
        assert f.metadata()["format"] == "prunetune-compact"
    # model.weights reads it too: the next run starts from the smaller network
    d = c.model_dump(mode="json")
    d["model"]["weights"] = str(out)
    d["prune"] = {"criterion": "snip", "sparsity": 0.5}
    again = run(load_trial_config(d))
    assert again.params == sum(p.numel() for p in loaded.parameters())


def test_export_compact_of_a_masked_channel_run_and_refusals(tmp_path) -> None:
    from pruning_core.structured import load_compact

    out = tmp_path / "m.safetensors"
    r = run(cfg(compact=False), compact_out=out)
    assert sum(p.numel() for p in load_compact(out).parameters()) < r.params
    with pytest.raises(ConfigError, match="needs prune.granularity: channel"):
        run(cfg(granularity="weight", criterion="snip"), compact_out=tmp_path / "w.safetensors")


@pytest.mark.parametrize("indices, message", [
    ('{"1": {"out": [0, 99], "out_size": 32}}', "positions must be within"),
    ('{"1": {"out": "all"}}', "not a list of integers"),
    ('{"nope": {"out": [0], "out_size": 32}}', "does not have"),
    ("[1, 2]", "not a mapping"),
    ("{not json", "bad kept-channel indices"),
])
def test_a_tampered_compact_file_is_one_clear_error(tmp_path, indices: str, message: str) -> None:
    from safetensors.torch import save_file

    from pruning_core.structured import load_compact

    good = tmp_path / "good.safetensors"
    run(cfg(), compact_out=good)
    state = load_file(good)
    from safetensors import safe_open

    with safe_open(str(good), framework="pt") as f:
        meta = dict(f.metadata())
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad), metadata={**meta, "indices": indices})
    with pytest.raises(ConfigError, match=message):
        load_compact(bad)


_SHAPES = {"mlp": (1, 8, 8), "cnn1d": (1, 40), "lenet5": (1, 28, 28)}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "cnn1d", "lenet5", "vgg11_bn", "vgg16_bn",
                                   "resnet20", "resnet32", "resnet18"])
@pytest.mark.parametrize("criterion", ["snap", "l1_filter"])
def test_snap_prunes_and_compacts_every_built_in_model(model: str, criterion: str) -> None:
    """SNAP-it through the engine on every built-in model (ResNets' residual groups included):
    the compacted network computes what the masked one computes, and is smaller."""
    shape = _SHAPES.get(model, (3, 32, 32))
    base = {"seed": 0, "model": {"name": model,
                                 "options": {} if model in _SHAPES else {"width": 0.25}},
            "data": {"name": "synthetic", "batch_size": 16,
                     "options": {"shape": list(shape), "num_train": 32, "num_test": 16}},
            "train": {"epochs": 0},
            "prune": {"granularity": "channel", "criterion": criterion, "sparsity": 0.6,
                      "schedule": "snip_it", "steps": 2}}
    compact, masked = (Trial(load_trial_config({**base, "prune": {**base["prune"],
                                                                   "compact": c}}))
                       for c in (True, False))
    for t in (compact, masked):
        for a in t.plan:
            t.execute(a, None)
    assert compact.compacted and compact.pruner.node_sparsity() >= 0.5
    x = torch.stack([compact.data.test[i][0] for i in range(8)])
    compact.model.eval(), masked.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(compact.model(x), masked.model(x), rtol=1e-4, atol=1e-4)
    assert sum(p.numel() for p in compact.model.parameters()) < \
        0.6 * sum(p.numel() for p in masked.model.parameters())
