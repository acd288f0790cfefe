"""Environment for joining a Ray cluster, set before ``ray`` is imported (it reads it once)."""

from __future__ import annotations

import os
from pathlib import Path


def client_auth_defaults() -> None:
    """Send the cluster's auth token when one is available (never generate one).

    Ray 2.60 clusters started with ``ray start`` require token auth, while clients default to
    ``RAY_AUTH_MODE=disabled``. An explicit ``RAY_AUTH_MODE`` is left alone.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"
