"""Ports: the small typed interfaces behind which every AWS touch point sits.

Each port has a ``local`` adapter (embedded: filesystem, SQLite, DuckDB) and an
``aws`` adapter (boto3). Domain code and handlers only see these protocols.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol


class StreamRecord(NamedTuple):
    """A record to put on the event stream (see :class:`streamboard.registry.Registry` for its data)."""

    partition_key: str
    data: bytes


@dataclass(frozen=True)
class PutResult:
    """Outcome of one record of a put: a sequence number, or an error code and message."""

    shard_id: str | None = None
    sequence_number: str | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None


@dataclass(frozen=True)
class ReadRecord:
    """A record read back from one shard of the stream."""

    shard_id: str
    sequence_number: str
    partition_key: str
    data: bytes
    arrival: float  # epoch seconds


class EventStream(Protocol):
    """The event stream (Kinesis): ordered per partition key, sharded."""

    def put_records(self, records: Sequence[StreamRecord]) -> list[PutResult]: ...
    def shard_ids(self) -> list[str]: ...
    def read(self, shard_id: str, after: str | None, limit: int) -> list[ReadRecord]: ...
    def latest(self, shard_id: str) -> str | None: ...


@dataclass(frozen=True)
class QueueMessage:
    receipt: str
    body: bytes


class DeadLetterQueue(Protocol):
    """A queue (SQS): the ingest fallback when the stream fails, and on-failure destinations."""

    def send(self, bodies: Sequence[bytes]) -> None: ...
    def receive(self, max_messages: int = 10) -> list[QueueMessage]: ...
    def delete(self, receipts: Sequence[str]) -> None: ...
    def release(self, receipts: Sequence[str]) -> None: ...  # visible again at once (a negative ack)
    def depth(self) -> int: ...


class DeliveryStreams(Protocol):
    """Firehose delivery streams, one per event type: records of at most 1,000 KiB, each carrying many events
    (``streamboard.packing``), any number per call. Returns the indexes of failed records."""

    def put_record_batch(self, stream: str, records: Sequence[bytes]) -> list[int]: ...


class Lake(Protocol):
    """The data lake (S3): objects by key."""

    def put_object(self, key: str, body: bytes) -> None: ...
    def get_object(self, key: str) -> bytes: ...
    def delete_object(self, key: str) -> None: ...
    def list_keys(self, prefix: str) -> list[str]: ...


@dataclass(frozen=True)
class Partition:
    values: tuple[str, ...]  # year, month, day, hour
    location: str  # key prefix in the lake
    created_at: float | None = None  # when the catalog registered it (epoch seconds), where known


class Catalog(Protocol):
    """The data catalog (Glue): one table per event type, partitions added by the crawl."""

    def ensure_table(self, name: str, columns: list[dict[str, str]], partition_keys: list[dict[str, str]]) -> None: ...
    def table_names(self) -> list[str]: ...
    def add_partitions(self, table: str, partitions: Sequence[Partition]) -> int: ...
    def partitions(self, table: str) -> list[Partition]: ...


@dataclass
class QueryStatus:
    query_id: str
    state: str  # QUEUED | RUNNING | SUCCEEDED | FAILED | CANCELLED
    reason: str | None = None
    sql: str | None = None  # the statement, as the engine keeps it


class QueryEngine(Protocol):
    """The query engine (Athena): Trino SQL over the catalog's tables and the views."""

    def start_query(self, sql: str) -> str: ...
    def status(self, query_id: str) -> QueryStatus: ...
    def results(self, query_id: str) -> list[dict[str, Any]]: ...


def wait_for_query(engine: QueryEngine, query_id: str, *, poll_seconds: float, timeout: float,
                   on_wait: Callable[[QueryStatus], None] | None = None) -> QueryStatus:
    """Poll a started query until it succeeds (its status), fails or is cancelled (:class:`QueryFailed`), or
    ``timeout`` seconds pass (:class:`TimeoutError`); ``on_wait`` sees each status it waits on."""
    from streamboard.errors import QueryFailed

    deadline = time.monotonic() + timeout
    while True:
        status = engine.status(query_id)
        if status.state == "SUCCEEDED":
            return status
        if status.state in ("FAILED", "CANCELLED"):
            raise QueryFailed(f"query {query_id} {status.state}: {status.reason}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"query {query_id} still {status.state} after {timeout:g} s")
        if on_wait is not None:
            on_wait(status)
        time.sleep(poll_seconds)


@dataclass(frozen=True)
class BoardEntry:
    rank: int
    user_id: str
    user_name: str | None
    score: int


@dataclass(frozen=True)
class Board:
    scope: str
    window: str
    as_of: str | None
    refreshed_at: str | None
    entries: tuple[BoardEntry, ...] = ()
    # Seconds since the store read this snapshot from its table, when it served it from its cache (0 when read
    # for this call): a response built from it is that much older. Not part of the snapshot.
    age: float = field(default=0.0, compare=False)


class BoardStore(Protocol):
    """Leaderboard snapshots (DynamoDB): each board is replaced atomically."""

    def replace_boards(self, boards: Sequence[Board]) -> None: ...
    def get_board(self, scope: str, window: str, limit: int) -> Board | None: ...
    def scopes(self) -> list[str]: ...
    def ranks_for(self, user_id: str) -> list[dict[str, Any]]: ...


class RankStore(Protocol):
    """Every user's rank on every board, and the entries around any user (DynamoDB; ``streamboard.ranks``):
    each refresh writes the users whose scores it changed, as one new version for every board at once."""

    def built_batch(self) -> int | None: ...  # the refresh batch whose ranks it holds (None: none yet)

    def write(self, users: Sequence[Any], *, batch: int, plan: str, rebuild: bool, base_batch: int,
              as_of: str | None, refreshed_at: str | None) -> dict[str, Any]: ...

    def ranks_for(self, user_id: str) -> list[dict[str, Any]] | None: ...  # None: no ranks written yet
    def around(self, scope: str, window: str, user_id: str, limit: int) -> Board | None: ...


@dataclass
class Profile:
    user_id: str
    total: int
    categories: dict[str, int] = field(default_factory=dict)
    updated_at: str | None = None
    user_name: str | None = None


class ProfileStore(Protocol):
    """Near-real-time user totals (DynamoDB; ``streamboard.profiles``): the router applies its delivered
    events, one update per user; each refresh reconciles the profiles it covered with the lake."""

    def apply(self, events: Sequence[dict[str, Any]], now: str) -> int: ...
    def reconcile(self, bases: Mapping[str, Any], *, batch: int, cut: int, now: str) -> int: ...
    def get(self, user_id: str) -> Profile | None: ...


@dataclass(frozen=True)
class PipelineFigures:
    """The pipeline's own meters at ``as_of`` (``streamboard.health`` says what each one means); ``None``: the
    figure is not known where this runs."""

    as_of: str
    events_per_minute: float | None  # events accepted, mean per minute over the last few minutes
    backlog_records: int | None  # records on the stream the router has not yet taken
    backlog_age_seconds: float | None  # how long the oldest of them has waited
    dlq_depth: int | None  # messages in the ingest dead-letter queue (events waiting for a redrive)
    bad_events: int | None  # bad events kept in the last 24 hours


class PipelineHealth(Protocol):
    """Where the health figures come from: CloudWatch and SQS on AWS (cached), the runtime's own counters
    locally."""

    def figures(self) -> PipelineFigures: ...


@dataclass(frozen=True)
class App:
    app_id: str
    name: str
    role: str  # "app" (may post events) or "admin"


class AppRegistry(Protocol):
    """Apps and their API keys; keys are stored only as hashes."""

    def create(self, name: str, role: str = "app", key: str | None = None) -> tuple[App, str]: ...
    def authenticate(self, key: str) -> App | None: ...
    def list(self) -> list[App]: ...
