"""Dataset directories are untrusted: a crafted CIFAR batch never runs code (issue 8, item 1).

CIFAR's python release is a pickle; ``pruning_core.workloads.data`` reads it with an unpickler that
can
only build dicts, lists, strings, ints and numpy arrays. Each payload below is first shown to be
live (plain ``pickle.loads`` in a child process writes the marker), so the refusal tests can
fail.
"""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from pruning_core.base.errors import DataError
from pruning_core.workloads.data import load_dataset
from tests.security.conftest import assert_refused, prunetune

CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


class _System:
    """Unpickling calls ``os.system(cmd)`` (pickled as ``posix.system``)."""

    def __init__(self, marker: Path) -> None:
        self.cmd = f"touch '{marker}'"

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.cmd,))


class _Exec:
    """Unpickling calls ``builtins.exec(code)``."""

    def __init__(self, marker: Path) -> None:
        self.code = f"open({str(marker)!r}, 'w').write('pwned')"

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.exec, (self.code,))


class _Popen:
    """Unpickling starts ``subprocess.Popen([...])``."""

    def __init__(self, marker: Path) -> None:
        self.argv = ["touch", str(marker)]

    def __reduce__(self) -> tuple[Any, ...]:
        return (subprocess.Popen, (self.argv,))


PAYLOADS = {"os.system": _System, "builtins.exec": _Exec, "subprocess.Popen": _Popen}


def crafted_batch(kind: str, marker: Path, protocol: int = 4) -> bytes:
    """A CIFAR-looking dict whose ``data`` value runs ``kind`` when unpickled."""
    return pickle.dumps({b"batch_label": b"x", b"data": PAYLOADS[kind](marker),
                         b"labels": [0, 1]}, protocol=protocol)


def write_cifar10(folder: Path, n: int = 4, seed: int = 0, protocol: int = 4) -> np.ndarray:
    """Legitimate tiny CIFAR-10 batches, as CIFAR ships them (bytes keys, uint8 array)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    first = None
    for name in CIFAR10_FILES:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        first = data if first is None else first
        labels = rng.integers(0, 10, size=n).tolist()
        (folder / name).write_bytes(pickle.dumps(
            {b"batch_label": name.encode(), b"data": data, b"labels": labels,
             b"filenames": [f"{i}.png".encode() for i in range(n)]}, protocol=protocol))
    assert first is not None
    return first


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_payloads_are_live_with_plain_pickle(tmp_path: Path, kind: str) -> None:
    """Sanity: the crafted files really execute code when read with ``pickle.load``."""
    marker = tmp_path / "marker"
    blob = tmp_path / "blob"
    blob.write_bytes(crafted_batch(kind, marker))
    code = f"import pickle,time; pickle.load(open({str(blob)!r},'rb')); time.sleep(0.3)"
    subprocess.run([sys.executable, "-c", code], check=False, timeout=60)
    assert marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_crafted_batch_is_refused_and_runs_nothing(tmp_path: Path, kind: str,
                                                   protocol: int) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    marker = tmp_path / "marker"
    (folder / "data_batch_1").write_bytes(crafted_batch(kind, marker, protocol))
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", root=str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and "refusing" in msg and str(folder / "data_batch_1") in msg
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_legitimate_batches_load_with_every_protocol(tmp_path: Path, protocol: int) -> None:
    data = write_cifar10(tmp_path / "cifar-10-batches-py", n=3, protocol=protocol)
    b = load_dataset("cifar10", root=str(tmp_path), normalize=False)
    x, _ = b.train.tensors  # type: ignore[attr-defined]
    assert x.shape == (15, 3, 32, 32)
    # pixel (c, h, w) of image 0 is byte c*1024 + h*32 + w of its row, scaled to [0, 1]
    assert float(x[0, 1, 2, 3]) == pytest.approx(data[0, 1 * 1024 + 2 * 32 + 3] / 255.0)


def test_python2_style_batch_with_numpy_core_names_loads(tmp_path: Path) -> None:
    """CIFAR's own files (Python 2, numpy 1) name ``numpy.core.multiarray._reconstruct``:
    rewrite a protocol-2 pickle to use those names and check it still loads."""
    folder = tmp_path / "cifar-10-batches-py"
    data = write_cifar10(folder, n=2, protocol=2)
    for name in CIFAR10_FILES:
        raw = (folder / name).read_bytes()
        assert b"numpy._core.multiarray" in raw
        (folder / name).write_bytes(raw.replace(b"numpy._core.multiarray",
                                                b"numpy.core.multiarray"))
    b = load_dataset("cifar10", root=str(tmp_path), normalize=False)
    x, _ = b.train.tensors  # type: ignore[attr-defined]
    assert float(x[0, 0, 0, 0]) == pytest.approx(data[0, 0] / 255.0)


def test_allowed_global_used_as_a_gadget_is_refused(tmp_path: Path) -> None:
    """``_codecs.encode`` is allowed only for what Python 3 pickles bytes as (latin-1)."""
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    blob = (b"\x80\x02}q\x00(C\x04dataq\x01c_codecs\nencode\nq\x02X\x01\x00\x00\x00x"
            b"X\x04\x00\x00\x00zlibq\x03\x86q\x04Rq\x05u.")
    (folder / "data_batch_1").write_bytes(blob)
    with pytest.raises(DataError, match="malformed file"):
        load_dataset("cifar10", root=str(tmp_path))


def run_config(tmp_path: Path, root: Path) -> Path:
    cfg = {"seed": 0, "model": {"name": "mlp", "options": {"hidden": [8]}},
           "data": {"name": "cifar10", "root": str(root), "batch_size": 4,
                    "train_limit": 8, "test_limit": 4},
           "train": {"epochs": 1, "device": "cpu"},
           "prune": {"criterion": "magnitude", "sparsity": 0.5, "schedule": "one_shot"}}
    path = tmp_path / "cifar.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_prunetune_run_refuses_crafted_batch_and_loads_a_real_one(tmp_path: Path) -> None:
    evil = tmp_path / "evil"
    write_cifar10(evil / "cifar-10-batches-py")
    marker = tmp_path / "marker"
    (evil / "cifar-10-batches-py" / "data_batch_1").write_bytes(
        crafted_batch("os.system", marker))
    p = prunetune("run", run_config(tmp_path, evil), cwd=tmp_path)
    assert_refused(p, "refusing", "data_batch_1", "posix.system", stdout_empty=False)
    assert not marker.exists()

    good = tmp_path / "good"
    write_cifar10(good / "cifar-10-batches-py", n=2)
    out = tmp_path / "r.json"
    p = prunetune("run", run_config(tmp_path, good), "--json", out, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "result written" in p.stdout and out.exists()


def cifar_schedule(tmp_path: Path, root: Path) -> Path:
    """A tuned schedule (through the real exporter's data model) whose trial reads ``root``."""
    from pruning_core.trials.experiment import prunable_layers
    from pruning_core.trials.registries import load_trial_config
    from pruning_core.trials.tuned import Schedule

    cfg = load_trial_config(yaml.safe_load(run_config(tmp_path, root).read_text()))
    layers = prunable_layers(cfg)
    s = Schedule.from_trial(cfg, layers, {i.name: 0.5 for i in layers},
                            {"model": "mlp", "dataset": "cifar10"})
    path = tmp_path / "shared.yaml"
    s.save(path)
    assert yaml.safe_load(path.read_text())["trial"]["data"]["root"] == str(root)
    return path


@pytest.mark.slow
def test_apply_never_reads_a_directory_the_schedule_names(tmp_path: Path) -> None:
    evil = tmp_path / "evil"
    write_cifar10(evil / "cifar-10-batches-py")
    marker = tmp_path / "marker"
    (evil / "cifar-10-batches-py" / "data_batch_1").write_bytes(crafted_batch("builtins.exec",
                                                                               marker))
    sched = cifar_schedule(tmp_path, evil)
    # the shared file alone: refused before any data is read
    assert_refused(prunetune("apply", sched, cwd=tmp_path), "trial.data.root", "--set data.root")
    # naming the dataset without a directory: the schedule's directory is dropped, not read
    assert_refused(prunetune("apply", sched, "--data", "cifar10", cwd=tmp_path),
                   "no data directory given", stdout_empty=False)
    # the user explicitly trusting that directory still gets the refusing reader
    assert_refused(prunetune("apply", sched, "--set", f"data.root={evil}", cwd=tmp_path),
                   "refusing", "builtins.exec", stdout_empty=False)
    assert not marker.exists()
    # another dataset the user names: runs
    p = prunetune("apply", sched, "--data", "digits", "--set", "data.train_limit=64",
                  cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert not marker.exists()
