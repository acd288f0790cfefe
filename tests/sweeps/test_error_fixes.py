"""A trial's ``error`` names the fix where the cause is a known Ray error with a cure in the
space (``sweeps.tune.recorder.ERROR_FIXES``)."""

from __future__ import annotations

import inspect

from ray import tune

from sweeps.tune.recorder import ERROR_FIXES, with_fix

#: the last line of a resumed trial's error file when its checkpoint was deleted (Ray 2.x)
LOST = ("ValueError: Could not recover from checkpoint as it does not exist on storage "
        "anymore. Got storage fs type `local` and path: /r/tune/t1/checkpoint_000003")


def test_a_lost_checkpoint_names_the_field_and_the_fix() -> None:
    out = with_fix(LOST)
    assert out.startswith(LOST)  # Ray's own line kept whole
    assert "budget.keep_checkpoints: null" in out and "docs/sweeps.md" in out
    assert "\n" not in out  # still one line for the row and the console


def test_other_errors_are_left_as_they_are() -> None:
    line = "RuntimeError: mat1 and mat2 shapes cannot be multiplied (4x3 and 5x2)"
    assert with_fix(line) == line


def test_every_phrase_is_still_in_rays_code() -> None:
    """Fails loudly when Ray rewords the message: the hint would then never show."""
    source = inspect.getsource(tune.Trainable.restore)
    for phrase in ERROR_FIXES:
        assert phrase in source, phrase
