"""Deployment knobs: one frozen object per environment (dev/prod), overridable from CDK context.

``npx aws-cdk@2 deploy -c env=prod -c shard_count=8`` or ``python infra/app.py -c env=prod``.
Every knob has a default per environment here, so ``python infra/app.py`` with no context
synthesizes dev.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Prescale:
    """Scheduled pre-scaling of the ingest service for a known daily peak (cron fields, UTC)."""

    name: str
    start_hour: int
    start_minute: int
    end_hour: int
    end_minute: int
    min_tasks: int


@dataclass(frozen=True)
class DeploymentConfig:
    """Everything that differs between environments; the stack reads nothing else."""

    env_name: str
    # Naming: resources with explicit names (delivery streams, workgroups) start with ``name``.
    name: str
    glue_database: str
    lake_prefix: str = "lake"
    retain_data: bool = False
    log_retention_days: int = 30
    # network
    max_azs: int = 2
    nat_gateways: int = 1
    # stream
    stream_mode: str = "on_demand"  # or "provisioned"
    shard_count: int = 2  # provisioned mode only
    stream_retention_hours: int = 24
    # router event source mapping
    router_batch_size: int = 500
    router_batching_window_seconds: int = 5
    router_parallelization_factor: int = 2
    router_max_retries: int = 5
    router_max_record_age_hours: int = 24
    router_reserved_concurrency: int = 10  # 0: no reservation
    router_memory_mb: int = 512
    # delivery (Firehose with Parquet conversion needs a buffer of at least 64 MiB)
    firehose_buffer_mib: int = 64
    firehose_buffer_seconds: int = 60
    # catalog and analytics
    crawler_schedule: str = "cron(10 * * * ? *)"  # hourly, after Firehose's buffers of the hour flushed
    refresh_schedule_minutes: int = 60
    athena_bytes_scanned_limit_gb: int = 10
    athena_results_days: int = 30
    lake_infrequent_access_days: int = 30
    logs_expiry_days: int = 90
    # ingest service
    ingest_cpu: int = 512
    ingest_memory_mib: int = 1024
    ingest_min_tasks: int = 1
    ingest_max_tasks: int = 4
    ingest_cpu_target_percent: int = 60
    ingest_requests_per_target: int = 2000  # per minute, ALB RequestCountPerTarget
    ingest_stop_timeout_seconds: int = 30  # uvicorn's graceful shutdown is 20 s
    ingest_deregistration_delay_seconds: int = 30
    prescale: tuple[Prescale, ...] = ()
    certificate_arn: str = ""  # with one, the ALB listens on HTTPS 443 and redirects 80
    # read API
    api_rate_limit: int = 200  # requests per second, steady
    api_burst_limit: int = 400
    # CDN in front of the read API: WAF blocks an IP above this many requests per 5 minutes (cache hits count too)
    cdn_rate_limit_per_ip: int = 2000
    cdn_price_class: str = "PriceClass_100"  # edge locations: PriceClass_100 (NA, EU), _200, or _All
    # head copies per board (streamboard.boards): one DynamoDB item serves about 3,000 read units/s
    board_copies: int = 2
    # DLQ redrive into the stream (0: only on demand)
    redrive_every_minutes: int = 15
    # monitoring
    alarm_email: str = ""
    iterator_age_alarm_seconds: int = 300
    freshness_alarm_seconds: int = 900
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def athena_bytes_scanned_limit(self) -> int:
        return self.athena_bytes_scanned_limit_gb * 1024**3

    @property
    def delivery_prefix(self) -> str:
        """Delivery stream names are ``<delivery_prefix><event type>`` (the router's naming rule)."""
        return f"{self.name}-"


PRESETS: dict[str, DeploymentConfig] = {
    "dev": DeploymentConfig(env_name="dev", name="streamboard-dev", glue_database="streamboard_dev"),
    "prod": DeploymentConfig(
        env_name="prod",
        name="streamboard",
        glue_database="streamboard",
        retain_data=True,
        log_retention_days=365,
        max_azs=3,
        nat_gateways=2,
        stream_retention_hours=168,
        router_parallelization_factor=4,
        router_reserved_concurrency=100,
        router_memory_mb=1024,
        firehose_buffer_mib=128,
        firehose_buffer_seconds=300,
        athena_bytes_scanned_limit_gb=100,
        logs_expiry_days=365,
        ingest_cpu=1024,
        ingest_memory_mib=2048,
        ingest_min_tasks=2,
        ingest_max_tasks=20,
        ingest_stop_timeout_seconds=30,
        prescale=(Prescale("evening-peak", 17, 30, 23, 0, 6),),
        api_rate_limit=1000,
        api_burst_limit=2000,
        cdn_price_class="PriceClass_All",
        redrive_every_minutes=5,
    ),
}

WAF_RATE_LIMIT_MIN, WAF_RATE_LIMIT_MAX = 10, 2_000_000_000
CDN_PRICE_CLASSES = ("PriceClass_100", "PriceClass_200", "PriceClass_All")
BOARD_COPIES_MAX = 16
_FIELDS = {f.name: f for f in dataclasses.fields(DeploymentConfig)}
_NOT_FROM_CONTEXT = {"env_name", "extra", "prescale"}


def _coerce(name: str, raw: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(raw, str):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"context {name}={raw!r}: expected true or false")
            return raw.lower() in ("true", "1", "yes")
        return bool(raw)
    if isinstance(default, int):
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ValueError(f"context {name}={raw!r}: expected an integer") from None
    return str(raw)


def config_from_context(get: Any) -> DeploymentConfig:
    """Build the config from a context getter (``app.node.try_get_context``): ``env`` picks the preset."""
    env_name = get("env") or "dev"
    if env_name not in PRESETS:
        raise ValueError(f"context env={env_name!r}: expected one of {', '.join(PRESETS)}")
    base = PRESETS[env_name]
    changes: dict[str, Any] = {}
    for name in _FIELDS:
        if name in _NOT_FROM_CONTEXT:
            continue
        raw = get(name)
        if raw is not None:
            changes[name] = _coerce(name, raw, getattr(base, name))
    raw_prescale = get("prescale")
    if raw_prescale is not None:
        items = json.loads(raw_prescale) if isinstance(raw_prescale, str) else raw_prescale
        changes["prescale"] = tuple(Prescale(**item) for item in items)
    config = dataclasses.replace(base, **changes)
    if config.stream_mode not in ("on_demand", "provisioned"):
        raise ValueError(f"context stream_mode={config.stream_mode!r}: expected on_demand or provisioned")
    if config.firehose_buffer_mib < 64:
        raise ValueError("firehose_buffer_mib must be at least 64 (Firehose's minimum with Parquet conversion)")
    if not WAF_RATE_LIMIT_MIN <= config.cdn_rate_limit_per_ip <= WAF_RATE_LIMIT_MAX:
        raise ValueError(f"cdn_rate_limit_per_ip must be from {WAF_RATE_LIMIT_MIN} to {WAF_RATE_LIMIT_MAX} "
                         "(requests per IP per 5 minutes, WAF's range for a rate-based rule)")
    if not 1 <= config.board_copies <= BOARD_COPIES_MAX:
        raise ValueError(f"board_copies must be from 1 to {BOARD_COPIES_MAX} (head items per board)")
    if config.cdn_price_class not in CDN_PRICE_CLASSES:
        raise ValueError(f"context cdn_price_class={config.cdn_price_class!r}: expected one of "
                         f"{', '.join(CDN_PRICE_CLASSES)}")
    return config
