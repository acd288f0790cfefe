import pytest

from pruning_core.base.errors import ConfigError
from pruning_core.config import TrialConfig, flatten, set_dotted
from pruning_core.trials.registries import load_trial_config


def test_defaults_validate_and_shorthands():
    cfg = load_trial_config({"prune": {"allocation": "erk", "timing": "after"}})
    assert cfg.prune.allocation.name == "erk" and cfg.prune.timing.name == "after"
    assert isinstance(cfg, TrialConfig)


@pytest.mark.parametrize(("data", "pattern"), [
    ({"prune": {"criterion": "snipp"}},
     r"prune\.criterion: unknown criterion 'snipp'; valid: "
     r"grasp, magnitude, random, snip, sparsegpt, synflow, wanda"),
    ({"prune": {"schedule": "cos"}}, r"prune\.schedule: unknown schedule 'cos'; valid:"),
    ({"model": {"name": "vgg99"}}, r"model\.name: unknown model 'vgg99'; valid:"),
    ({"data": {"name": "imagenet"}}, r"data\.name: unknown dataset 'imagenet'; valid:"),
    ({"prune": {"sparsity": 1.0}}, r"prune\.sparsity: Input should be less than 1"),
    ({"prune": {"sparsity": -0.1}}, r"prune\.sparsity: Input should be greater than or equal"),
    ({"prune": {"steps": 0}}, r"prune\.steps: Input should be greater than or equal to 1"),
    ({"prune": {"sparsty": 0.9}}, r"prune\.sparsty: unknown key"),
    ({"prune": {"criterion": "grasp", "criterion_options": {"temp": 1}}},
     r"prune\.criterion_options: invalid for 'grasp' "
         r"\(accepted: \['mode', 'reinit_linear', 'temperature'\]\)"),
    ({"prune": {"variant": "reinit", "timing": "during"}}, r"prune\.variant: 'reinit' needs"),
    ({"prune": {"criterion": "grasp", "allocation": "lamp"}},
     r"prune\.allocation: lamp squares scores .* grasp scores are signed"),
    ({"prune": {"allocation": {"layer_sparsity": [1.2]}}}, r"layer_sparsity.*outside \[0, 1\)"),
])
def test_errors_name_the_field(data, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        load_trial_config(data)
    assert "\n" not in str(info.value)


def test_torchvision_model_names_pass_validation():
    assert load_trial_config({"model": {"name": "tv:resnet18"}}).model.name == "tv:resnet18"


def test_set_dotted_and_flatten():
    d = {"prune": {"allocation": "erk"}}
    set_dotted(d, "prune.allocation.erk_power", 0.5)
    set_dotted(d, "train.epochs", 3)
    assert d == {"prune": {"allocation": {"name": "erk", "erk_power": 0.5}},
                 "train": {"epochs": 3}}
    assert flatten(d) == {"prune.allocation.name": "erk", "prune.allocation.erk_power": 0.5,
                          "train.epochs": 3}
