"""The set of ports one deployment uses, built for a backend from the settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamboard.ports import (
    AppRegistry,
    BoardStore,
    Catalog,
    DeadLetterQueue,
    DeliveryStreams,
    EventStream,
    Lake,
    ProfileStore,
    QueryEngine,
)
from streamboard.registry import REGISTRY, Registry
from streamboard.settings import Settings


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
    # Starts a leaderboard refresh; set by whoever runs the pipeline (the local runtime, or AWS).
    refresh: Callable[[], dict[str, Any]] | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def build_local_backend(settings: Settings, registry: Registry = REGISTRY, **query_options: Any) -> Backend:
    """Every port on the embedded backend, with all state under ``settings.data_dir``."""
    from streamboard.adapters.local.catalog import LocalCatalog
    from streamboard.adapters.local.delivery import LocalDeliveryStreams
    from streamboard.adapters.local.lake import LocalLake
    from streamboard.adapters.local.query import LocalQueryEngine
    from streamboard.adapters.local.queue import LocalQueue
    from streamboard.adapters.local.stores import LocalAppRegistry, LocalBoardStore, LocalProfileStore
    from streamboard.adapters.local.stream import LocalEventStream

    root = Path(settings.data_dir)
    root.mkdir(parents=True, exist_ok=True)
    catalog = LocalCatalog(root / "catalog.db")
    lake = LocalLake(root / "lake")
    return Backend(
        settings=settings,
        registry=registry,
        stream=LocalEventStream(root / "stream.db", shards=settings.shards),
        dlq=LocalQueue(root / "queues.db", "ingest-dlq"),
        router_failures=LocalQueue(root / "queues.db", "router-failures"),
        delivery=LocalDeliveryStreams(root / "firehose.db"),
        lake=lake,
        catalog=catalog,
        query=LocalQueryEngine(lake.root, catalog, **query_options),
        boards=LocalBoardStore(root / "boards.db"),
        profiles=LocalProfileStore(root / "profiles.db"),
        apps=LocalAppRegistry(root / "apps.db"),
    )
