"""Masks files: mutations of one written by ``prunetune run --masks`` (a fixture).

No ``prunetune`` command reads a masks file (``run``/``apply --masks`` only write one; the
output-path rules for ``--masks`` live in test_run_fuzz.py and test_apply_fuzz.py), so the
reader, ``MaskSet.load``, is fuzzed directly: every input is refused with a one-line
``ConfigError`` naming the file, or loads to exactly the 0/1 masks it holds.

Rules: truncation at every 1/8 of the file, header damage, a pickle in place of the file,
metadata (format/version) mutations, values other than 0/1 in every float dtype, other 0/1
dtypes, shape mismatches, missing and extra tensors.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from pruning_core.base.errors import ConfigError
from pruning_core.masking.masks import MaskSet

Tensors = dict[str, torch.Tensor]


def _read(data: bytes, tmp: Path) -> tuple[Tensors, dict[str, str]]:
    from safetensors import safe_open

    p = tmp / "orig.safetensors"
    p.write_bytes(data)
    with safe_open(str(p), framework="pt") as f:
        return {n: f.get_tensor(n) for n in f.keys()}, dict(f.metadata() or {})


def _params(tensors: Tensors) -> dict[str, nn.Parameter]:
    return {n: nn.Parameter(torch.zeros(t.shape)) for n, t in tensors.items()}


def _save(tensors: Tensors, meta: dict[str, str] | None) -> Callable[[Path], bytes]:
    def make(tmp: Path) -> bytes:
        from safetensors.torch import save_file

        p = tmp / "m.safetensors"
        save_file({n: t.contiguous() for n, t in tensors.items()}, str(p), metadata=meta)
        return p.read_bytes()
    return make


#: content rules: (tensors, metadata) -> (tensors, metadata); None metadata = no metadata
ContentRule = Callable[[Tensors, dict[str, str]], tuple[Tensors, dict[str, str] | None]]


def _first(t: Tensors) -> str:
    return sorted(t)[0]


def _with_value(value: float, dtype: torch.dtype) -> ContentRule:
    def rule(t: Tensors, m: dict[str, str]) -> tuple[Tensors, dict[str, str]]:
        out = {n: x.to(dtype) for n, x in t.items()}
        first = out[_first(out)].clone()
        first.view(-1)[0] = value
        out[_first(out)] = first
        return out, m
    return rule


def _meta(**kw: str | None) -> ContentRule:
    def rule(t: Tensors, m: dict[str, str]) -> tuple[Tensors, dict[str, str]]:
        new = {**m, **{k: v for k, v in kw.items() if v is not None}}
        for k, v in kw.items():
            if v is None:
                new.pop(k, None)
        return t, new
    return rule


def _dtype(dtype: torch.dtype) -> ContentRule:
    return lambda t, m: ({n: x.to(dtype) for n, x in t.items()}, m)


CONTENT: list[Any] = [
    pytest.param(lambda t, m: (t, None), None, id="no-metadata"),
    *[pytest.param(_meta(format=f), None, id=f"format={f or 'empty'}")
      for f in ("", "prunetune-schedule", "PRUNETUNE-MASKS", "prunetune-masks ")],
    pytest.param(_meta(format=None), None, id="format-missing"),
    *[pytest.param(_meta(version=v), None, id=f"version={v or 'empty'}")
      for v in ("", "0", "2", "-1", "1.0", "abc", "99999999999999999999")],
    pytest.param(_meta(version="１"), "'１' (FULLWIDTH DIGIT ONE) is int 1 for Python: version 1",
                 id="version=fullwidth-1"),
    pytest.param(_meta(version=None), None, id="version-missing"),
    *[pytest.param(_with_value(v, d), None, id=f"value={v}-{str(d).split('.')[-1]}")
      for d in (torch.float32, torch.float64, torch.float16, torch.bfloat16)
      for v in (0.5, 7.0, -1.0, float("nan"), float("inf"))],
    *[pytest.param(_with_value(v, d), None, id=f"value={v}-{str(d).split('.')[-1]}")
      for d in (torch.int64, torch.int8) for v in (2, -1)],
    pytest.param(lambda t, m: ({n: x.T.contiguous() if x.dim() == 2 else x
                                for n, x in t.items()}, m), None, id="shape-transposed"),
    pytest.param(lambda t, m: ({n: x.reshape(-1) for n, x in t.items()}, m), None,
                 id="shape-flattened"),
    pytest.param(lambda t, m: ({n: x for n, x in t.items() if n != _first(t)}, m), None,
                 id="tensor-missing"),
    pytest.param(lambda t, m: ({}, m), None, id="no-tensors"),
    *[pytest.param(_dtype(d), f"{d} holding only 0 and 1", id=f"dtype-{str(d).split('.')[-1]}")
      for d in (torch.bool, torch.uint8, torch.int8, torch.int64, torch.float16,
                torch.bfloat16, torch.float32, torch.float64)],
    pytest.param(lambda t, m: ({**t, "extra.weight": torch.ones(3, dtype=torch.uint8)}, m),
                 "masks of layers the model does not have are not read (a file may cover "
                 "more layers than the include patterns select)", id="tensor-extra"),
]


@pytest.mark.parametrize(("rule", "valid"), CONTENT)
def test_masks_content(masks_bytes: bytes, tmp_path: Path, rule: ContentRule,
                       valid: str | None) -> None:
    tensors, meta = _read(masks_bytes, tmp_path)
    params = _params(tensors)
    new_t, new_m = rule(tensors, meta)
    path = tmp_path / "m.safetensors"
    path.write_bytes(_save(new_t, new_m)(tmp_path))
    _check(path, params, valid, tensors)


def _header(data: bytes, header: bytes) -> bytes:
    return struct.pack("<Q", len(header)) + header + data[8 + struct.unpack("<Q", data[:8])[0]:]


BYTES: list[Any] = [
    *[pytest.param(lambda d, i=i: d[: len(d) * i // 8], id=f"cut-{i}/8") for i in range(8)],
    pytest.param(lambda d: struct.pack("<Q", 2**63) + d[8:], id="header-length-huge"),
    pytest.param(lambda d: struct.pack("<Q", len(d)) + d[8:], id="header-length-past-end"),
    pytest.param(lambda d: _header(d, b"{not json"), id="header-not-json"),
    pytest.param(lambda d: _header(d, b"[]"), id="header-a-list"),
    pytest.param(lambda d: _header(d, "{\"é\xff\": 1}".encode("latin-1")), id="header-latin1"),
    pytest.param(lambda d: pickle.dumps({"1.weight": [1, 0]}), id="a-pickle"),
    pytest.param(lambda d: b"\x00" * len(d), id="all-zero"),
    pytest.param(lambda d: d + b"trailing", id="trailing-bytes"),
]


@pytest.mark.parametrize("mutate", BYTES)
def test_masks_bytes(masks_bytes: bytes, tmp_path: Path, mutate: Callable[[bytes], bytes]) -> None:
    tensors, _ = _read(masks_bytes, tmp_path)
    path = tmp_path / "m.safetensors"
    path.write_bytes(mutate(masks_bytes))
    _check(path, _params(tensors), None, tensors)


@pytest.mark.parametrize("make", [
    pytest.param(lambda t: t / "missing.safetensors", id="missing"),
    pytest.param(lambda t: t, id="directory"),
    pytest.param(lambda t: Path("/dev/null"), id="char-device"),
])
def test_masks_path(masks_bytes: bytes, tmp_path: Path, make: Callable[[Path], Path]) -> None:
    tensors, _ = _read(masks_bytes, tmp_path)
    _check(make(tmp_path), _params(tensors), None, tensors)


def _check(path: Path, params: dict[str, nn.Parameter], valid: str | None,
           original: Tensors) -> None:
    if valid is None:
        with pytest.raises(ConfigError) as info:
            MaskSet.load(path, params)
        msg = str(info.value)
        assert "\n" not in msg and str(path) in msg and msg.startswith("masks"), msg
        return
    masks = MaskSet.load(path, params)
    for n, m in original.items():
        assert masks[n].dtype == torch.bool
        assert torch.equal(masks[n], m != 0), n
