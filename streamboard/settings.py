"""Settings in one place: environment variable names, read once into a frozen object.

On AWS the CDK is the only writer of these variables; locally the CLI flags
override them. Secrets (API keys) are never read from here on AWS: the app
registry stores their hashes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from streamboard.errors import ConfigError

ENV_BACKEND = "STREAMBOARD_BACKEND"
ENV_DATA_DIR = "STREAMBOARD_DATA_DIR"
ENV_API_KEY = "STREAMBOARD_API_KEY"
ENV_ADMIN_KEY = "STREAMBOARD_ADMIN_KEY"
ENV_INGEST_PORT = "STREAMBOARD_INGEST_PORT"
ENV_API_PORT = "STREAMBOARD_API_PORT"
ENV_SHARDS = "STREAMBOARD_SHARDS"
ENV_BATCH_SIZE = "STREAMBOARD_ROUTER_BATCH_SIZE"
ENV_MAX_RETRIES = "STREAMBOARD_ROUTER_MAX_RETRIES"
ENV_BUFFER_BYTES = "STREAMBOARD_FIREHOSE_BUFFER_BYTES"
ENV_BUFFER_SECONDS = "STREAMBOARD_FIREHOSE_BUFFER_SECONDS"
ENV_REFRESH_SECONDS = "STREAMBOARD_REFRESH_SECONDS"
ENV_CRAWL_SECONDS = "STREAMBOARD_CRAWL_SECONDS"
ENV_MAX_FUTURE_SECONDS = "STREAMBOARD_MAX_FUTURE_SECONDS"
ENV_TOP_K = "STREAMBOARD_TOP_K"
ENV_LINGER_MS = "STREAMBOARD_INGEST_LINGER_MS"

DEFAULT_API_KEY = "local-dev-key"
DEFAULT_ADMIN_KEY = "local-admin-key"


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the local stack's defaults."""

    backend: str = "local"
    data_dir: Path = field(default_factory=lambda: Path("./data"))
    host: str = "127.0.0.1"
    ingest_port: int = 8080
    api_port: int = 8081
    # Local-stack keys only: provisioned (hashed) into the app registry at start-up.
    api_key: str = DEFAULT_API_KEY
    admin_key: str = DEFAULT_ADMIN_KEY
    shards: int = 2
    router_batch_size: int = 500
    router_max_retries: int = 3
    router_bisect_on_error: bool = True
    firehose_buffer_bytes: int = 1 << 20
    firehose_buffer_seconds: float = 60.0
    crawl_seconds: float = 3600.0
    refresh_seconds: float = 3600.0
    poll_seconds: float = 0.2
    max_future_seconds: float = 15 * 60
    top_k: int = 1000
    ingest_linger_ms: float = 2.0
    ingest_max_body: int = 1 << 20
    ingest_max_events: int = 500

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with the given fields changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]


def _num(env: Mapping[str, str], name: str, default: float, kind: type = float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must not be negative")
    return value  # type: ignore[no-any-return]


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from the environment (``os.environ`` by default)."""
    env = os.environ if env is None else env
    d = Settings()
    return Settings(
        backend=env.get(ENV_BACKEND, d.backend),
        data_dir=Path(env.get(ENV_DATA_DIR, str(d.data_dir))),
        ingest_port=int(_num(env, ENV_INGEST_PORT, d.ingest_port, int)),
        api_port=int(_num(env, ENV_API_PORT, d.api_port, int)),
        api_key=env.get(ENV_API_KEY) or d.api_key,
        admin_key=env.get(ENV_ADMIN_KEY) or d.admin_key,
        shards=max(1, int(_num(env, ENV_SHARDS, d.shards, int))),
        router_batch_size=max(1, int(_num(env, ENV_BATCH_SIZE, d.router_batch_size, int))),
        router_max_retries=int(_num(env, ENV_MAX_RETRIES, d.router_max_retries, int)),
        firehose_buffer_bytes=int(_num(env, ENV_BUFFER_BYTES, d.firehose_buffer_bytes, int)),
        firehose_buffer_seconds=_num(env, ENV_BUFFER_SECONDS, d.firehose_buffer_seconds),
        crawl_seconds=_num(env, ENV_CRAWL_SECONDS, d.crawl_seconds),
        refresh_seconds=_num(env, ENV_REFRESH_SECONDS, d.refresh_seconds),
        max_future_seconds=_num(env, ENV_MAX_FUTURE_SECONDS, d.max_future_seconds),
        top_k=max(1, int(_num(env, ENV_TOP_K, d.top_k, int))),
        ingest_linger_ms=_num(env, ENV_LINGER_MS, d.ingest_linger_ms),
    )
