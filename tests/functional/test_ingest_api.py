"""The ingest API (DESIGN section 4), driven in-process over the local adapters and over fake sinks."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import threading
import time
import tracemalloc
import uuid
import warnings
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette 1.10's TestClient prefers httpx2 and warns when it runs on httpx (what the project pins);
    # the behaviour is the same. Once httpx2 is a dev dependency this filter does nothing.
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from ingest.app import IngestSinks, create_app
from streamboard.backend import Backend
from streamboard.ports import DeadLetterQueue, EventStream, PutResult, QueueMessage, ReadRecord, StreamRecord
from streamboard.registry import REGISTRY
from streamboard.settings import Settings
from tests.conftest import events_of

KEY = "k1"
HEADERS = {"x-api-key": KEY}
URL = "/v1/events"


def key_of(event: dict[str, Any]) -> str:
    """The partition key of the record a request's events travel in: its first event's id, 32 hex digits."""
    return uuid.UUID(event["event_id"]).hex


def score_event(user: str = "user-1", points: int = 10, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "score",
        "user_id": user,
        "ts": (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat(),
        "category": "chess",
        "points": points,
        **extra,
    }


def action_event(user: str = "user-1") -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "action",
        "user_id": user,
        "ts": dt.datetime.now(dt.UTC).isoformat(),
        "name": "opened_shop",
        "properties": {"screen": "main"},
    }


def stream_records(stream: EventStream) -> list[ReadRecord]:
    return [r for shard in stream.shard_ids() for r in stream.read(shard, None, 100_000)]


def stream_contents(stream: EventStream) -> list[dict[str, Any]]:
    """The events in the stream, normalized (each record carries the accepted events of one request)."""
    return events_of(r.data for r in stream_records(stream))


def bad_events(backend: Backend) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for key in backend.lake.list_keys("bad-events/"):
        lines.extend(json.loads(line) for line in backend.lake.get_object(key).splitlines() if line.strip())
    return lines


@pytest.fixture
def local(backend: Backend) -> Backend:
    backend.apps.create("local", "app", key=KEY)
    return backend


@contextmanager
def ingest(
    settings: Settings,
    backend: Backend,
    stream: EventStream | None = None,
    dlq: DeadLetterQueue | None = None,
    retry_seconds: float = 0.2,
) -> Iterator[TestClient]:
    """The ingest app with its lifespan running; the stream and DLQ default to the backend's own."""
    sinks = IngestSinks(stream or backend.stream, dlq or backend.dlq, backend.apps, backend.lake)
    app = create_app(settings, sinks)
    app.state.committer.retry_seconds = retry_seconds  # keep the failure paths quick
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def post_together(client: TestClient, batches: Sequence[list[dict[str, Any]]]) -> list[Any]:
    """Post each batch as its own request, all at once (with a linger, their records share a PutRecords)."""
    barrier = threading.Barrier(len(batches))

    def post(events: list[dict[str, Any]]) -> Any:
        barrier.wait()
        return client.post(URL, json={"events": events}, headers=HEADERS)

    with ThreadPoolExecutor(len(batches)) as pool:
        return list(pool.map(post, batches))


# --- fakes of the EventStream and DeadLetterQueue ports -------------------------------------------------------


class FakeStream:
    """An in-memory stream; ``fail`` decides per call (and record) what goes wrong."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[list[StreamRecord]] = []
        self.stored: list[StreamRecord] = []
        self.delay = delay
        self.lock = threading.Lock()

    def fail(self, call: int, record: StreamRecord) -> bool:
        return False

    def put_records(self, records: Sequence[StreamRecord]) -> list[PutResult]:
        if self.delay:
            threading.Event().wait(self.delay)  # a slow PutRecords lets concurrent requests pile up
        with self.lock:
            self.calls.append(list(records))
            call = len(self.calls)
            results = []
            for i, r in enumerate(records):
                if self.fail(call, r):
                    results.append(PutResult(error_code="ProvisionedThroughputExceededException",
                                             error_message="Rate exceeded for shard shardId-000000000000"))
                else:
                    self.stored.append(r)
                    results.append(PutResult("shardId-000000000000", f"{call}-{i}"))
            return results

    def shard_ids(self) -> list[str]:
        return ["shardId-000000000000"]

    def read(self, shard_id: str, after: str | None, limit: int) -> list[ReadRecord]:
        return [ReadRecord(shard_id, str(i), r.partition_key, r.data, 0.0) for i, r in enumerate(self.stored)]

    def latest(self, shard_id: str) -> str | None:
        return None


class DownStream(FakeStream):
    def put_records(self, records: Sequence[StreamRecord]) -> list[PutResult]:
        with self.lock:
            self.calls.append(list(records))
        raise ConnectionError("kinesis endpoint unreachable")


class DownQueue:
    def __init__(self) -> None:
        self.sends = 0

    def send(self, bodies: Sequence[bytes]) -> None:
        self.sends += 1
        raise ConnectionError("sqs endpoint unreachable")

    def receive(self, max_messages: int = 10) -> list[QueueMessage]:
        return []

    def delete(self, receipts: Sequence[str]) -> None:
        pass

    def release(self, receipts: Sequence[str]) -> None:
        pass

    def depth(self) -> int:
        return 0


# --- the happy path -------------------------------------------------------------------------------------------


def test_mixed_batch_accepts_the_valid_and_reports_the_invalid(settings: Settings, local: Backend) -> None:
    good = [score_event("alice"), action_event("bob"), score_event("carol", points=1_000_000)]
    bad_points = score_event("dave", points=0)
    bad_type = {**score_event("erin"), "event_type": "purchase"}
    events = [good[0], bad_points, good[1], bad_type, good[2]]
    with ingest(settings, local) as client:
        resp = client.post(URL, json={"events": events}, headers=HEADERS)
    assert resp.status_code == 202
    body = resp.json()
    assert body["accepted"] == 3
    assert [r["index"] for r in body["rejected"]] == [1, 3]
    assert "points" in body["rejected"][0]["error"]
    assert "event_type" in body["rejected"][1]["error"]

    (record,) = stream_records(local.stream)  # the request's accepted events travel as one record
    assert record.partition_key == key_of(good[0])
    raw = json.loads(record.data)
    assert raw["app_id"] == "local" and [e["event_id"] for e in raw["events"]] == [e["event_id"] for e in good]
    stored = stream_contents(local.stream)
    assert [e["event_id"] for e in stored] == [e["event_id"] for e in good]  # each exactly once, in order
    for event in stored:
        assert event["app_id"] == "local"
        assert event["received_at"].endswith("Z")
        assert list(event) == [c.name for c in REGISTRY.get(event["event_type"]).stream_columns]

    kept = bad_events(local)
    assert sorted(k["event"]["event_id"] for k in kept) == sorted([bad_points["event_id"], bad_type["event_id"]])
    reasons = {k["event"]["event_id"]: k["reason"] for k in kept}
    assert reasons[bad_points["event_id"]] == body["rejected"][0]["error"]
    assert reasons[bad_type["event_id"]] == body["rejected"][1]["error"]


def test_a_single_event_body_is_accepted(settings: Settings, local: Backend) -> None:
    event = score_event("alice")
    with ingest(settings, local) as client:
        resp = client.post(URL, json=event, headers=HEADERS)
    assert resp.status_code == 202
    assert resp.json() == {"accepted": 1, "rejected": []}
    assert [r.partition_key for r in stream_records(local.stream)] == [key_of(event)]
    (stored,) = stream_contents(local.stream)
    assert stored == REGISTRY.validate(event, app_id="local", received_at=dt.datetime.now(dt.UTC),
                                       received_at_text=stored["received_at"])


def test_all_rejected_is_still_202_and_kept(settings: Settings, local: Backend) -> None:
    with ingest(settings, local) as client:
        resp = client.post(URL, json={"events": [{"event_type": "score"}, "nope"]}, headers=HEADERS)
    assert resp.status_code == 202
    assert resp.json()["accepted"] == 0
    assert [r["index"] for r in resp.json()["rejected"]] == [0, 1]
    assert stream_contents(local.stream) == []
    assert len(bad_events(local)) == 2


def test_gzip_body(settings: Settings, local: Backend) -> None:
    events = [score_event(f"user-{i}") for i in range(50)]
    body = gzip.compress(json.dumps({"events": events}).encode())
    with ingest(settings, local) as client:
        resp = client.post(URL, content=body, headers={**HEADERS, "content-type": "application/json",
                                                       "content-encoding": "gzip"})
    assert resp.status_code == 202
    assert resp.json()["accepted"] == 50
    assert len(stream_records(local.stream)) == 1
    assert [e["event_id"] for e in stream_contents(local.stream)] == [e["event_id"] for e in events]


def test_healthz(settings: Settings, local: Backend) -> None:
    with ingest(settings, local) as client:
        resp = client.get("/healthz")
    assert resp.status_code == 200


def test_openapi_document_is_valid_openapi_3_1_with_both_event_schemas(settings: Settings, local: Backend) -> None:
    with ingest(settings, local) as client:
        resp = client.get("/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["openapi"].startswith("3.1")
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(doc)
    schemas = doc["components"]["schemas"]
    for t in REGISTRY:
        schema = schemas[f"{t.name}_event"]
        assert {f.name for f in t.fields} <= set(schema["properties"])
        assert {"event_id", "user_id", "ts"} <= set(schema["required"])
    assert "/v1/events" in doc["paths"]


# --- client errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"x-api-key": ""}, {"x-api-key": "not-a-key"}])
def test_missing_or_unknown_key_is_401(settings: Settings, local: Backend, headers: dict[str, str]) -> None:
    with ingest(settings, local) as client:
        resp = client.post(URL, json={"events": [score_event()]}, headers=headers)
    assert resp.status_code == 401
    assert "key" in resp.json()["error"]
    assert stream_contents(local.stream) == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"events": [', "JSON"),
        (b"not json", "JSON"),
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"[1, 2]", "body must be"),
        (b'"score"', "body must be"),
        (b"42", "body must be"),
        (b'{"events": {"event_type": "score"}}', "array"),
        (b'{"events": "all"}', "array"),
        (b'{"events": []}', "empty"),
        (b'{"events": [], "extra": 1}', "events"),
    ],
)
def test_malformed_bodies_are_400_with_a_clear_message(
    settings: Settings, local: Backend, body: bytes, fragment: str
) -> None:
    with ingest(settings, local) as client:
        resp = client.post(URL, content=body, headers={**HEADERS, "content-type": "application/json"})
    assert resp.status_code == 400
    assert fragment in resp.json()["error"]


def test_invalid_gzip_is_400(settings: Settings, local: Backend) -> None:
    with ingest(settings, local) as client:
        resp = client.post(URL, content=b"definitely not gzip", headers={**HEADERS, "content-encoding": "gzip"})
    assert resp.status_code == 400
    assert "gzip" in resp.json()["error"]


@pytest.mark.parametrize("encoding", ["br", "deflate", "compress", "gzip, br"])
def test_unsupported_content_encoding_is_400(settings: Settings, local: Backend, encoding: str) -> None:
    with ingest(settings, local) as client:
        resp = client.post(URL, content=json.dumps(score_event()).encode(),
                           headers={**HEADERS, "content-encoding": encoding})
    assert resp.status_code == 400
    assert "content-encoding" in resp.json()["error"]


def test_body_over_1_mib_is_413(settings: Settings, local: Backend) -> None:
    filler = "x" * 1000
    events = [score_event(user_name=filler[:128], challenge_id=filler[:128]) for _ in range(400)]
    body = json.dumps({"events": events}).encode()
    body = body[:-2] + b" " * (settings.ingest_max_body + 1 - len(body)) + body[-2:]
    assert len(body) > settings.ingest_max_body
    with ingest(settings, local) as client:
        resp = client.post(URL, content=body, headers={**HEADERS, "content-type": "application/json"})
    assert resp.status_code == 413
    assert stream_contents(local.stream) == []


def test_chunked_body_over_1_mib_is_413(settings: Settings, local: Backend) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"events": ['
        for _ in range(20):
            yield b" " * 65_536
        yield b"]}"

    with ingest(settings, local) as client:
        resp = client.post(URL, content=chunks(), headers={**HEADERS, "content-type": "application/json"})
    assert resp.status_code == 413


def test_more_than_500_events_is_413(settings: Settings, local: Backend) -> None:
    events = [score_event(f"u{i}") for i in range(settings.ingest_max_events + 1)]
    with ingest(settings, local) as client:
        resp = client.post(URL, json={"events": events}, headers=HEADERS)
    assert resp.status_code == 413
    assert "500" in resp.json()["error"]
    assert stream_contents(local.stream) == []


def test_exactly_500_events_is_accepted(settings: Settings, local: Backend) -> None:
    events = [score_event(f"u{i}") for i in range(settings.ingest_max_events)]
    with ingest(settings, local) as client:
        resp = client.post(URL, json={"events": events}, headers=HEADERS)
    assert resp.status_code == 202
    assert resp.json()["accepted"] == 500


def test_gzip_bomb_is_413_without_inflating_it(settings: Settings, local: Backend) -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    bomb = b"".join(packer.compress(zeros) for _ in range(50)) + packer.flush()  # 50 MiB of zeros
    assert len(bomb) < settings.ingest_max_body
    with ingest(settings, local) as client:
        tracemalloc.start()
        try:
            resp = client.post(URL, content=bomb, headers={**HEADERS, "content-encoding": "gzip"})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert resp.status_code == 413
    assert "decompressed" in resp.json()["error"]
    assert peak < 16 * settings.ingest_max_body  # the 50 MiB were never materialized


# --- failures of the stream and the DLQ ---------------------------------------------------------------------------


def test_stream_down_events_go_to_the_dlq_and_the_client_gets_202(settings: Settings, local: Backend) -> None:
    stream = DownStream()
    events = [score_event(f"u{i}") for i in range(5)]
    with ingest(settings, local, stream=stream) as client:
        resp = client.post(URL, json={"events": events}, headers=HEADERS)
    assert resp.status_code == 202
    assert resp.json()["accepted"] == 5
    assert len(stream.calls) >= 2  # retried before falling back
    messages = local.dlq.receive(max_messages=10)
    assert len(messages) == 1  # the request's record, as it would have gone on the stream
    in_dlq = events_of(m.body for m in messages)
    assert [e["event_id"] for e in in_dlq] == [e["event_id"] for e in events]
    assert all(e["app_id"] == "local" for e in in_dlq)


def test_only_records_that_failed_are_retried(settings: Settings, local: Backend) -> None:
    requests = [[score_event(f"u{i}-{j}") for j in range(3)] for i in range(5)]  # a record each
    throttled = {key_of(requests[1][0]), key_of(requests[3][0])}  # the records' partition keys

    class Throttled(FakeStream):
        def fail(self, call: int, record: StreamRecord) -> bool:
            return call == 2 and record.partition_key in throttled

    stream = Throttled(delay=0.1)
    # While a write is in flight the next batch lingers: the five requests, posted during a first request's
    # slow call, share the second call.
    grouped = settings.with_overrides(ingest_linger_ms=300.0)
    with ingest(grouped, local, stream=stream, retry_seconds=5.0) as client, ThreadPoolExecutor(1) as first:
        alone = score_event("first")
        warm_up = first.submit(client.post, URL, json={"events": [alone]}, headers=HEADERS)
        time.sleep(0.03)
        responses = post_together(client, requests)
        assert warm_up.result().status_code == 202
    assert [r.status_code for r in responses] == [202] * 5
    assert [len(c) for c in stream.calls] == [1, 5, 2]
    assert {r.partition_key for r in stream.calls[2]} == throttled
    assert sorted(e["event_id"] for e in events_of(r.data for r in stream.calls[2])) == sorted(
        e["event_id"] for e in requests[1] + requests[3])
    stored = stream_contents(stream)
    assert stream.calls[0][0].partition_key == key_of(alone)
    sent = [e["event_id"] for events in requests for e in events] + [alone["event_id"]]
    assert sorted(e["event_id"] for e in stored) == sorted(sent)  # each exactly once
    assert local.dlq.depth() == 0


def test_an_idle_service_writes_at_once_without_lingering(settings: Settings, local: Backend) -> None:
    stream = FakeStream()
    slow_linger = settings.with_overrides(ingest_linger_ms=10_000.0)
    with ingest(slow_linger, local, stream=stream) as client:
        started = time.monotonic()
        resp = client.post(URL, json={"events": [score_event("alone")]}, headers=HEADERS)
        took = time.monotonic() - started
    assert resp.status_code == 202 and len(stream.calls) == 1
    assert took < 5.0  # the linger (10 s) is for a busy service only


def test_records_that_keep_failing_go_to_the_dlq(settings: Settings, local: Backend) -> None:
    hot, cool = [score_event("hot"), score_event("hot")], [score_event("cool"), score_event("cool")]
    hot_key = key_of(hot[0])  # the hot request's record's partition key

    class HotShard(FakeStream):
        def fail(self, call: int, record: StreamRecord) -> bool:
            return record.partition_key == hot_key

    stream = HotShard()
    with ingest(settings, local, stream=stream) as client:
        responses = post_together(client, [hot, cool])
    assert [r.status_code for r in responses] == [202, 202]
    assert sum(r.partition_key == hot_key for call in stream.calls for r in call) >= 2  # retried, then the DLQ
    assert [e["event_id"] for e in events_of(r.data for r in stream.stored)] == [e["event_id"] for e in cool]
    messages = local.dlq.receive()
    assert [e["event_id"] for e in events_of(m.body for m in messages)] == [e["event_id"] for e in hot]


def test_stream_and_dlq_down_is_503_with_retry_after(settings: Settings, local: Backend) -> None:
    dlq = DownQueue()
    with ingest(settings, local, stream=DownStream(), dlq=dlq) as client:
        resp = client.post(URL, json={"events": [score_event()]}, headers=HEADERS)
    assert resp.status_code == 503
    assert int(resp.headers["retry-after"]) >= 1
    assert resp.headers["content-type"].startswith("application/json")
    assert "unavailable" in resp.json()["error"]
    assert "Traceback" not in resp.text and "ConnectionError" not in resp.text
    assert dlq.sends == 1


def test_concurrent_requests_share_put_records_calls(settings: Settings, local: Backend) -> None:
    stream = FakeStream(delay=0.05)
    threads, per_request = 20, 30
    barrier = threading.Barrier(threads)
    statuses: list[int] = []
    sent: list[str] = []
    lock = threading.Lock()
    grouped = settings.with_overrides(ingest_linger_ms=20.0)
    with ingest(grouped, local, stream=stream) as client:

        def post(n: int) -> None:
            events = [score_event(f"t{n}-{i}") for i in range(per_request)]
            barrier.wait()
            resp = client.post(URL, json={"events": events}, headers=HEADERS)
            with lock:
                statuses.append(resp.status_code)
                sent.extend(e["event_id"] for e in events)

        workers = [threading.Thread(target=post, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert statuses == [202] * threads
    sizes = [len(c) for c in stream.calls]
    assert sum(sizes) == threads  # a record per request
    assert len(sizes) < threads  # requests shared PutRecords calls
    assert max(sizes) <= 500
    assert sum(len(events_of(r.data for r in c)) for c in stream.calls) == threads * per_request
    assert sorted(e["event_id"] for e in events_of(r.data for r in stream.stored)) == sorted(sent)


# --- hostile input (issue 9): each of these once gave a 500, lost events or was accepted wrongly -----------


def _raw(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


@pytest.mark.parametrize("bad_user", [b"jos\xe9", b"\xff", b"ok\xc3", b"\xed\xa0\x80"])  # latin-1, junk, cut, surrogate
@pytest.mark.parametrize("batch", [True, False])
def test_invalid_utf8_in_a_string_is_400_not_500(settings: Settings, local: Backend, bad_user: bytes,
                                                 batch: bool) -> None:
    body = _raw(score_event(user="PLACEHOLDER")).replace(b"PLACEHOLDER", bad_user)
    if batch:
        body = b'{"events":[' + body + b"," + _raw(score_event()) + b"]}"
    with ingest(settings, local) as client:
        resp = client.post(URL, content=body, headers=HEADERS)
    assert resp.status_code == 400, resp.text
    assert "UTF-8" in resp.json()["error"]
    assert stream_contents(local.stream) == []


def test_the_admin_key_cannot_post_events(settings: Settings, local: Backend) -> None:
    local.apps.create("ops", "admin", key="admin-key")
    with ingest(settings, local) as client:
        resp = client.post(URL, json={"events": [score_event()]}, headers={"x-api-key": "admin-key"})
    assert resp.status_code == 403
    assert "admin" in resp.json()["error"]
    assert stream_contents(local.stream) == []


def test_every_member_of_a_multi_member_gzip_body_is_read(settings: Settings, local: Backend) -> None:
    events = [score_event(f"user-{i}") for i in range(6)]
    doc = json.dumps({"events": events}).encode()
    # Three members, cut anywhere (RFC 1952: a gzip file is a series of members); the JSON spans them.
    body = gzip.compress(doc[:40]) + gzip.compress(doc[40:400]) + gzip.compress(doc[400:])
    with ingest(settings, local) as client:
        resp = client.post(URL, content=body, headers={**HEADERS, "content-encoding": "gzip"})
    assert resp.status_code == 202, resp.text
    assert resp.json()["accepted"] == 6
    assert [e["event_id"] for e in stream_contents(local.stream)] == [e["event_id"] for e in events]


def test_a_gzip_body_cut_inside_a_member_is_400(settings: Settings, local: Backend) -> None:
    body = gzip.compress(json.dumps({"events": [score_event()]}).encode())
    with ingest(settings, local) as client:
        resp = client.post(URL, content=body[:-6], headers={**HEADERS, "content-encoding": "gzip"})
    assert resp.status_code == 400
    assert "gzip" in resp.json()["error"]
    assert stream_contents(local.stream) == []


def test_gzip_members_together_are_capped_like_one(settings: Settings, local: Backend) -> None:
    half = settings.ingest_max_body // 2 + 1
    body = gzip.compress(b" " * half) + gzip.compress(b" " * half)
    with ingest(settings, local) as client:
        resp = client.post(URL, content=body, headers={**HEADERS, "content-encoding": "gzip"})
    assert resp.status_code == 413


@pytest.mark.parametrize("second_key", [b'"events"', b'"\\u0065vents"'])
@pytest.mark.parametrize("all_valid", [True, False])
def test_a_repeated_events_key_is_400_not_half_accepted(settings: Settings, local: Backend, second_key: bytes,
                                                         all_valid: bool) -> None:
    first = _raw(score_event("first")) if all_valid else b'{"event_type":"score"}'
    body = b'{"events":[' + first + b"]," + second_key + b":[" + _raw(score_event("second")) + b"]}"
    with ingest(settings, local) as client:
        resp = client.post(URL, content=body, headers=HEADERS)
    assert resp.status_code == 400, resp.text
    assert "more than once" in resp.json()["error"]
    assert stream_contents(local.stream) == []


def test_events_as_a_property_name_is_not_a_repeated_key(settings: Settings, local: Backend) -> None:
    action = {**action_event(), "properties": {"events": "3", "screen": "events"}}
    body = b'{"events": [' + _raw(action) + b"]}" + b" " * 40  # room for another key around the array
    with ingest(settings, local) as client:
        resp = client.post(URL, content=body, headers=HEADERS)
    assert resp.status_code == 202, resp.text
    assert stream_contents(local.stream)[0]["properties"] == {"events": "3", "screen": "events"}


def test_wrong_method_is_405_json_with_allow(settings: Settings, local: Backend) -> None:
    with ingest(settings, local) as client:
        resp = client.get(URL)
        head = client.head("/healthz")
    assert resp.status_code == 405
    assert resp.headers["allow"] == "POST"
    assert resp.json()["error"]
    assert head.status_code == 200 and head.content == b""


def test_a_body_on_a_route_that_takes_none_is_refused_before_it_is_read(settings: Settings, local: Backend) -> None:
    with ingest(settings, local) as client:
        resp = client.request("GET", "/healthz", content=b"x" * 100_000)
    assert resp.status_code == 413
    assert "takes no request body" in resp.json()["error"]
    assert resp.headers["connection"] == "close"

