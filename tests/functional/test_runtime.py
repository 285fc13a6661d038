"""The local runtime (event source mapping, Firehose, crawl) and the local stores, to AWS's contracts."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
import time
import types
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from processors import transform
from streamboard.adapters.local.catalog import LocalCatalog
from streamboard.adapters.local.delivery import LocalDeliveryStreams
from streamboard.adapters.local.lake import LocalLake
from streamboard.adapters.local.queue import LocalQueue
from streamboard.adapters.local.stores import LocalAppRegistry, LocalBoardStore
from streamboard.adapters.local.stream import LocalEventStream
from streamboard.backend import Backend
from streamboard.packing import MAX_RECORD_BYTES
from streamboard.ports import Board, BoardEntry, StreamRecord
from streamboard.registry import REGISTRY
from streamboard.runtime import firehose as firehose_module
from streamboard.runtime.crawler import crawl, ensure_tables
from streamboard.runtime.esm import EventSourceMapping
from streamboard.runtime.firehose import FirehoseEmulator, arrow_schema
from streamboard.runtime.stack import Pipeline
from streamboard.settings import Settings
from tests.conftest import events_of, stream_record

SHARD = "shardId-000000000000"

# --- event source mapping --------------------------------------------------------------------------------------


class FakeHandler:
    """Records each invocation's record numbers; ``behave`` decides the outcome of each invocation."""

    def __init__(self) -> None:
        self.invocations: list[list[int]] = []
        self.events: list[dict[str, Any]] = []

    def behave(self, numbers: list[int], records: list[dict[str, Any]]) -> dict[str, Any]:
        return {"batchItemFailures": []}

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        numbers = [json.loads(base64.b64decode(r["kinesis"]["data"]))["n"] for r in event["Records"]]
        self.invocations.append(numbers)
        self.events.append(event)
        return self.behave(numbers, event["Records"])

    def succeeded(self) -> list[int]:
        """Numbers of the records in invocations that did not fail."""
        return [n for batch in self.invocations for n in batch]


@pytest.fixture
def stream(tmp_path: Path) -> LocalEventStream:
    return LocalEventStream(tmp_path / "stream.db", shards=1)


@pytest.fixture
def on_failure(tmp_path: Path) -> LocalQueue:
    return LocalQueue(tmp_path / "queues.db", "router-failures")


def put(stream: LocalEventStream, numbers: range) -> list[str]:
    results = stream.put_records([StreamRecord("pk", json.dumps({"n": n}).encode()) for n in numbers])
    return [str(r.sequence_number) for r in results]


def mapping(stream: LocalEventStream, handler: Any, tmp_path: Path, on_failure: LocalQueue,
            **options: Any) -> EventSourceMapping:
    return EventSourceMapping(stream, handler, tmp_path / "runtime.db", on_failure, **options)


def test_checkpoint_advances_on_success(stream: LocalEventStream, on_failure: LocalQueue, tmp_path: Path) -> None:
    handler = FakeHandler()
    esm = mapping(stream, handler, tmp_path, on_failure, batch_size=100)
    seqs = put(stream, range(5))
    assert esm.checkpoint(SHARD) is None
    assert esm.poll_shard(SHARD) == 5
    assert esm.checkpoint(SHARD) == seqs[-1]
    assert esm.poll_shard(SHARD) == 0
    assert handler.invocations == [[0, 1, 2, 3, 4]]

    record = handler.events[0]["Records"][0]
    assert record["eventSource"] == "aws:kinesis"
    assert record["eventID"] == f"{SHARD}:{seqs[0]}"
    assert record["kinesis"]["sequenceNumber"] == seqs[0]
    assert record["kinesis"]["partitionKey"] == "pk"
    assert record["eventSourceARN"].startswith("arn:aws:kinesis:")

    put(stream, range(5, 8))
    esm.poll_shard(SHARD)
    assert handler.invocations[-1] == [5, 6, 7]


def test_batch_size_is_honoured(stream: LocalEventStream, on_failure: LocalQueue, tmp_path: Path) -> None:
    handler = FakeHandler()
    esm = mapping(stream, handler, tmp_path, on_failure, batch_size=4)
    put(stream, range(10))
    while esm.poll_all():
        pass
    assert handler.invocations == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_partial_batch_failure_checkpoints_before_the_first_failed_record(
    stream: LocalEventStream, on_failure: LocalQueue, tmp_path: Path
) -> None:
    class FailsOnce(FakeHandler):
        def behave(self, numbers: list[int], records: list[dict[str, Any]]) -> dict[str, Any]:
            if len(self.invocations) > 1:
                return {"batchItemFailures": []}
            ids = [records[numbers.index(n)]["kinesis"]["sequenceNumber"] for n in (4, 2)]
            return {"batchItemFailures": [{"itemIdentifier": i} for i in ids]}

    handler = FailsOnce()
    esm = mapping(stream, handler, tmp_path, on_failure)
    seqs = put(stream, range(6))
    assert esm.poll_shard(SHARD) == 2
    assert esm.checkpoint(SHARD) == seqs[1]
    esm.poll_shard(SHARD)
    assert handler.invocations == [[0, 1, 2, 3, 4, 5], [2, 3, 4, 5]]
    assert esm.checkpoint(SHARD) == seqs[-1]
    assert on_failure.depth() == 0


def test_an_unknown_item_identifier_retries_the_whole_batch(
    stream: LocalEventStream, on_failure: LocalQueue, tmp_path: Path
) -> None:
    class Confused(FakeHandler):
        def behave(self, numbers: list[int], records: list[dict[str, Any]]) -> dict[str, Any]:
            if len(self.invocations) == 1:
                return {"batchItemFailures": [{"itemIdentifier": "not-a-sequence-number"}]}
            return {"batchItemFailures": []}

    handler = Confused()
    esm = mapping(stream, handler, tmp_path, on_failure)
    put(stream, range(3))
    assert esm.poll_shard(SHARD) == 0
    assert esm.checkpoint(SHARD) is None
    esm.poll_shard(SHARD)
    assert handler.invocations == [[0, 1, 2], [0, 1, 2]]


def test_function_error_bisects_the_batch_and_isolates_the_poison_record(
    stream: LocalEventStream, on_failure: LocalQueue, tmp_path: Path
) -> None:
    class Poisoned(FakeHandler):
        ok: list[int] = []

        def behave(self, numbers: list[int], records: list[dict[str, Any]]) -> dict[str, Any]:
            if 5 in numbers:
                raise RuntimeError("cannot handle record 5")
            self.ok.extend(numbers)
            return {"batchItemFailures": []}

    handler = Poisoned()
    handler.ok = []
    esm = mapping(stream, handler, tmp_path, on_failure, batch_size=100, max_retries=3)
    seqs = put(stream, range(8))
    for _ in range(50):
        esm.poll_shard(SHARD)
        if esm.checkpoint(SHARD) == seqs[-1]:
            break
    assert [len(batch) for batch in handler.invocations[:2]] == [8, 4]  # halved after the first error
    assert sorted(handler.ok) == [0, 1, 2, 3, 4, 6, 7]  # everything but the poison, each once
    assert len(handler.ok) == 7
    (message,) = on_failure.receive()
    info = json.loads(message.body)["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (seqs[5], seqs[5], 1)


def test_after_max_retries_the_batch_goes_to_the_on_failure_destination(
    stream: LocalEventStream, on_failure: LocalQueue, tmp_path: Path
) -> None:
    class Broken(FakeHandler):
        healthy = False

        def behave(self, numbers: list[int], records: list[dict[str, Any]]) -> dict[str, Any]:
            if not self.healthy:
                raise RuntimeError("downstream is down")
            return {"batchItemFailures": []}

    handler = Broken()
    esm = mapping(stream, handler, tmp_path, on_failure, max_retries=2, bisect_on_error=False)
    seqs = put(stream, range(3))
    for _ in range(2):
        assert esm.poll_shard(SHARD) == 0
        assert on_failure.depth() == 0 and esm.checkpoint(SHARD) is None
    assert esm.poll_shard(SHARD) == 3  # the third attempt fails too: retries exhausted, moved past
    assert len(handler.invocations) == 3
    assert esm.checkpoint(SHARD) == seqs[-1]

    (message,) = on_failure.receive()
    body = json.loads(message.body)
    assert body["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert body["requestContext"]["approximateInvokeCount"] == 3
    assert body["requestContext"]["functionArn"].startswith("arn:aws:lambda:")
    info = body["KinesisBatchInfo"]
    assert info["shardId"] == SHARD
    assert info["startSequenceNumber"] == seqs[0]
    assert info["endSequenceNumber"] == seqs[-1]
    assert info["batchSize"] == 3
    assert info["streamArn"].startswith("arn:aws:kinesis:")
    for key in ("approximateArrivalOfFirstRecord", "approximateArrivalOfLastRecord"):
        dt.datetime.fromisoformat(info[key])
    assert "Records" not in body and "data" not in json.dumps(info)  # a description, not the data

    handler.healthy = True
    put(stream, range(3, 5))
    esm.poll_shard(SHARD)
    assert handler.invocations[-1] == [3, 4]


def test_checkpoints_survive_a_restart(stream: LocalEventStream, on_failure: LocalQueue, tmp_path: Path) -> None:
    first = FakeHandler()
    esm = mapping(stream, first, tmp_path, on_failure)
    seqs = put(stream, range(4))
    esm.poll_all()
    esm.db.close()

    second = FakeHandler()
    restarted = mapping(LocalEventStream(tmp_path / "stream.db"), second, tmp_path, on_failure)
    assert restarted.checkpoint(SHARD) == seqs[-1]
    put(stream, range(4, 6))
    restarted.poll_all()
    assert second.invocations == [[4, 5]]


# --- Firehose ----------------------------------------------------------------------------------------------------


def score_record(user: str, points: int, when: dt.datetime | None = None) -> bytes:
    when = when or dt.datetime(2026, 3, 1, 11, 58, 41, 207_000, tzinfo=dt.UTC)
    event = REGISTRY.validate(
        {"event_id": str(uuid.uuid4()), "event_type": "score", "user_id": user, "ts": when.isoformat(),
         "category": "chess", "points": points, "user_name": user.title()},
        app_id="local", received_at=when + dt.timedelta(seconds=1),
    )
    return json.dumps(event).encode() + b"\n"


class Lake(LocalLake):
    """The local lake, with writes that can be made to fail."""

    fail = False

    def put_object(self, key: str, body: bytes) -> None:
        if self.fail:
            raise OSError("No space left on device")
        super().put_object(key, body)


@pytest.fixture
def buffer(tmp_path: Path) -> LocalDeliveryStreams:
    return LocalDeliveryStreams(tmp_path / "firehose.db")


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path / "lake")


def emulator(buffer: LocalDeliveryStreams, lake: Lake, buffer_bytes: int = 1 << 20,
             buffer_seconds: float = 3600.0) -> FirehoseEmulator:
    return FirehoseEmulator(buffer, lake, REGISTRY, lambda e, c: transform.transform(e, lake, REGISTRY),
                            buffer_bytes, buffer_seconds)


def parquet_keys(lake: Lake, event_type: str = "score") -> list[str]:
    return [k for k in lake.list_keys(event_type + "/") if k.endswith(".parquet")]


def read_parquet(lake: Lake, key: str) -> pa.Table:
    return pq.read_table(pa.BufferReader(lake.get_object(key)))


def test_no_flush_below_the_size_and_time_thresholds(buffer: LocalDeliveryStreams, lake: Lake) -> None:
    buffer.put_record_batch("streamboard-score", [score_record("ada", 10), score_record("bob", 20)])
    assert emulator(buffer, lake).flush() == 0
    assert lake.list_keys("") == []
    assert buffer.buffered("streamboard-score")[0] == 2


def test_flush_on_size(buffer: LocalDeliveryStreams, lake: Lake) -> None:
    records = [score_record(f"user-{i:02d}", 10) for i in range(12)]
    assert len({len(r) for r in records}) == 1
    fh = emulator(buffer, lake, buffer_bytes=4 * len(records[0]))
    buffer.put_record_batch("streamboard-score", records[:3])
    assert fh.flush() == 0  # 3 records: below the size threshold

    buffer.put_record_batch("streamboard-score", records[3:])
    assert fh.flush() == 12  # three full buffers of 4
    assert buffer.buffered("streamboard-score")[0] == 0
    keys = parquet_keys(lake)
    assert sorted(read_parquet(lake, k).num_rows for k in keys) == [4, 4, 4]

    buffer.put_record_batch("streamboard-score", records[:5])
    assert fh.flush() == 4  # one full buffer; the fifth record waits for more or for its age
    assert buffer.buffered("streamboard-score")[0] == 1


def test_flush_on_age(buffer: LocalDeliveryStreams, lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    buffer.put_record_batch("streamboard-score", [score_record("ada", 10)])
    fh = emulator(buffer, lake, buffer_seconds=60)
    assert fh.flush() == 0
    later = time.time() + 61
    monkeypatch.setattr(firehose_module, "time", types.SimpleNamespace(time=lambda: later))
    assert fh.flush() == 1
    assert len(parquet_keys(lake)) == 1


def test_flush_with_force(buffer: LocalDeliveryStreams, lake: Lake) -> None:
    buffer.put_record_batch("streamboard-score", [score_record("ada", 10)])
    fh = emulator(buffer, lake)
    assert fh.flush() == 0
    assert fh.flush(force=True) == 1
    assert fh.flush(force=True) == 0
    assert len(parquet_keys(lake)) == 1


def test_parquet_layout_and_schema(buffer: LocalDeliveryStreams, lake: Lake) -> None:
    records = [score_record("ada", 10), score_record("bob", 1_000_000)]
    before = dt.datetime.now(dt.UTC)
    buffer.put_record_batch("streamboard-score", records)
    emulator(buffer, lake).flush(force=True)

    (key,) = parquet_keys(lake)
    match = re.match(r"^score/year=(\d{4})/month=(\d{2})/day=(\d{2})/hour=(\d{2})/streamboard-score-[^/]+\.parquet$",
                     key)
    assert match, key
    # Partitioned by arrival (now), not by the events' ts.
    assert match.groups() == (f"{before:%Y}", f"{before:%m}", f"{before:%d}", f"{before:%H}") or before.minute == 59

    table = read_parquet(lake, key)
    schema = arrow_schema(REGISTRY.get("score"))
    assert table.schema.remove_metadata() == schema
    assert table.schema.field("ts").type == pa.timestamp("ms")
    assert table.schema.field("points").type == pa.int64()
    rows = table.to_pylist()
    assert [r["user_id"] for r in rows] == ["ada", "bob"]
    assert rows[1]["points"] == 1_000_000
    assert rows[0]["ts"] == dt.datetime(2026, 3, 1, 11, 58, 41, 207_000)
    assert rows[0]["received_at"] == dt.datetime(2026, 3, 1, 11, 58, 42, 207_000)
    assert rows[0]["app_id"] == "local" and rows[0]["challenge_id"] is None


def test_action_properties_become_a_parquet_map(buffer: LocalDeliveryStreams, lake: Lake) -> None:
    event = REGISTRY.validate(
        {"event_id": str(uuid.uuid4()), "event_type": "action", "user_id": "ada", "ts": "2026-03-01T10:00:00Z",
         "name": "opened_shop", "properties": {"screen": "main", "ab": "b"}},
        app_id="local", received_at=dt.datetime.now(dt.UTC),
    )
    buffer.put_record_batch("streamboard-action", [json.dumps(event).encode() + b"\n"])
    emulator(buffer, lake).flush(force=True)
    (key,) = parquet_keys(lake, "action")
    table = read_parquet(lake, key)
    assert table.schema.remove_metadata() == arrow_schema(REGISTRY.get("action"))
    assert dict(table.to_pylist()[0]["properties"]) == {"screen": "main", "ab": "b"}


def bad_events(lake: Lake) -> list[dict[str, Any]]:
    return [json.loads(line) for key in lake.list_keys("bad-events/") for line in lake.get_object(key).splitlines()]


def test_each_object_of_a_packed_record_becomes_a_row(buffer: LocalDeliveryStreams, lake: Lake) -> None:
    records = [score_record(f"user-{i:03d}", i + 1) for i in range(300)]
    buffer.put_record_batch("streamboard-score", [b"".join(records[:200]), b"".join(records[200:])])
    assert emulator(buffer, lake).flush(force=True) == 300  # rows: two records of 200 and 100 events
    (key,) = parquet_keys(lake)
    rows = read_parquet(lake, key).to_pylist()
    assert [(r["user_id"], r["points"]) for r in rows] == [(f"user-{i:03d}", i + 1) for i in range(300)]
    assert bad_events(lake) == [] and lake.list_keys("errors/") == []


def test_bad_events_of_a_record_go_to_the_sink_and_unreadable_records_under_the_error_prefix(
        buffer: LocalDeliveryStreams, lake: Lake) -> None:
    broken = json.dumps({"event_id": str(uuid.uuid4()), "event_type": "score", "user_id": "eve",
                         "ts": "2026-03-01T10:00:00Z", "category": "chess", "points": "lots"}).encode() + b"\n"
    unreadable = b"\xff" + score_record("mallory", 1)  # not UTF-8
    buffer.put_record_batch("streamboard-score", [score_record("ada", 10) + broken + score_record("bob", 20),
                                                  unreadable, b"\n"])
    assert emulator(buffer, lake).flush(force=True) == 2

    (key,) = parquet_keys(lake)
    assert [r["user_id"] for r in read_parquet(lake, key).to_pylist()] == ["ada", "bob"]
    (kept,) = bad_events(lake)
    assert kept["source"] == "transform" and kept["event"] == json.loads(broken)
    assert "points is not an integer: 'lots'" in kept["reason"]
    (error_key,) = lake.list_keys("errors/")
    assert re.match(r"^errors/processing-failed/streamboard-score/year=\d{4}/month=\d{2}/day=\d{2}/hour=\d{2}/",
                    error_key), error_key
    (line,) = lake.get_object(error_key).splitlines()
    record = json.loads(line)
    assert set(record) == {"attemptsMade", "arrivalTimestamp", "errorCode", "errorMessage",
                           "attemptEndingTimestamp", "rawData"}
    assert record["errorCode"] == "Lambda.ProcessingFailed"
    assert base64.b64decode(record["rawData"]) == unreadable
    assert isinstance(record["arrivalTimestamp"], int) and record["arrivalTimestamp"] > 1_000_000_000_000


def test_a_record_whose_events_are_all_bad_puts_no_row_in_the_lake(buffer: LocalDeliveryStreams, lake: Lake) -> None:
    wrong_type = json.loads(score_record("ada", 10))
    buffer.put_record_batch("streamboard-action", [json.dumps(wrong_type).encode() + b"\n"])
    assert emulator(buffer, lake).flush(force=True) == 0
    assert parquet_keys(lake, "action") == [] and lake.list_keys("errors/") == []
    (kept,) = bad_events(lake)
    assert kept["event"] == wrong_type and "not a action event" in kept["reason"]
    assert buffer.buffered("streamboard-action")[0] == 0


def lines_filling(limit: int) -> list[bytes]:
    """Score events, one JSON line each as the router writes them, that fill exactly ``limit`` bytes."""
    def line(i: int, pad: int = 0) -> bytes:
        event = REGISTRY.validate({"event_id": str(uuid.UUID(int=i)), "event_type": "score",
                                   "user_id": f"u-{i:06d}" + "x" * pad, "ts": "2026-03-01T10:00:00Z",
                                   "category": "chess", "points": 1},
                                  app_id="local", received_at=dt.datetime(2026, 3, 1, 10, 0, 1, tzinfo=dt.UTC))
        return json.dumps(event, separators=(",", ":")).encode() + b"\n"

    n, rest = divmod(limit, len(line(0)))
    pads = [min(100, rest - 100 * i) for i in range(-(-rest // 100))]  # ids of at most 128 characters
    return [line(i, pads[i] if i < len(pads) else 0) for i in range(n)]


def test_a_record_at_the_size_limit_delivers_every_event(buffer: LocalDeliveryStreams, lake: Lake) -> None:
    lines = lines_filling(MAX_RECORD_BYTES)
    record = b"".join(lines)
    assert len(record) == MAX_RECORD_BYTES
    with pytest.raises(ValueError, match="at most"):
        buffer.put_record_batch("streamboard-score", [record + b"\n"])  # one byte more: Firehose refuses it
    buffer.put_record_batch("streamboard-score", [record])
    assert emulator(buffer, lake).flush(force=True) == len(lines)
    user_ids = [r["user_id"] for k in parquet_keys(lake) for r in read_parquet(lake, k).to_pylist()]
    assert user_ids == [json.loads(line)["user_id"] for line in lines]


def test_the_buffer_is_emptied_only_after_writing(buffer: LocalDeliveryStreams, lake: Lake) -> None:
    buffer.put_record_batch("streamboard-score", [score_record(f"user-{i}", 5) for i in range(4)])
    fh = emulator(buffer, lake)
    lake.fail = True
    with pytest.raises(OSError):
        fh.flush(force=True)
    assert buffer.buffered("streamboard-score")[0] == 4
    assert lake.list_keys("") == []

    lake.fail = False
    assert fh.flush(force=True) == 4
    assert buffer.buffered("streamboard-score")[0] == 0
    assert sum(read_parquet(lake, k).num_rows for k in parquet_keys(lake)) == 4


# --- crawl --------------------------------------------------------------------------------------------------------


def test_crawl_adds_each_partition_once(buffer: LocalDeliveryStreams, lake: Lake, tmp_path: Path) -> None:
    catalog = LocalCatalog(tmp_path / "catalog.db")
    ensure_tables(catalog, REGISTRY)
    assert sorted(catalog.table_names()) == sorted(REGISTRY.names())
    assert crawl(lake, catalog, REGISTRY) == 0

    buffer.put_record_batch("streamboard-score", [score_record("ada", 10)])
    emulator(buffer, lake).flush(force=True)
    assert crawl(lake, catalog, REGISTRY) == 1
    assert crawl(lake, catalog, REGISTRY) == 0
    (partition,) = catalog.partitions("score")
    (key,) = parquet_keys(lake)
    assert key.startswith(partition.location + "/")
    assert partition.values == tuple(re.findall(r"=(\d+)", partition.location))

    lake.put_object("score/year=2025/month=12/day=31/hour=23/old.parquet", lake.get_object(key))
    lake.put_object("score/year=2025/month=12/day=31/hour=22/notes.txt", b"not data")
    assert crawl(lake, catalog, REGISTRY) == 1
    assert len(catalog.partitions("score")) == 2
    assert catalog.partitions("action") == []


# --- local stores ---------------------------------------------------------------------------------------------------


def _board(version: int) -> Board:
    entries = tuple(BoardEntry(i + 1, f"user-{i:04d}", f"v{version}", 10_000 * version - i) for i in range(1000))
    return Board("overall", "all", f"2026-03-01T0{version}:00:00Z", f"v{version}", entries)


def test_board_replacement_is_atomic_for_readers(tmp_path: Path) -> None:
    store = LocalBoardStore(tmp_path / "boards.db")
    store.replace_boards([_board(1)])
    done = threading.Event()
    problems: list[str] = []
    versions_seen: set[str] = set()

    def reader() -> None:
        reader_store = LocalBoardStore(tmp_path / "boards.db")
        while not done.is_set():
            board = reader_store.get_board("overall", "all", 1000)
            if board is None:
                problems.append("board missing")
                continue
            names = {e.user_name for e in board.entries}
            if len(board.entries) != 1000 or names != {board.refreshed_at}:
                problems.append(f"mixed snapshot: {board.refreshed_at} with {sorted(map(str, names))}")
            versions_seen.add(str(board.refreshed_at))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(30):
            store.replace_boards([_board(2 if i % 2 == 0 else 1)])
    finally:
        done.set()
        thread.join()
    assert problems == []
    assert versions_seen  # the reader did read


def test_replacing_a_board_leaves_no_old_entries(tmp_path: Path) -> None:
    store = LocalBoardStore(tmp_path / "boards.db")
    store.replace_boards([_board(1)])
    short = Board("overall", "all", "2026-03-02T00:00:00Z", "v3", (BoardEntry(1, "solo", None, 1),))
    store.replace_boards([short])
    assert store.get_board("overall", "all", 1000) == short
    assert store.ranks_for("user-0001") == []


def score_event(event_id: str, user: str, ts: str, points: int, category: str = "chess",
                challenge: str | None = None) -> dict[str, Any]:
    return {"event_id": event_id, "event_type": "score", "user_id": user, "ts": ts, "category": category,
            "points": points, "challenge_id": challenge, "user_name": None}


def test_app_registry_stores_only_a_hash_and_authenticates(tmp_path: Path) -> None:
    apps = LocalAppRegistry(tmp_path / "apps.db")
    app, key = apps.create("game")
    provisioned, given_key = apps.create("ops", "admin", key="my-very-own-admin-key-123")
    assert given_key == "my-very-own-admin-key-123"

    assert apps.authenticate(key) == app
    assert apps.authenticate(given_key) == provisioned and provisioned.role == "admin"
    assert apps.authenticate("wrong-key") is None
    assert apps.authenticate(key + "x") is None

    files = sorted(tmp_path.glob("apps.db*"))
    assert files
    stored = b"".join(f.read_bytes() for f in files)
    for secret in (key, given_key):
        assert secret.encode() not in stored
    assert [a.app_id for a in apps.list()] == ["game", "ops"]


# --- the whole local pipeline -------------------------------------------------------------------------------------


def test_pipeline_refresh_produces_boards(pipeline: Pipeline) -> None:
    now = dt.datetime.now(dt.UTC)
    raw = [("ada", 30, "Ada"), ("bob", 50, None), ("cy", 30, "Cy"), ("ada", 20, "Ada L.")]
    events = []
    for i, (user, points, name) in enumerate(raw):
        event: dict[str, Any] = {"event_id": str(uuid.uuid4()), "event_type": "score", "user_id": user,
                                 "ts": (now - dt.timedelta(minutes=10 - i)).isoformat(), "category": "chess",
                                 "points": points}
        if name:
            event["user_name"] = name
        events.append(event)
    records = [stream_record(events[:2], received_at=now), stream_record(events[2:], received_at=now)]  # 2 requests
    records.append(records[0])  # a duplicate delivery counts once
    pipeline.backend.stream.put_records(records)

    summary = pipeline.refresh()

    assert summary["batch"] >= 1 and summary["boards"] > 0
    assert summary["routed"] == 3 and summary["delivered"] == 6  # records read; events, the repeated two again
    for scope in ("overall", "chess"):
        for window in ("all", "30d", "365d"):
            board = pipeline.backend.boards.get_board(scope, window, 10)
            assert board is not None, (scope, window)
            assert [(e.rank, e.user_id, e.user_name, e.score) for e in board.entries] == [
                (1, "ada", "Ada L.", 50), (1, "bob", None, 50), (3, "cy", "Cy", 30)]
    profile = pipeline.backend.profiles.get("ada")
    assert profile is not None and profile.total == 50


def test_pipeline_packs_a_batch_into_full_records_and_the_lake_holds_each_event_once(tmp_path: Path) -> None:
    pipeline = Pipeline(Settings(data_dir=tmp_path / "data", shards=1))  # one router batch takes every record
    now = dt.datetime.now(dt.UTC)
    requests = [[{"event_id": str(uuid.uuid4()), "event_type": "score", "user_id": f"u{i}", "user_name": "N" * 128,
                  "ts": (now - dt.timedelta(minutes=1)).isoformat(), "category": "c" * 64, "points": 1}
                 for _ in range(500)] for i in range(10)]  # 5,000 events of 430 bytes: 2.15 MB for one stream
    records = [stream_record(events, received_at=now) for events in requests]
    pipeline.backend.stream.put_records(records)

    assert pipeline.esm.poll_all() == len(records)
    delivery: Any = pipeline.backend.delivery
    count, size, _ = delivery.buffered("streamboard-score")
    stamp = len(',"routed_at":"2026-01-01T00:00:00.000Z"')  # the router's stamp on every event
    assert count == 3 and size == sum(len(json.dumps(e, separators=(",", ":"))) + 1 + stamp for e in events_of(
        r.data for r in records))  # 3 records for 5,000 events (it was 5,000 records of one event)
    assert all(len(data) <= MAX_RECORD_BYTES for _, data, _ in delivery.take("streamboard-score", 1 << 30, 10))

    summary = pipeline.refresh()
    assert summary["delivered"] == 5000
    _, rows = pipeline.backend.query.run("SELECT event_id, count(*) FROM score GROUP BY event_id")  # type: ignore[attr-defined]
    sent = {e["event_id"] for events in requests for e in events}
    assert {event_id for event_id, _ in rows} == sent and {n for _, n in rows} == {1}
    board = pipeline.backend.boards.get_board("overall", "all", 20)
    assert board is not None and [(e.rank, e.user_id, e.score) for e in board.entries] == [
        (1, f"u{i}", 500) for i in sorted(range(10), key=str)]


def test_the_local_stream_keeps_records_for_its_retention_period_only(backend: Backend) -> None:
    stream = backend.stream
    stream.put_records([StreamRecord("k", b"old")])
    cutoff = time.time() + 0.001
    time.sleep(0.01)
    stream.put_records([StreamRecord("k", b"new")])
    assert stream.trim(cutoff) == 1  # type: ignore[attr-defined]
    kept = [r.data for s in stream.shard_ids() for r in stream.read(s, None, 10)]
    assert kept == [b"new"]
