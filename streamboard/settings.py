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
ENV_LINGER_MS = "STREAMBOARD_INGEST_LINGER_MS"
ENV_RATE_LIMIT = "STREAMBOARD_RATE_LIMIT_EVENTS_PER_S"
ENV_RATE_BURST = "STREAMBOARD_RATE_LIMIT_BURST"
ENV_MAX_PENDING = "STREAMBOARD_INGEST_MAX_PENDING"
ENV_MAX_IN_FLIGHT = "STREAMBOARD_INGEST_MAX_IN_FLIGHT"
ENV_REQUEST_TIMEOUT = "STREAMBOARD_INGEST_REQUEST_TIMEOUT_S"
ENV_FAULT_FILE = "STREAMBOARD_FAULT_FILE"
ENV_STOP_TIMEOUT = "STREAMBOARD_STOP_TIMEOUT_S"
ENV_DEDUPE_HORIZON_DAYS = "STREAMBOARD_DEDUPE_HORIZON_DAYS"
ENV_REFRESH_MEMORY_MB = "STREAMBOARD_REFRESH_MEMORY_MB"
ENV_RECONCILE_WORKER_ROWS = "STREAMBOARD_PROFILE_RECONCILE_WORKER_ROWS"
ENV_HEADER_TIMEOUT = "STREAMBOARD_HEADER_TIMEOUT_S"
ENV_KEEP_ALIVE = "STREAMBOARD_KEEP_ALIVE_S"
ENV_MAX_CONNECTIONS = "STREAMBOARD_MAX_CONNECTIONS"
ENV_BOARD_COPIES = "STREAMBOARD_BOARD_COPIES"
ENV_BOARD_CACHE_SECONDS = "STREAMBOARD_BOARD_CACHE_S"

# The aws backend: resource names, set by the CDK on AWS (or by `streamboard up --backend aws`).
ENV_REGION = "AWS_REGION"
ENV_ENDPOINT_URL = "STREAMBOARD_ENDPOINT_URL"
ENV_STREAM_NAME = "STREAMBOARD_STREAM_NAME"
ENV_DLQ_NAME = "STREAMBOARD_DLQ_NAME"
ENV_ROUTER_FAILURES_NAME = "STREAMBOARD_ROUTER_FAILURES_NAME"
ENV_DELIVERY_PREFIX = "STREAMBOARD_DELIVERY_PREFIX"
ENV_LAKE_BUCKET = "STREAMBOARD_LAKE_BUCKET"
ENV_LAKE_PREFIX = "STREAMBOARD_LAKE_PREFIX"
ENV_GLUE_DATABASE = "STREAMBOARD_GLUE_DATABASE"
ENV_ATHENA_WORKGROUP = "STREAMBOARD_ATHENA_WORKGROUP"
ENV_ATHENA_OUTPUT = "STREAMBOARD_ATHENA_OUTPUT"
ENV_BOARDS_TABLE = "STREAMBOARD_BOARDS_TABLE"
ENV_PROFILES_TABLE = "STREAMBOARD_PROFILES_TABLE"
ENV_APPS_TABLE = "STREAMBOARD_APPS_TABLE"

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
    router_max_retries: int = 5
    router_bisect_on_error: bool = True
    router_retry_backoff_seconds: float = 0.5
    firehose_buffer_bytes: int = 1 << 20
    firehose_buffer_seconds: float = 60.0
    crawl_seconds: float = 3600.0
    refresh_seconds: float = 3600.0
    poll_seconds: float = 0.2
    max_future_seconds: float = 15 * 60
    ingest_linger_ms: float = 0.5  # while puts are in flight, how long the next batch may wait to fill up
    ingest_max_body: int = 1 << 20
    ingest_max_events: int = 500
    rate_limit_events_per_s: float = 50_000.0  # per app; 0 means unlimited
    rate_limit_burst: float = 100_000.0
    ingest_max_pending: int = 50_000  # events waiting for the stream before new requests get 503
    ingest_max_in_flight: int = 4  # PutRecords calls at once (one call takes at most 500 records)
    ingest_request_timeout_s: float = 20.0
    fault_file: Path | None = None  # fault injection, for tests and drills only
    stream_retention_hours: float = 24.0  # Kinesis's default retention
    stop_timeout_s: float = 25.0  # SIGTERM to exit, inside ECS's default 30 s stop timeout
    # An event_id counts once while its deliveries arrive within this many days of each other; never shorter
    # than the longest a delivery can take to reach the lake (the DLQ's retention: SQS keeps 14 days at most).
    dedupe_horizon_days: int = 30
    max_arrival_delay_days: int = 14
    refresh_memory_mb: int = 3072  # the local refresh's DuckDB memory limit; beyond it, it spills to disk
    # The profiles' reconcile of a batch runs as this many statements, each for a share of its players (by a
    # hash of user_id): an incremental batch's, and a full build's (every player). Each part's rows are
    # written before the next part runs: the local refresh holds one part in memory, and on AWS each part is
    # one writer invocation (a million players in one would not fit its 15 minutes).
    profile_reconcile_parts: int = 1
    profile_reconcile_parts_full: int = 8
    # The local refresh writes a batch's profiles on worker processes (two at most, for a full build's parts),
    # while it goes on with the ranks (their query and write), once the reconcile has at least this many rows:
    # two cores then do the per-player writes side by side. A smaller batch is written in the refresh's own
    # process (a worker's start-up, about 0.3 s to its first answer, would cost more than it saves).
    profile_reconcile_worker_rows: int = 20_000
    # Connection hygiene of every HTTP server (streamboard.serving).
    header_timeout_s: float = 10.0  # to receive a whole request head, then 408
    keep_alive_s: float = 5.0  # idle keep-alive; behind an ALB set it above the ALB's idle timeout
    max_connections: int = 4096  # per server; at the cap the longest-idle connection makes room
    # Board reads (streamboard.boards): head copies per board, spreading a hot board's reads over that many
    # items (one item serves about 3,000 read units/s; writer and readers take the same value), and how long a
    # process keeps a board's head before reading it again (0: every read; a cached board's age comes off its
    # max-age, so no response outlives the next refresh or the 300 s cap).
    board_copies: int = 2
    board_cache_seconds: float = 1.0
    # aws backend
    region: str = "us-east-1"
    endpoint_url: str | None = None
    stream_name: str = "streamboard-events"
    dlq_name: str = "streamboard-ingest-dlq"
    router_failures_name: str = "streamboard-router-failures"
    delivery_prefix: str = "streamboard-"
    lake_bucket: str = "streamboard-lake"
    lake_prefix: str = "lake"
    glue_database: str = "streamboard"
    athena_workgroup: str = "streamboard"
    athena_output: str = "s3://streamboard-lake/athena-results/"
    boards_table: str = "streamboard-boards"
    profiles_table: str = "streamboard-profiles"
    apps_table: str = "streamboard-apps"

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


def _horizon(env: Mapping[str, str]) -> int:
    d = Settings()
    days = int(_num(env, ENV_DEDUPE_HORIZON_DAYS, d.dedupe_horizon_days, int))
    if days < d.max_arrival_delay_days:
        raise ConfigError(f"{ENV_DEDUPE_HORIZON_DAYS}={days} is shorter than the {d.max_arrival_delay_days} days "
                          "a delivery can take to reach the lake (the DLQ's retention): a redriven copy would count "
                          "twice")
    return days


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
        ingest_linger_ms=_num(env, ENV_LINGER_MS, d.ingest_linger_ms),
        rate_limit_events_per_s=_num(env, ENV_RATE_LIMIT, d.rate_limit_events_per_s),
        rate_limit_burst=_num(env, ENV_RATE_BURST, d.rate_limit_burst),
        ingest_max_pending=int(_num(env, ENV_MAX_PENDING, d.ingest_max_pending, int)),
        ingest_max_in_flight=int(_num(env, ENV_MAX_IN_FLIGHT, d.ingest_max_in_flight, int)),
        ingest_request_timeout_s=_num(env, ENV_REQUEST_TIMEOUT, d.ingest_request_timeout_s),
        fault_file=Path(env[ENV_FAULT_FILE]) if env.get(ENV_FAULT_FILE) else None,
        stop_timeout_s=_num(env, ENV_STOP_TIMEOUT, d.stop_timeout_s),
        dedupe_horizon_days=_horizon(env),
        refresh_memory_mb=int(_num(env, ENV_REFRESH_MEMORY_MB, d.refresh_memory_mb, int)),
        profile_reconcile_worker_rows=max(0, int(_num(env, ENV_RECONCILE_WORKER_ROWS, d.profile_reconcile_worker_rows,
                                                      int))),
        header_timeout_s=_num(env, ENV_HEADER_TIMEOUT, d.header_timeout_s),
        keep_alive_s=_num(env, ENV_KEEP_ALIVE, d.keep_alive_s),
        max_connections=max(1, int(_num(env, ENV_MAX_CONNECTIONS, d.max_connections, int))),
        board_copies=max(1, int(_num(env, ENV_BOARD_COPIES, d.board_copies, int))),
        board_cache_seconds=_num(env, ENV_BOARD_CACHE_SECONDS, d.board_cache_seconds),
        region=env.get(ENV_REGION) or env.get("AWS_DEFAULT_REGION") or d.region,
        endpoint_url=env.get(ENV_ENDPOINT_URL) or None,
        stream_name=env.get(ENV_STREAM_NAME, d.stream_name),
        dlq_name=env.get(ENV_DLQ_NAME, d.dlq_name),
        router_failures_name=env.get(ENV_ROUTER_FAILURES_NAME, d.router_failures_name),
        delivery_prefix=env.get(ENV_DELIVERY_PREFIX, d.delivery_prefix),
        lake_bucket=env.get(ENV_LAKE_BUCKET, d.lake_bucket),
        lake_prefix=env.get(ENV_LAKE_PREFIX, d.lake_prefix),
        glue_database=env.get(ENV_GLUE_DATABASE, d.glue_database),
        athena_workgroup=env.get(ENV_ATHENA_WORKGROUP, d.athena_workgroup),
        athena_output=env.get(ENV_ATHENA_OUTPUT, d.athena_output),
        boards_table=env.get(ENV_BOARDS_TABLE, d.boards_table),
        profiles_table=env.get(ENV_PROFILES_TABLE, d.profiles_table),
        apps_table=env.get(ENV_APPS_TABLE, d.apps_table),
    )
