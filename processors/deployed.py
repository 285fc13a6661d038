"""The backend of a deployed Lambda, built lazily (never at import time) from its environment."""

from __future__ import annotations

import functools
from typing import Any

from streamboard.backend import Backend, build_backend
from streamboard.settings import load_settings


@functools.cache
def backend() -> Backend:
    """Built on the first invocation from the environment the CDK sets (``STREAMBOARD_BACKEND=aws``).

    On AWS an on-demand refresh starts (or resumes) a refresh batch and returns its first query's id; the
    writer Lambda continues the chain on each query's state-change event and replaces the boards."""
    b = build_backend(load_settings())
    if b.refresh is None:
        def start(full: bool = False) -> dict[str, Any]:
            from processors.leaderboards import start_chain

            return {"query_ids": [start_chain(b, full=full)], "state": "QUEUED"}

        b.refresh = start
    return b
