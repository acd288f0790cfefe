"""The one guarded YAML reader (``pruning_core.config.read_yaml_file`` / ``parse_yaml``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pruning_core.base.errors import ConfigError
from pruning_core.config import MAX_YAML_NODES, parse_yaml, read_yaml_file


def bomb(levels: int, width: int = 9) -> str:
    """The billion-laughs document: ``width ** levels`` leaves from a few hundred bytes."""
    lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_fast() -> None:
    text = bomb(9)  # 9**9 = 387M leaves
    assert len(text) < 1000
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="alias bomb"):
        parse_yaml(text, "config c.yaml")
    assert time.perf_counter() - start < 2.0


def test_a_few_aliases_are_fine() -> None:
    # 9**3 + 9**2 + 9 + 1 + ... nodes: well under the limit, so it loads
    data, _ = parse_yaml(bomb(3), "s")
    assert len(data["a3"]) == 9 and data["a3"][0][0][0] == ["x"] * 9
    assert 9**4 < MAX_YAML_NODES < 9**6
    with pytest.raises(ConfigError, match="alias bomb"):
        parse_yaml(bomb(6), "s")  # 9**6 = 531441 leaves


def test_merge_keys_and_anchors_of_a_real_config_load() -> None:
    text = "base: &b {lr: 0.1, epochs: 3}\ntrain:\n  <<: *b\n  lr: 0.2\n"
    data, _ = parse_yaml(text, "s")
    assert data["train"] == {"lr": 0.2, "epochs": 3}


@pytest.mark.parametrize(("text", "needle"), [
    ("a: 1\na: 2\n", "a (line 2): duplicate key (first at line 1)"),
    ("p:\n  q: {x: 1, x: 2}\n", "p.q.x (line 2): duplicate key"),
    ("a: &a [*a]\n", "recursive alias"),
    ("a: &a\n  b: *a\n", "recursive alias"),
    ("[" * 5000 + "]" * 5000, "nested"),
    ("- " * 300 + "x\n", "nested deeper than"),
    ("!!python/object/apply:os.system ['true']\n", "not valid YAML"),
    ("a: !!int abc\n", "not valid YAML"),
    ("a: [unclosed\n", "(line 2): not valid YAML"),
    ("a: !!timestamp 2020-13-45\n", "not valid YAML"),
])
def test_hostile_documents_are_one_line_errors(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_yaml(text, "config c.yaml")
    msg = str(exc.value)
    assert needle in msg and msg.startswith("config c.yaml") and "\n" not in msg


def test_files_naming_the_file(tmp_path: Path) -> None:
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin.yaml: not UTF-8 text \(byte 0xe9 at offset 9"):
        read_yaml_file(latin, "config")
    with pytest.raises(ConfigError, match="no such file"):
        read_yaml_file(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        read_yaml_file(tmp_path)
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping .* got list"):
        read_yaml_file(lst, "schedule")
    assert read_yaml_file(lst, mapping=False)[0] == ["a", "b"]
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert read_yaml_file(empty)[0] == {}
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbfa: 1\n")  # a UTF-8 byte-order mark is fine
    assert read_yaml_file(bom)[0] == {"a": 1}
    nonstr = tmp_path / "key.yaml"
    nonstr.write_text("1: a\n")
    with pytest.raises(ConfigError, match="top-level key 1 is not a name"):
        read_yaml_file(nonstr)
