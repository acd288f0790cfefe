import pytest

from pruning_core.base.errors import ConfigError
from pruning_core.base.registry import Registry


def test_register_get_names_and_errors():
    reg: Registry[int] = Registry("widget")
    reg.add("b", 2)
    reg.register("a")(1)
    assert reg.names() == ["a", "b"] and reg.get("b") == 2 and "a" in reg and len(reg) == 2
    with pytest.raises(ConfigError, match="unknown widget 'c'; valid: a, b"):
        reg.get("c")
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("a", 3)
