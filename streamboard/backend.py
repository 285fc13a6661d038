"""The set of ports one deployment uses, built for a backend from the settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamboard.ports import (
    AppRegistry,
    BoardStore,
    Catalog,
    DeadLetterQueue,
    DeliveryStreams,
    EventStream,
    Lake,
    PipelineHealth,
    ProfileStore,
    QueryEngine,
    RankStore,
)
from streamboard.registry import REGISTRY, Registry
from streamboard.settings import Settings

if TYPE_CHECKING:
    from streamboard.usage import Usage


@dataclass
class Backend:
    settings: Settings
    registry: Registry
    stream: EventStream
    dlq: DeadLetterQueue
    router_failures: DeadLetterQueue
    delivery: DeliveryStreams
    lake: Lake
    catalog: Catalog
    query: QueryEngine
    boards: BoardStore
    profiles: ProfileStore
    apps: AppRegistry
    ranks: RankStore
    # Starts a leaderboard refresh; set by whoever runs the pipeline (the local runtime, or AWS).
    refresh: Callable[..., dict[str, Any]] | None = None  # refresh(full=False)
    # Where the incremental refresh's steps run, next to its state tables (the query engine when None).
    refresh_query: QueryEngine | None = None
    # The billable units the local stack counts (None on AWS, where AWS bills them).
    usage: Usage | None = None
    # GET /v1/health's pipeline figures: CloudWatch on AWS; set by the local runtime, which has the meters.
    health: PipelineHealth | None = None


def build_backend(settings: Settings, registry: Registry = REGISTRY) -> Backend:
    """The backend named by ``settings.backend``."""
    if settings.backend == "local":
        return build_local_backend(settings, registry)
    if settings.backend == "aws":
        return build_aws_backend(settings, registry)
    from streamboard.errors import ConfigError

    raise ConfigError(f"unknown backend {settings.backend!r}; use 'local' or 'aws'")


def build_aws_backend(settings: Settings, registry: Registry = REGISTRY, clients: Any = None) -> Backend:
    """Every port on AWS (boto3); clients are created lazily on first use."""
    from streamboard.adapters.aws.catalog import GlueCatalog
    from streamboard.adapters.aws.clients import Clients
    from streamboard.adapters.aws.delivery import FirehoseDelivery
    from streamboard.adapters.aws.health import CloudWatchHealth
    from streamboard.adapters.aws.lake import S3Lake
    from streamboard.adapters.aws.query import AthenaQueryEngine
    from streamboard.adapters.aws.queue import SqsQueue
    from streamboard.adapters.aws.stores import DynamoAppRegistry, DynamoBoardStore, DynamoProfileStore
    from streamboard.adapters.aws.stream import KinesisEventStream
    from streamboard.ranks import RankTrees

    clients = clients or Clients(settings.region, settings.endpoint_url)
    lake = S3Lake(clients, settings.lake_bucket, settings.lake_prefix)
    boards = DynamoBoardStore(clients, settings.boards_table, copies=settings.board_copies,
                              cache_seconds=settings.board_cache_seconds)
    dlq = SqsQueue(clients, settings.dlq_name)
    return Backend(
        settings=settings,
        registry=registry,
        stream=KinesisEventStream(clients, settings.stream_name),
        dlq=dlq,
        router_failures=SqsQueue(clients, settings.router_failures_name),
        delivery=FirehoseDelivery(clients, settings.delivery_prefix),
        lake=lake,
        catalog=GlueCatalog(clients, settings.glue_database, lake.location),
        query=AthenaQueryEngine(clients, settings.athena_workgroup, settings.glue_database, settings.athena_output),
        boards=boards,
        profiles=DynamoProfileStore(clients, settings.profiles_table),
        apps=DynamoAppRegistry(clients, settings.apps_table),
        # the ranks' items live in the boards' table (keys of their own); a large write runs 8 calls at a time
        ranks=RankTrees(boards.table, copies=settings.board_copies, cache_seconds=settings.board_cache_seconds,
                        workers=8),
        health=CloudWatchHealth(clients, settings.stream_name, dlq),
    )


def build_emulated_aws_backend(settings: Settings, registry: Registry = REGISTRY) -> Backend:
    """The aws adapters against an AWS-compatible endpoint, with DuckDB standing in for Athena (moto runs no SQL).
    Creates the resources first (on AWS itself the CDK app does)."""
    from streamboard.adapters.aws.provision import provision
    from streamboard.runtime.aws_emulation import MirroredQueryEngine

    clients = provision(settings, registry)
    backend = build_aws_backend(settings, registry, clients)
    mirror = Path(settings.data_dir) / "lake-mirror"
    backend.query = MirroredQueryEngine(backend.lake, backend.catalog, mirror)  # type: ignore[arg-type]
    backend.refresh_query = MirroredQueryEngine(backend.lake, backend.catalog, mirror,  # type: ignore[arg-type]
                                                state_path=Path(settings.data_dir) / "state" / "state.duckdb",
                                                memory_limit_mb=settings.refresh_memory_mb)
    return backend


def build_local_backend(settings: Settings, registry: Registry = REGISTRY, **query_options: Any) -> Backend:
    """Every port on the embedded backend, with all state under ``settings.data_dir``."""
    from streamboard.adapters.local.catalog import LocalCatalog
    from streamboard.adapters.local.delivery import LocalDeliveryStreams
    from streamboard.adapters.local.lake import LocalLake
    from streamboard.adapters.local.query import LocalQueryEngine
    from streamboard.adapters.local.queue import LocalQueue
    from streamboard.adapters.local.stores import LocalAppRegistry, LocalBoardStore, LocalProfileStore
    from streamboard.adapters.local.stream import LocalEventStream
    from streamboard.ranks import RankTrees

    root = Path(settings.data_dir)
    root.mkdir(parents=True, exist_ok=True)
    catalog = LocalCatalog(root / "catalog.db")
    lake = LocalLake(root / "lake")
    from streamboard.usage import Usage

    usage = Usage(root / "usage.db")
    boards = LocalBoardStore(root / "boards.db", usage=usage, copies=settings.board_copies,
                             cache_seconds=settings.board_cache_seconds)
    return Backend(
        settings=settings,
        registry=registry,
        stream=LocalEventStream(root / "stream.db", shards=settings.shards, usage=usage),
        dlq=LocalQueue(root / "queues.db", "ingest-dlq"),
        router_failures=LocalQueue(root / "queues.db", "router-failures"),
        delivery=LocalDeliveryStreams(root / "firehose.db", usage=usage),
        lake=lake,
        catalog=catalog,
        query=LocalQueryEngine(lake.root, catalog, horizon_days=settings.dedupe_horizon_days, usage=usage,
                               **query_options),
        refresh_query=LocalQueryEngine(lake.root, catalog, state_path=root / "state" / "state.duckdb",
                                       memory_limit_mb=settings.refresh_memory_mb,
                                       horizon_days=settings.dedupe_horizon_days, usage=usage),
        boards=boards,
        profiles=LocalProfileStore(root / "profiles.db", usage=usage),
        apps=LocalAppRegistry(root / "apps.db", usage=usage),
        ranks=RankTrees(boards.table, copies=settings.board_copies, cache_seconds=settings.board_cache_seconds),
        usage=usage,
    )
