import textwrap

import pytest
import torch
from torch import nn

from pruning_core.base.errors import ConfigError
from pruning_core.workloads.factories import build_model, is_import_path, load_data, resolve
from tests.conftest import user_code_dir

PKG = '''
import torch
from torch import nn
from torch.utils.data import TensorDataset

def build(input_shape, num_classes, hidden=8):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), hidden),
                         nn.ReLU(), nn.Linear(hidden, num_classes))

class Net(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.fc = nn.Linear(input_shape[0], num_classes)
    def forward(self, x):
        return self.fc(x)

def raises(input_shape, num_classes):
    raise RuntimeError("boom")

def not_a_module(input_shape, num_classes):
    return 42

def nothing_to_prune(input_shape, num_classes):
    return nn.Sequential(nn.ReLU())

NOT_CALLABLE = 3

def load(seed=0, n=20):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)
    return {"train": TensorDataset(x, y), "test": TensorDataset(x, y), "input_shape": (4,),
            "num_classes": 3}

def load_no_seed():
    return load()

def load_bad():
    return {"train": [1, 2], "test": None, "input_shape": (4,), "num_classes": 3}

def load_partial(seed=0):
    return {"train": load()["train"]}
'''


@pytest.fixture
def pkg(tmp_path, monkeypatch):
    root = tmp_path / "userpkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "nets.py").write_text(textwrap.dedent(PKG))
    user_code_dir(monkeypatch, tmp_path, "userpkg")
    return "userpkg.nets"


def test_import_paths_are_told_apart_from_registry_names():
    assert is_import_path("my_pkg.nets:build") and not is_import_path("resnet20")
    assert not is_import_path("tv:resnet18")


def test_function_and_class_factories_build_modules(pkg):
    m = build_model(f"{pkg}:build", (2, 3), 5, {"hidden": 4})
    assert m(torch.randn(7, 2, 3)).shape == (7, 5) and m[1].out_features == 4
    assert isinstance(build_model(f"{pkg}:Net", (4,), 2), nn.Module)


@pytest.mark.parametrize(("attr", "pattern"), [
    ("raises", r"^model\.name: factory 'userpkg\.nets:raises' raised RuntimeError: boom$"),
    ("not_a_module", r"returned a int, not an nn\.Module"),
    ("nothing_to_prune", r"has no Conv or Linear layer to prune"),
    ("missing", r"^model\.name: module 'userpkg\.nets' has no attribute 'missing'$"),
    ("NOT_CALLABLE", r"is a int, not a callable"),
])
def test_model_factory_errors_are_one_line_naming_the_key(pkg, attr, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        build_model(f"{pkg}:{attr}", (4,), 3)
    assert "\n" not in str(info.value)


def test_unimportable_module_and_malformed_path(pkg):
    with pytest.raises(ConfigError, match=r"^data\.name: cannot import 'nope\.mod' "
                                          r"\(no module 'nope'\)"):
        resolve("nope.mod:load", "data.name")
    with pytest.raises(ConfigError, match="is not an import path"):
        resolve("userpkg.nets:", "model.name")


def test_data_factory_bundle_seed_and_optional_arguments(pkg):
    a = load_data(f"{pkg}:load", seed=1, options={"n": 10})
    b = load_data(f"{pkg}:load", seed=1, options={"n": 10})
    assert a.input_shape == (4,) and a.num_classes == 3 and len(a.train) == 10
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    c = load_data(f"{pkg}:load", seed=2, options={"n": 10})
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0])
    assert len(load_data(f"{pkg}:load_no_seed", seed=5, root="/x").train) == 20


@pytest.mark.parametrize(("attr", "pattern"), [
    ("load_bad", r"train is a list, not a torch\.utils\.data\.Dataset"),
    ("load_partial", r"returned no test, input_shape, num_classes"),
])
def test_data_factory_errors(pkg, attr, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_data(f"{pkg}:{attr}")


@pytest.mark.parametrize("path", ["os:system", "subprocess:run", "builtins:exec",
                                  "shutil:rmtree", "torch:load",
                                  "pruning_core.workloads.data:load_dataset"])
def test_library_callables_are_refused_before_any_call(path):
    with pytest.raises(ConfigError, match=r"names the '\w+' library; a factory must be your own"):
        resolve(path, "data.name")


def test_a_callable_imported_into_the_users_package_is_refused(tmp_path, monkeypatch):
    (tmp_path / "sneaky.py").write_text("from os import system\nfrom shutil import rmtree\n")
    user_code_dir(monkeypatch, tmp_path, "sneaky")
    with pytest.raises(ConfigError, match=r"'sneaky:system' is not defined in .* taken from os"):
        resolve("sneaky:system", "data.name")
    with pytest.raises(ConfigError, match="is not an import path"):
        resolve("sneaky:os.system", "data.name")  # no attribute chains


def test_python_factories_become_import_paths(pkg):
    import importlib

    from pruning_core.workloads.factories import import_path_of

    nets = importlib.import_module(pkg)
    assert import_path_of(nets.build, "model.name") == "userpkg.nets:build"
    with pytest.raises(ConfigError, match="not .*<lambda>|module-level"):
        import_path_of(lambda s, n: None, "model.name")

    def local(input_shape, num_classes):  # defined in a function: not importable
        return None

    with pytest.raises(ConfigError, match="module-level"):
        import_path_of(local, "model.name")
