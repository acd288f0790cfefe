"""Old flat module paths of pruning_core still resolve to the modules in their rooms (issue 17):
scripts import them, and a pickled sweep names their classes."""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys

import pytest

import pruning_core
from pruning_core.masking.masks import MaskSet
from pruning_core.trials.result import TrialResult


@pytest.mark.parametrize("old", sorted(pruning_core.MOVED))
def test_every_old_path_is_the_module_in_its_room(old: str) -> None:
    new = importlib.import_module(f"pruning_core.{pruning_core.MOVED[old]}")
    assert importlib.import_module(f"pruning_core.{old}") is new


def test_a_submodule_of_a_moved_package_resolves() -> None:
    from pruning_core.masking.criteria import snip

    assert importlib.import_module("pruning_core.criteria.snip") is snip


def test_old_names_import_in_a_fresh_python() -> None:
    """``from pruning_core.experiment import run`` as a script written before the rooms does."""
    code = ("from pruning_core.experiment import run, TrialResult\n"
            "from pruning_core.masks import MaskSet\n"
            "from pruning_core.training import train_epoch\n"
            "import pruning_core.trials.experiment as e, pruning_core.masking.masks as m\n"
            "assert run is e.run and MaskSet is m.MaskSet\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def _pickle_naming(module: str, name: str, obj: object) -> bytes:
    """``obj`` pickled as if its class lived in ``module`` (what an old pickle says)."""
    data = pickle.dumps(obj, protocol=2)
    cls = type(obj)
    return data.replace(f"{cls.__module__}\n{cls.__qualname__}".encode(),
                        f"{module}\n{name}".encode())


def test_a_pickle_naming_the_old_module_loads() -> None:
    masks = MaskSet({})
    old = _pickle_naming("pruning_core.masks", "MaskSet", masks)
    assert b"pruning_core.masks\nMaskSet" in old
    assert type(pickle.loads(old)) is MaskSet
    result = TrialResult(status="ok", test_accuracy=0.5, test_loss=1.0, train_accuracy=0.6,
                         train_loss=0.9, sparsity=0.9, target_sparsity=0.9, layer_sparsity={},
                         collapsed_layers=[], params=10, params_kept=1, flops_dense=100,
                         flops=10, prune_time_s=0.0, train_time_s=0.0, epochs=1)
    again = pickle.loads(_pickle_naming("pruning_core.experiment", "TrialResult", result))
    assert type(again) is TrialResult and again.test_accuracy == 0.5
