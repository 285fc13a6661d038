"""The backend of a deployed Lambda, built lazily (never at import time) from its environment."""

from __future__ import annotations

import functools

from streamboard.backend import Backend, build_backend
from streamboard.settings import load_settings


@functools.cache
def backend() -> Backend:
    """Built on the first invocation from the environment the CDK sets (``STREAMBOARD_BACKEND=aws``)."""
    return build_backend(load_settings())
