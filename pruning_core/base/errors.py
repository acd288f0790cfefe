"""Errors a user can fix. The CLI turns these into one line and exit code 2."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad input: the message names the field and the fix."""


class DataError(ConfigError):
    """A dataset could not be read from the place the user named."""
