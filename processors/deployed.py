"""The backend of a deployed Lambda, built lazily (never at import time) from its environment."""

from __future__ import annotations

import functools

from streamboard.backend import Backend, build_local_backend
from streamboard.errors import ConfigError
from streamboard.settings import load_settings


@functools.cache
def backend() -> Backend:
    settings = load_settings()
    if settings.backend == "local":
        return build_local_backend(settings)
    raise ConfigError(f"backend {settings.backend!r} is not available in this build (only 'local')")
