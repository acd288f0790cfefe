import pytest
import torch
from safetensors.torch import load_file

from pruning_core.base.errors import ConfigError
from pruning_core.masking.targets import layer_infos
from pruning_core.trials.experiment import prunable_layers, run
from pruning_core.trials.registries import load_trial_config
from pruning_core.trials.tuned import Schedule
from pruning_core.workloads.models import create_model


def digits_cfg(**prune):
    return load_trial_config({
        "seed": 3, "model": {"name": "mlp", "options": {"hidden": [32, 16]}},
        "data": {"name": "digits", "batch_size": 64, "train_limit": 400, "test_limit": 200},
        "train": {"epochs": 2, "lr": 0.01},
        "prune": {"criterion": "snip", "sparsity": 0.9, "schedule": "snip_it", "steps": 2,
                  **prune},
    })


def schedule_from(cfg, result):
    return Schedule.from_trial(cfg, prunable_layers(cfg), result.layer_sparsity,
                               {"model": cfg.model.name, "dataset": cfg.data.name,
                                "seed": cfg.seed, "trial_id": "t1",
                                "metrics": {"test_accuracy": result.test_accuracy}})


def test_same_model_reproduces_masks_and_accuracy_exactly(tmp_path):
    cfg = digits_cfg()
    first = run(cfg, masks_out=tmp_path / "a.safetensors")
    path = tmp_path / "tuned.yaml"
    schedule_from(cfg, first).save(path)
    loaded = Schedule.load(path)
    again_cfg = loaded.trial_config(prunable_layers(cfg))
    assert again_cfg.prune.allocation.name == "global"  # the trial's own allocation
    again = run(again_cfg, masks_out=tmp_path / "b.safetensors")
    a, b = load_file(tmp_path / "a.safetensors"), load_file(tmp_path / "b.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert again.test_accuracy == first.test_accuracy


def synthetic_layers(model, width=0.25, classes=10):
    return layer_infos(create_model(model, (3, 32, 32), classes, width=width))


@pytest.mark.parametrize(("src", "dst"), [("resnet20", "resnet32"), ("vgg11_bn", "vgg16_bn")])
def test_related_model_mapping_hits_total_and_keeps_depth_profile(src, dst):
    layers = synthetic_layers(src)
    # a depth ramp: early layers sparse-light, late layers heavy, the classifier light
    per_layer = {i.name: (0.3 + 0.65 * i.depth if i.kind == "conv" else 0.2) for i in layers}
    cfg = load_trial_config({"model": {"name": src, "options": {"width": 0.25}},
                             "data": {"name": "synthetic"},
                             "prune": {"allocation": {"name": "explicit",
                                                      "layer_sparsity": per_layer}}})
    s = Schedule.from_trial(cfg, layers, per_layer, {"model": src, "dataset": "synthetic"})
    target_layers = synthetic_layers(dst)
    mapped = s.map_to(target_layers)
    total = sum(i.numel for i in target_layers)
    achieved = sum(mapped[i.name] * i.numel for i in target_layers) / total
    assert abs(achieved - s.target_sparsity) <= 0.005
    convs = [i for i in target_layers if i.kind == "conv"]
    assert mapped[convs[0].name] < mapped[convs[-1].name]  # depth profile carried over
    assert all(0.0 <= v < 1.0 for v in mapped.values())
    cfg2 = s.trial_config(target_layers, {"model.name": dst})
    assert cfg2.prune.allocation.name == "explicit"


def test_no_sensible_mapping_says_why():
    mlp = layer_infos(create_model("mlp", (1, 8, 8), 10))
    cfg = digits_cfg()
    s = Schedule.from_trial(cfg, mlp, {i.name: 0.5 for i in mlp}, {"model": "mlp",
                                                                    "dataset": "digits"})
    conv = layer_infos(create_model("lenet5", (1, 8, 8), 10))
    with pytest.raises(ConfigError, match="no sensible mapping: .* is 'conv' but .* only"):
        s.map_to(conv)


def test_schedule_prune_api_on_a_model():
    cfg = digits_cfg(schedule="one_shot", criterion="magnitude")
    layers = prunable_layers(cfg)
    s = Schedule.from_trial(cfg, layers, {i.name: 0.9 for i in layers},
                            {"model": "mlp", "dataset": "digits"})
    model = create_model("mlp", (1, 8, 8), 10, hidden=[64, 32])  # related: wider
    masks = s.apply_to(model, batches=[], input_shape=(1, 8, 8))
    assert masks.sparsity() == pytest.approx(0.9, abs=0.005)
    assert all((model.get_parameter(n)[~m] == 0).all() for n, m in masks.masks.items())


@pytest.mark.parametrize(("text", "message"), [
    ("format: prunetune-schedule\nversion: 99\n", "newer than this prunetune reads"),
    ("format: something-else\nversion: 1\n", "not a prunetune schedule"),
    ("format: prunetune-schedule\nversion: 1\nprune: {}\n", "layers: Field required"),
    ("a: [unclosed\n", "not valid YAML"),
    ("!!python/object/apply:os.system ['echo pwned']\n", "not valid YAML"),
])
def test_malformed_or_future_files_get_clear_errors(tmp_path, text, message):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Schedule.load(path)


def test_structured_choices_travel_in_a_schedule(tmp_path):
    """A channel trial's schedule reproduces it exactly on the same model, and carries the
    structured choices (granularity, criterion, node sparsity) to another model."""
    cfg = digits_cfg(granularity="channel", criterion="snap", sparsity=0.5)
    first = run(cfg, masks_out=tmp_path / "a.safetensors")
    path = tmp_path / "tuned.yaml"
    schedule_from(cfg, first).save(path)
    loaded = Schedule.load(path)
    assert loaded.prune.granularity == "channel" and loaded.prune.compact
    again = run(loaded.trial_config(prunable_layers(cfg)), masks_out=tmp_path / "b.safetensors")
    a, b = load_file(tmp_path / "a.safetensors"), load_file(tmp_path / "b.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert again.test_accuracy == first.test_accuracy and again.node_sparsity == 0.5
    # another model: the same choices, its own channels
    other = create_model("mlp", (1, 8, 8), 10, hidden=[64, 32])
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    masks = loaded.apply_to(other, batches=[(x, y)], input_shape=(1, 8, 8))
    rows_gone = [int((~m).all(dim=1).sum()) for n, m in masks.masks.items()
                 if n != "5.weight"]  # hidden layers: whole rows (units) removed
    assert sum(rows_gone) == 48  # half of 64 + 32 units
