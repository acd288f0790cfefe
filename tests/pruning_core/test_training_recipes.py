import pytest
import torch
from safetensors.torch import save_file

from pruning_core.base.errors import ConfigError
from pruning_core.config import TrainConfig
from pruning_core.trials.experiment import Trial, run
from pruning_core.trials.loop import lr_at
from pruning_core.trials.registries import load_trial_config
from pruning_core.trials.timing import Prune, Train
from pruning_core.workloads.models import create_model


def cfg(**over):
    base = {
        "seed": 0, "model": {"name": "lenet5"},
        "data": {"name": "digits", "batch_size": 64, "train_limit": 256, "test_limit": 200},
        "train": {"epochs": 1, "optimizer": "sgd", "lr": 0.05},
        "prune": {"criterion": "magnitude", "sparsity": 0.8},
    }
    for key, value in over.items():
        base[key] = {**base.get(key, {}), **value}
    return load_trial_config(base)


def test_warmup_scales_the_first_epochs_of_a_phase():
    c = TrainConfig(lr=0.1, warmup_epochs=4, lr_schedule="step")
    assert [lr_at(c, e, 8) for e in range(8)] == pytest.approx(
        [0.025, 0.05, 0.075, 0.1, 0.01, 0.01, 0.001, 0.001])  # step: /10 at epochs 4, 6


def test_after_with_no_pretraining_prunes_the_loaded_network(tmp_path):
    trained = create_model("lenet5", (1, 8, 8), 10)
    with torch.no_grad():
        for p in trained.parameters():
            p.mul_(3.0).add_(0.01)
    save_file(trained.state_dict(), str(tmp_path / "w.safetensors"))
    c = cfg(model={"weights": str(tmp_path / "w.safetensors")},
            prune={"timing": {"name": "after", "pretrain_epochs": 0}})
    trial = Trial(c)
    for name, value in trained.state_dict().items():
        assert torch.equal(trial.model.state_dict()[name], value), name
    assert not any(isinstance(a, Train) for a in trial.plan[:trial.plan.index(Prune(0.8))])
    trial.execute(Prune(0.8), None)
    kept = torch.cat([trained.state_dict()[n].abs()[m] for n, m in trial.masks.masks.items()])
    pruned = torch.cat([trained.state_dict()[n].abs()[~m] for n, m in trial.masks.masks.items()])
    # global magnitude on the loaded weights: every kept weight outranks every pruned one
    assert kept.min() >= pruned.max() and trial.masks.sparsity() == pytest.approx(0.8, abs=1e-3)


def test_a_checkpoint_of_another_architecture_is_one_line(tmp_path):
    save_file(create_model("mlp", (1, 8, 8), 10).state_dict(), str(tmp_path / "mlp.safetensors"))
    with pytest.raises(ConfigError, match=r"^model\.weights: key '.*' is missing from the file"):
        run(cfg(model={"weights": str(tmp_path / "mlp.safetensors")}))


def test_crop_flip_trains_on_images_and_is_refused_for_sequences():
    r = run(cfg(data={"augment": "crop_flip"}))
    assert r.status == "ok" and r.epochs == 1
    plain = run(cfg())
    assert r.train_loss != plain.train_loss  # the crops changed what was trained on
    with pytest.raises(ConfigError, match=r"^data\.augment: crop_flip needs image inputs"):
        run(load_trial_config({"model": {"name": "cnn1d"},
                               "data": {"name": "mnist1d", "augment": "crop_flip"}}))


@pytest.mark.parametrize("train", [{"amp": "bf16"}, {"channels_last": True}])
def test_pruned_weights_stay_exactly_zero_with_amp_and_channels_last(train):
    trial = Trial(cfg(train=train))
    for action in trial.plan:  # before: prune, then train with the masks enforced
        trial.execute(action, None)
    for name, mask in trial.masks.masks.items():
        w = trial.model.get_parameter(name)
        assert w.dtype == torch.float32
        assert (w[~mask] == 0).all() and (w[mask] != 0).all()


@pytest.mark.slow
def test_pruned_weights_stay_exactly_zero_under_torch_compile():
    r = run(cfg(train={"compile": True}))
    ref = run(cfg())
    assert r.status == "ok" and r.layer_sparsity == ref.layer_sparsity
    trial = Trial(cfg(train={"compile": True}))
    for action in trial.plan:
        trial.execute(action, None)
    for name, mask in trial.masks.masks.items():
        assert (trial.model.get_parameter(name)[~mask] == 0).all()


def test_milestones_and_gamma_by_hand():
    c = TrainConfig(lr=1.0, lr_schedule="step", lr_milestones=[0.25, 0.5, 0.9], lr_gamma=0.5)
    assert [lr_at(c, e, 20) for e in (0, 4, 5, 9, 10, 17, 18)] == pytest.approx(
        [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125])  # x0.5 at epochs 5, 10 and 18 of 20
    for bad in ([0.75, 0.5], [0.0, 0.5], [1.0]):
        with pytest.raises(ValueError, match="increasing fractions"):
            TrainConfig(lr_schedule="step", lr_milestones=bad)


@pytest.mark.parametrize("name, criterion, timing", [
    ("cifar10_resnet32_grasp.yaml", "grasp", "before"),
    ("cifar10_resnet20_lth.yaml", "magnitude", "imp")])
def test_paper_recipe_configs_validate(name, criterion, timing):
    """The recipes of the papers (each file cites the code it follows) load, and their plans
    are what the papers ran; no CIFAR copy here, so the run itself is out of reach."""
    from pathlib import Path

    import yaml

    from pruning_core.masking.schedules import sparsity_steps
    from pruning_core.trials.registries import TIMINGS

    c = load_trial_config(yaml.safe_load(Path("configs", name).read_text()))
    assert c.prune.criterion == criterion and c.prune.timing.name == timing
    assert c.train.lr_milestones == [0.5, 0.75] and c.train.epochs == 160
    steps = sparsity_steps(c.prune.schedule, c.prune.sparsity, c.prune.steps)
    plan = TIMINGS.get(timing)(c, steps)
    trains = sum(isinstance(a, Train) for a in plan)
    if timing == "imp":  # 10 levels of 160 epochs after the dense run, 20 % of the rest each
        assert trains == 160 * 11
        assert [1 - s for s in steps] == pytest.approx([0.8 ** k for k in range(1, 11)])
        assert c.prune.exclude == ["fc.weight"]
    else:
        assert trains == 160 and c.prune.score_samples_per_class == 10


def test_the_cifar_recipe_config_validates_and_names_its_missing_root():
    from pathlib import Path

    import yaml

    data = yaml.safe_load(Path("configs/cifar10_vgg16_snip.yaml").read_text())
    c = load_trial_config(data)
    assert c.data.augment == "crop_flip" and c.train.lr_milestones == [0.375, 0.75]
    # Synaptic-Flow's schedule: 0.1 until epoch 60, 0.01 until 120, then 0.001 (of 160)
    assert [lr_at(c.train, e, 160) for e in (0, 59, 60, 119, 120, 159)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    with pytest.raises(ConfigError, match=r"^cifar10: no data directory given; set data\.root"):
        run(c)  # no CIFAR copy here: one clear error naming the missing root


def test_the_grasp_cifar_recipe_runs_on_cifar_files(tmp_path):
    """The GraSP recipe config end to end on tiny CIFAR-10 batches the test writes (the
    python-pickle layout torchvision reads): crop + flip on 3x32x32 images, the class-balanced
    scoring set, the step schedule; shrunk to 2 epochs and a quarter-width ResNet-20."""
    from pathlib import Path

    import yaml

    from .test_data import CIFAR10_FILES, write_cifar

    write_cifar(tmp_path / "cifar-10-batches-py", CIFAR10_FILES, b"labels", n=8, seed=0)
    data = yaml.safe_load(Path("configs/cifar10_resnet32_grasp.yaml").read_text())
    data["model"] = {"name": "resnet20", "options": {"width": 0.25}}
    data["data"].update(root=str(tmp_path), batch_size=16)
    data["train"].update(epochs=2, device="cpu")
    data["prune"].update(score_samples_per_class=2)
    c = load_trial_config(data)
    trial = Trial(c)
    (x, y), = trial._score_batches()
    assert x.shape[1:] == (3, 32, 32) and len(y) <= 20
    assert all(n <= 2 for n in torch.bincount(y).tolist())
    r = run(c)
    assert r.status == "ok" and r.epochs == 2
    assert abs(r.sparsity - 0.9) < 0.01
    data["data"]["augment"] = "none"
    assert run(load_trial_config(data)).train_loss != r.train_loss  # the crops were used
