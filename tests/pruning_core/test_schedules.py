import itertools

import pytest

from pruning_core.base.errors import ConfigError
from pruning_core.masking.schedules import SCHEDULES, sparsity_steps


@pytest.mark.parametrize("name", SCHEDULES.names())
@pytest.mark.parametrize("target", [0.5, 0.9, 0.98])
@pytest.mark.parametrize("steps", [1, 3, 10])
def test_contract_increasing_and_ends_at_target(name, target, steps):
    s = sparsity_steps(name, target, steps)
    assert s[-1] == pytest.approx(target)
    assert all(b > a for a, b in itertools.pairwise(s))
    assert all(0.0 <= x < 1.0 for x in s)


def test_snip_it_matches_reference_example():
    # REFERENCE.md: target 0.98, S=5 -> 0.5, 0.74, 0.86, 0.92, 0.95, 0.965, 0.98
    assert sparsity_steps("snip_it", 0.98, 5) == pytest.approx(
        [0.5, 0.74, 0.86, 0.92, 0.95, 0.965, 0.98])


def test_snip_it_at_or_below_half_is_one_shot():
    assert sparsity_steps("snip_it", 0.4, 5) == [0.4]


def test_exponential_prunes_equal_fractions_of_what_is_left():
    s = sparsity_steps("exponential", 0.99, 4)
    densities = [1 - x for x in s]
    ratios = [b / a for a, b in zip([1.0, *densities], densities, strict=False)]
    assert ratios == pytest.approx([0.01 ** 0.25] * 4)


def test_linear_and_cubic_values():
    assert sparsity_steps("linear", 0.8, 4) == pytest.approx([0.2, 0.4, 0.6, 0.8])
    # Zhu & Gupta: s_k = s (1 - (1 - k/N)^3)
    assert sparsity_steps("cubic", 0.8, 2) == pytest.approx([0.8 * (1 - 0.5**3), 0.8])


def test_one_shot_ignores_steps():
    assert sparsity_steps("one_shot", 0.9, 7) == [0.9]


def test_unknown_schedule_lists_valid_names():
    with pytest.raises(ConfigError, match="unknown schedule 'cosine'; valid: .*snip_it"):
        sparsity_steps("cosine", 0.9, 3)
