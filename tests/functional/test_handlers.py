"""The Lambda handlers, given AWS-shaped events from tests/events/, over the local backend."""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as dt
import json
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from processors import deployed, leaderboards, read_api, router, transform
from streamboard.backend import Backend, build_aws_backend, build_local_backend
from streamboard.boards import PagedBoards
from streamboard.packing import MAX_RECORD_BYTES
from streamboard.ports import Board, BoardEntry
from streamboard.registry import REGISTRY, format_ts, parse_ts
from streamboard.runtime.crawler import ensure_tables
from streamboard.runtime.firehose import to_row
from streamboard.settings import ENV_DATA_DIR, Settings
from tests import rank_oracle
from tests.conftest import events_of, load_event, stream_record

LAKE_TS = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}$")


def decoded(record: dict[str, Any]) -> bytes:
    return base64.b64decode(record["kinesis"]["data"])


def kinesis_record(data: bytes, seq: str, partition_key: str = "k") -> dict[str, Any]:
    """A Kinesis record of the router's event, shaped like the sample's, carrying ``data``."""
    record: dict[str, Any] = copy.deepcopy(load_event("kinesis_router")["Records"][0])
    record["kinesis"].update(data=base64.b64encode(data).decode(), sequenceNumber=seq, partitionKey=partition_key)
    record["eventID"] = f"shardId-000000000000:{seq}"
    return record


def lines(batch: Sequence[bytes]) -> list[dict[str, Any]]:
    """The events of a delivery batch: packed records of JSON objects, one per line, each within Firehose's
    record limit; without the router's ``routed_at`` stamp (one per batch, checked here), so that they compare
    with the events the stream carried."""
    assert all(data.endswith(b"\n") and len(data) <= MAX_RECORD_BYTES for data in batch)  # as Firehose wants
    events = [json.loads(line) for data in batch for line in data.splitlines()]
    stamps = {parse_ts(e.pop("routed_at")) for e in events}
    assert len(stamps) <= 1 and all(abs(time.time() - s.timestamp()) < 600 for s in stamps), stamps
    return events


def score(user: str, points: int) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "event_type": "score", "user_id": user, "ts": "2026-03-01T12:58:40+01:00",
            "category": "chess", "points": points}


def action(user: str) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "event_type": "action", "user_id": user, "ts": "2026-03-01T11:58:41Z",
            "name": "opened_shop", "properties": {"screen": "main"}}


class FakeDelivery:
    """A DeliveryStreams port that fails the given indexes of every batch (of ``streams``, default all), or
    raises."""

    def __init__(self, failed: Sequence[int] = (), error: Exception | None = None,
                 streams: Sequence[str] | None = None) -> None:
        self.failed = list(failed)
        self.error = error
        self.streams = streams
        self.batches: list[tuple[str, list[bytes]]] = []

    def put_record_batch(self, stream: str, records: Sequence[bytes]) -> list[int]:
        self.batches.append((stream, list(records)))
        if self.error is not None:
            raise self.error
        if self.streams is not None and stream not in self.streams:
            return []
        return [i for i in self.failed if i < len(records)]

    def delivered(self, stream: str) -> list[dict[str, Any]]:
        return [e for name, batch in self.batches if name == stream for e in lines(batch)]


# --- router ----------------------------------------------------------------------------------------------------


def test_router_delivers_good_records_and_quarantines_the_rest(backend: Backend) -> None:
    event = load_event("kinesis_router")
    good = [r for r in event["Records"] if decoded(r).startswith(b"{")]
    assert len(good) == 2 and len(event["Records"]) == 3
    carried = events_of(decoded(r) for r in good)
    assert [e["event_type"] for e in carried] == ["score", "action", "score"]  # the first record has two

    assert router.handle(event, backend) == {"batchItemFailures": []}

    delivery: Any = backend.delivery
    count, _, _ = delivery.buffered("streamboard-score")
    assert count == 1  # both score events in one packed record
    buffered = lines([data for _, data, _ in delivery.take("streamboard-score", 1 << 20, 100)])
    assert buffered == [carried[0], carried[2]]  # each event once, in the lake's normalized form
    assert buffered[0]["ts"] == "2026-03-01T11:58:41.207Z"  # the client sent 12:58:41.207+01:00
    assert buffered[1]["challenge_id"] is None and buffered[1]["user_name"] is None  # left out by the client
    assert delivery.buffered("streamboard-action")[0] == 1
    assert lines([data for _, data, _ in delivery.take("streamboard-action", 1 << 20, 100)]) == [carried[1]]

    keys = backend.lake.list_keys("bad-events/")
    assert len(keys) == 1
    (kept,) = [json.loads(line) for line in backend.lake.get_object(keys[0]).splitlines()]
    assert kept["source"] == "router"
    assert "PNG" in kept["event"]
    bad_seq = event["Records"][1]["kinesis"]["sequenceNumber"]
    assert bad_seq in kept["reason"]

    profile = backend.profiles.get("player-4711")
    assert profile is not None and profile.total == 120
    other = backend.profiles.get("player-0815")
    assert other is not None and other.total == 45


def test_router_reports_failed_records_by_sequence_number(backend: Backend) -> None:
    event = load_event("kinesis_router")
    fake = FakeDelivery(failed=[0], streams=["streamboard-score"])  # the score stream's one packed record
    result = router.handle(event, dataclasses.replace(backend, delivery=fake))
    seqs = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
    assert result == {"batchItemFailures": [{"itemIdentifier": seqs[0]}, {"itemIdentifier": seqs[2]}]}
    assert sorted(stream for stream, _ in fake.batches) == ["streamboard-action", "streamboard-score"]
    # The profiles count what was routed (updated before delivery, so the lake never holds a row a profile
    # missed); the retry routes these again, a duplicate the next reconcile drops once its slot is behind the cut.
    assert [(p.total if p else 0) for p in map(backend.profiles.get, ("player-4711", "player-0815"))] == [120, 45]


def big_scores(user: str, n: int) -> list[dict[str, Any]]:
    """``n`` score events of 430 bytes each as the router writes them (long names), one point each."""
    return [{**score(user, 1), "user_name": "N" * 128, "challenge_id": None, "category": "c" * 64}
            for _ in range(n)]


def test_router_packs_a_streams_events_into_records_within_the_limit(backend: Backend) -> None:
    requests = [big_scores(f"u{i}", 500) for i in range(10)]  # 5,000 events, 2.15 MB for one stream
    records = [stream_record(events) for events in requests]
    fake = FakeDelivery()
    batch = {"Records": [kinesis_record(r.data, f"{i + 1:056d}", r.partition_key) for i, r in enumerate(records)]}
    assert router.handle(batch, dataclasses.replace(backend, delivery=fake)) == {"batchItemFailures": []}

    ((stream, packed),) = fake.batches  # one call for the stream; the adapter splits it by the API's limits
    assert stream == "streamboard-score"
    sizes = [len(p) for p in packed]
    assert len(packed) == 3 and max(sizes) <= MAX_RECORD_BYTES
    first_line = len(packed[1].split(b"\n", 1)[0]) + 1
    assert sizes[0] + first_line > MAX_RECORD_BYTES  # the first record is full: the next event overflows
    assert fake.delivered(stream) == events_of(r.data for r in records)  # every event once, in stream order
    assert all(data.count(b"\n") == len(lines([data])) for data in packed)  # one object per line, no array


def test_router_reports_exactly_the_records_that_contributed_to_a_failed_packed_record(backend: Backend) -> None:
    requests = [big_scores(f"u{i}", 500) for i in range(10)]
    records = [stream_record(events) for events in requests]
    seqs = [f"{i + 1:056d}" for i in range(len(records))]
    fake = FakeDelivery(failed=[1])  # the middle one of the three packed records
    batch = {"Records": [kinesis_record(r.data, seq, r.partition_key) for r, seq in zip(records, seqs, strict=True)]}
    result = router.handle(batch, dataclasses.replace(backend, delivery=fake))

    ((_, packed),) = fake.batches
    lost = {e["event_id"] for e in lines([packed[1]])}
    contributed = [seq for seq, events in zip(seqs, requests, strict=True) if lost & {e["event_id"] for e in events}]
    assert 2 <= len(contributed) < len(seqs)  # some Kinesis records straddle two packed records
    assert result == {"batchItemFailures": [{"itemIdentifier": seq} for seq in contributed]}
    # Profiles count every routed event, delivered or not (never less than the lake will hold).
    for i, events in enumerate(requests):
        profile = backend.profiles.get(f"u{i}")
        assert profile is not None and profile.total == len(events), i


def test_router_reports_a_record_when_one_of_its_events_fails_delivery(backend: Backend) -> None:
    event = load_event("kinesis_router")
    fake = FakeDelivery(failed=[0], streams=["streamboard-action"])  # the first record's action event
    result = router.handle(event, dataclasses.replace(backend, delivery=fake))
    first_seq = event["Records"][0]["kinesis"]["sequenceNumber"]
    assert result == {"batchItemFailures": [{"itemIdentifier": first_seq}]}  # retried whole
    # Its score event was delivered (a retry delivers it again; event_id dedupe counts it once) and counts.
    assert [e["user_id"] for e in fake.delivered("streamboard-score")] == ["player-4711", "player-0815"]
    profile = backend.profiles.get("player-4711")
    assert profile is not None and profile.total == 120


def test_router_reports_every_routable_record_when_delivery_raises(backend: Backend) -> None:
    event = load_event("kinesis_router")
    fake = FakeDelivery(error=ConnectionError("firehose throttled"))
    result = router.handle(event, dataclasses.replace(backend, delivery=fake))
    seqs = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
    assert result == {"batchItemFailures": [{"itemIdentifier": seqs[0]}, {"itemIdentifier": seqs[2]}]}
    assert len(backend.lake.list_keys("bad-events/")) == 1  # the unroutable one is quarantined, not retried
    assert [(p.total if p else 0) for p in map(backend.profiles.get, ("player-4711", "player-0815"))] == [120, 45]


def test_router_fails_the_batch_before_delivering_when_the_profiles_fail(backend: Backend) -> None:
    class Down:
        def apply(self, events: Any, now: str) -> int:
            raise ConnectionError("dynamodb throttled")

    fake = FakeDelivery()
    with pytest.raises(ConnectionError):
        router.handle(load_event("kinesis_router"), dataclasses.replace(backend, delivery=fake, profiles=Down()))
    assert fake.batches == []  # nothing reached the lake that a profile did not count: Kinesis retries the batch


def test_router_quarantines_unknown_event_types(backend: Backend) -> None:
    event = load_event("kinesis_router")
    record = copy.deepcopy(event["Records"][0])
    body = json.loads(decoded(record))
    body["events"][1]["event_type"] = "purchase"  # the second of the record's two events
    record["kinesis"]["data"] = base64.b64encode(json.dumps(body).encode()).decode()
    fake = FakeDelivery()
    assert router.handle({"Records": [record]}, dataclasses.replace(backend, delivery=fake)) == {
        "batchItemFailures": []}  # never retried: it would fail the same way
    (key,) = backend.lake.list_keys("bad-events/")
    (kept,) = [json.loads(line) for line in backend.lake.get_object(key).splitlines()]
    assert kept["source"] == "router"
    assert kept["event"]["event_id"] == body["events"][1]["event_id"]
    assert "purchase" in kept["reason"] and record["kinesis"]["sequenceNumber"] in kept["reason"]
    # The record's valid event is delivered all the same.
    assert [stream for stream, _ in fake.batches] == ["streamboard-score"]
    assert [e["event_id"] for e in fake.delivered("streamboard-score")] == [body["events"][0]["event_id"]]


def test_router_quarantines_an_invalid_event_and_delivers_the_rest_of_its_record(backend: Backend) -> None:
    good = [score("p1", 10), action("p1"), score("p2", 20)]
    rec = stream_record(good)
    body = json.loads(rec.data)
    bad = {**score("p3", 30), "points": 0}  # not a valid event (the stream should never carry one)
    body["events"].insert(1, bad)
    data = json.dumps(body).encode()
    fake = FakeDelivery()
    seq = "49651099999999999999999999999999999999999999999999990100"
    result = router.handle({"Records": [kinesis_record(data, seq, rec.partition_key)]},
                           dataclasses.replace(backend, delivery=fake))
    assert result == {"batchItemFailures": []}
    (key,) = backend.lake.list_keys("bad-events/")
    (kept,) = [json.loads(line) for line in backend.lake.get_object(key).splitlines()]
    assert kept["event"] == bad and "points" in kept["reason"] and seq in kept["reason"]
    expected = events_of([rec.data])
    assert fake.delivered("streamboard-score") == [expected[0], expected[2]]
    assert fake.delivered("streamboard-action") == [expected[1]]
    assert backend.profiles.get("p3") is None
    p2 = backend.profiles.get("p2")
    assert p2 is not None and p2.total == 20


def test_router_routes_each_type_to_its_own_delivery_stream(backend: Backend) -> None:
    first = stream_record([score("p1", 5), action("p1"), score("p2", 7), action("p2")])  # one request, two types
    second = stream_record([action("p3")])
    fake = FakeDelivery()
    result = router.handle({"Records": [kinesis_record(first.data, "1", first.partition_key),
                                        kinesis_record(second.data, "2", second.partition_key)]},
                           dataclasses.replace(backend, delivery=fake))
    assert result == {"batchItemFailures": []}
    assert sorted(stream for stream, _ in fake.batches) == ["streamboard-action", "streamboard-score"]  # a call each
    events = events_of([first.data, second.data])
    assert fake.delivered("streamboard-score") == [e for e in events if e["event_type"] == "score"]
    assert fake.delivered("streamboard-action") == [e for e in events if e["event_type"] == "action"]
    assert [e["user_id"] for e in fake.delivered("streamboard-action")] == ["p1", "p2", "p3"]  # in stream order


def test_router_quarantines_data_that_is_not_a_stream_record_whole(backend: Backend) -> None:
    event = load_event("kinesis_router")
    (single,) = events_of([decoded(event["Records"][2])])  # one event on its own, not wrapped in a record
    seq = "49651099999999999999999999999999999999999999999999990007"
    record = kinesis_record(json.dumps(single).encode(), seq)
    fake = FakeDelivery()
    assert router.handle({"Records": [record]}, dataclasses.replace(backend, delivery=fake)) == {
        "batchItemFailures": []}
    assert fake.batches == []
    (key,) = backend.lake.list_keys("bad-events/")
    (kept,) = [json.loads(line) for line in backend.lake.get_object(key).splitlines()]
    assert json.loads(kept["event"]) == single and seq in kept["reason"]


# --- transform ---------------------------------------------------------------------------------------------------


def bad_events(backend: Backend) -> list[dict[str, Any]]:
    return [json.loads(line) for key in backend.lake.list_keys("bad-events/")
            for line in backend.lake.get_object(key).splitlines()]


def test_transform_returns_every_record_once_with_the_contract_shape(backend: Backend) -> None:
    event = load_event("firehose_transform")
    result = transform.handle(event, backend)
    assert set(result) == {"records"}
    out = result["records"]
    assert [r["recordId"] for r in out] == [r["recordId"] for r in event["records"]]
    assert [r["result"] for r in out] == ["Ok", "Ok", "Dropped", "ProcessingFailed", "ProcessingFailed", "Dropped"]
    for rec in out:
        assert set(rec) == {"recordId", "result", "data"}
        base64.b64decode(rec["data"], validate=True)

    score = REGISTRY.get("score")
    columns = [c.name for c in score.columns]
    timestamps = [c.name for c in score.columns if c.kind == "timestamp"]
    rows = {}
    for rec in out[:2]:
        data = base64.b64decode(rec["data"])
        assert data.endswith(b"\n") and not data.startswith(b"[")  # concatenated objects, one per line
        rows[rec["recordId"]] = [json.loads(line) for line in data.splitlines()]
        for row in rows[rec["recordId"]]:
            assert list(row) == columns
            for name in timestamps:
                assert LAKE_TS.match(row[name]), row[name]
            to_row(score, row)  # and the Parquet conversion reads it
    many, mixed = rows.values()
    # A record of many events: every one of them, in order, under the record's one recordId.
    assert [(r["user_id"], r["points"]) for r in many] == [("player-4711", 120), ("player-0815", 45),
                                                          ("player-4711", 30)]
    assert many[0]["ts"] == "2026-03-01 11:58:41.207" and many[0]["received_at"] == "2026-03-01 11:58:41.912"
    assert many[0]["challenge_id"] == "daily-2026-03-01" and many[1]["ts"] == "2026-03-01 11:59:10.000"
    # Bad events among good ones: the good ones go on, the bad ones are kept with their reason.
    assert [(r["user_id"], r["points"]) for r in mixed] == [("player-2718", 7), ("player-2718", 8)]
    kept = bad_events(backend)
    assert {k["source"] for k in kept} == {"transform"}
    reasons = {k["event"]["event_id"] if isinstance(k["event"], dict) else k["event"]: k["reason"] for k in kept}
    assert set(reasons) == {"0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9", '{"event_id": "trunc',
                            "6f5e4d3c-2b1a-4098-8776-655443322110"}
    assert "points is not an integer" in reasons["0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"]
    assert "not JSON" in reasons['{"event_id": "trunc']
    assert "not a score event" in reasons["6f5e4d3c-2b1a-4098-8776-655443322110"]  # alone in its record: Dropped
    for rid, reason in ((out[1]["recordId"], reasons['{"event_id": "trunc']),
                        (out[5]["recordId"], reasons["6f5e4d3c-2b1a-4098-8776-655443322110"])):
        assert rid in reason  # which record it came in
    # Unreadable records (an array of events, not UTF-8) go back as they came: Firehose keeps them under the
    # error prefix.
    assert [out[i]["data"] for i in (3, 4)] == [event["records"][i]["data"] for i in (3, 4)]


def test_transform_keeps_events_of_another_type_as_bad_events(backend: Backend) -> None:
    event = load_event("firehose_transform")
    event["deliveryStreamArn"] = event["deliveryStreamArn"].replace("streamboard-score", "streamboard-action")
    results = [r["result"] for r in transform.handle(event, backend)["records"]]
    assert results == ["Dropped", "Dropped", "Dropped", "ProcessingFailed", "ProcessingFailed", "Ok"]
    kept = [k for k in bad_events(backend) if isinstance(k["event"], dict)]
    assert len(kept) == 6 and all("not a action event" in k["reason"] for k in kept)  # 3 + 3 scores, none lost


def test_transform_writes_nothing_when_every_event_is_good(backend: Backend) -> None:
    event = load_event("firehose_transform")
    event["records"] = event["records"][:1]
    assert [r["result"] for r in transform.handle(event, backend)["records"]] == ["Ok"]
    assert backend.lake.list_keys("") == []


# --- read API ----------------------------------------------------------------------------------------------------


@pytest.fixture
def boards(backend: Backend) -> Backend:
    ensure_tables(backend.catalog, backend.registry)
    entries = tuple(BoardEntry(i + 1, f"player-{i:04d}", f"Player {i}", 1000 - 10 * i) for i in range(8))
    backend.boards.replace_boards([
        Board("overall", window, "2026-03-01T12:00:00Z", "2026-03-01T12:00:03.120Z", entries)
        for window in ("all", "30d", "365d")
    ] + [Board("chess", "all", "2026-03-01T12:00:00Z", "2026-03-01T12:00:03.120Z", entries[:2])])
    return backend


def api_event(path: str, query: str = "", method: str = "GET", headers: dict[str, str] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = load_event("apigw_leaderboard")
    event["rawPath"] = path
    event["rawQueryString"] = query
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = path
    if headers:
        event["headers"].update(headers)
    return event


def body_of(response: dict[str, Any]) -> Any:
    assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}
    assert response["isBase64Encoded"] is False
    assert response["headers"]["content-type"] == "application/json"
    return json.loads(response["body"])


def test_read_api_leaderboard(boards: Backend) -> None:
    response = read_api.handle(load_event("apigw_leaderboard"), boards)
    assert response["statusCode"] == 200
    body = body_of(response)
    assert body == {
        "scope": "overall",
        "window": "30d",
        "as_of": "2026-03-01T12:00:00Z",
        "refreshed_at": "2026-03-01T12:00:03.120Z",
        "entries": [
            {"rank": i + 1, "user_id": f"player-{i:04d}", "user_name": f"Player {i}", "score": 1000 - 10 * i}
            for i in range(5)
        ],
    }


def test_read_api_defaults_to_window_all_and_limit_10(boards: Backend) -> None:
    body = body_of(read_api.handle(api_event("/v1/leaderboards/chess"), boards))
    assert body["window"] == "all" and len(body["entries"]) == 2


def test_read_api_user_profile(boards: Backend) -> None:
    boards.profiles.apply([{"event_id": "e1", "event_type": "score", "user_id": "player-0001", "ts": "t",
                            "category": "chess", "points": 990}], "2026-03-01T12:00:00.000Z")
    response = read_api.handle(api_event("/v1/users/player-0001"), boards)
    assert response["statusCode"] == 200
    body = body_of(response)
    assert body["total"] == 990 and body["categories"] == {"chess": 990}
    assert {"scope": "chess", "window": "all", "rank": 2, "score": 990} in body["ranks"]


@pytest.mark.parametrize(
    ("path", "query", "method", "status"),
    [
        ("/v1/leaderboards/overall", "window=7d", "GET", 400),
        ("/v1/leaderboards/overall", "window=", "GET", 400),
        ("/v1/leaderboards/overall", "limit=0", "GET", 400),
        ("/v1/leaderboards/overall", "limit=1001", "GET", 400),
        ("/v1/leaderboards/overall", "limit=-1", "GET", 400),
        ("/v1/leaderboards/overall", "limit=ten", "GET", 400),
        ("/v1/leaderboards/overall", "limit=5.5", "GET", 400),
        ("/v1/leaderboards/overall", "limit=%C2%B2", "GET", 400),  # '²'.isdigit() is True
        ("/v1/leaderboards/overall", "limit=", "GET", 400),
        ("/v1/leaderboards/overall", "limit=99999999999999999999999", "GET", 400),
        ("/v1/leaderboards/overall", "limit=" + "9" * 5000, "GET", 400),  # int() refuses over 4,300 digits
        ("/v1/leaderboards/overall", "limit=" + "0" * 4999 + "5", "GET", 400),
        ("/v1/leaderboards/checkers", "", "GET", 404),
        ("/v1/leaderboards/Not%20A%20Scope", "", "GET", 404),
        ("/v1/leaderboards/%00", "", "GET", 404),
        ("/v1/leaderboards/chess\n", "", "GET", 404),  # %0a decoded: `$` in a regex let it serve chess
        ("/v1/leaderboards/chess\r\n", "", "GET", 404),
        ("/v1/leaderboards/overall/extra", "", "GET", 404),
        ("/v1/users/nobody", "", "GET", 404),
        ("/v1/users/" + "u" * 129, "", "GET", 400),
        ("/v2/leaderboards/overall", "", "GET", 404),
        ("/console/0123456789abcdef/app.js", "", "GET", 404),  # an old version of the console's script
        ("/console/../read_api.py", "", "GET", 404),
        ("/", "", "POST", 405),
        ("/v1/health", "", "POST", 405),
        ("/v1/leaderboards/overall", "", "POST", 405),
        ("/v1/leaderboards/overall", "", "DELETE", 405),
        ("/v1/users/player-0001", "", "PUT", 405),
        ("/v1/admin/refresh", "", "GET", 405),
        ("/v1/admin/refresh", "", "POST", 401),
        ("/healthz", "", "POST", 405),
        ("/openapi.json", "", "DELETE", 405),
    ],
)
def test_read_api_client_errors(boards: Backend, path: str, query: str, method: str, status: int) -> None:
    response = read_api.handle(api_event(path, query, method), boards)
    assert response["statusCode"] == status
    body = body_of(response)
    assert set(body) == {"error"} and body["error"]
    assert "Traceback" not in response["body"]


@pytest.mark.parametrize(("path", "method", "allow"), [
    ("/v1/leaderboards/overall", "POST", "GET, HEAD, OPTIONS"),
    ("/v1/users/player-0001", "DELETE", "GET, HEAD, OPTIONS"),
    ("/v1/admin/refresh", "GET", "POST"),
    ("/v1/admin/refresh", "OPTIONS", "POST"),
    ("/healthz", "PUT", "GET, HEAD, OPTIONS"),
])
def test_read_api_405_says_which_methods_are_allowed(boards: Backend, path: str, method: str, allow: str) -> None:
    response = read_api.handle(api_event(path, method=method), boards)
    assert response["statusCode"] == 405
    assert response["headers"]["allow"] == allow


@pytest.mark.parametrize("path", ["/healthz", "/v1/leaderboards/chess", "/v1/leaderboards", "/openapi.json"])
def test_read_api_head_answers_like_get_without_a_body(boards: Backend, path: str) -> None:
    get = read_api.handle(api_event(path), boards)
    head = read_api.handle(api_event(path, method="HEAD"), boards)
    assert get["statusCode"] == head["statusCode"] == 200
    assert head["headers"] == get["headers"]
    assert head["body"] == "" and get["body"]


def test_read_api_refuses_a_request_body(boards: Backend) -> None:
    small = api_event("/v1/leaderboards/chess")
    small["body"] = "{}"  # tolerated and ignored
    large = api_event("/v1/admin/refresh", method="POST")
    large["body"] = "x" * (read_api.MAX_BODY + 1)
    assert read_api.handle(small, boards)["statusCode"] == 200
    response = read_api.handle(large, boards)
    assert response["statusCode"] == 413
    assert "no request body" in body_of(response)["error"]


def test_read_api_admin_refresh_needs_an_admin_key(boards: Backend) -> None:
    boards.apps.create("game", "app", key="app-key")
    boards.apps.create("ops", "admin", key="admin-key")
    calls: list[bool] = []

    def refresh(full: bool = False) -> dict[str, Any]:
        calls.append(full)
        return {"boards": 0}

    boards.refresh = refresh
    denied = read_api.handle(api_event("/v1/admin/refresh", method="POST", headers={"x-api-key": "app-key"}), boards)
    assert denied["statusCode"] == 401 and calls == []
    allowed = read_api.handle(api_event("/v1/admin/refresh", method="POST", headers={"X-Api-Key": "admin-key"}),
                              boards)
    assert allowed["statusCode"] == 200 and calls == [False]
    rebuild = read_api.handle(api_event("/v1/admin/refresh", "full=true", method="POST",
                                        headers={"x-api-key": "admin-key"}), boards)
    assert rebuild["statusCode"] == 200 and calls == [False, True]
    odd = read_api.handle(api_event("/v1/admin/refresh", "full=maybe", method="POST",
                                    headers={"x-api-key": "admin-key"}), boards)
    assert odd["statusCode"] == 400 and calls == [False, True]


ODD_REQUESTS = [
    ("/v1/leaderboards/overall", "limit=1&limit=2000"),
    ("/v1/leaderboards/overall", "window=all&window=bad"),
    ("/v1/leaderboards/overall", "%zz=%zz&limit"),
    ("/v1/leaderboards/overall", "limit=%00"),
    ("/v1/leaderboards/overall", "window=%F0%9F%8F%86"),
    ("/v1/leaderboards/" + "a" * 5000, ""),
    ("/v1/leaderboards/..%2F..%2Fetc", ""),
    ("/v1/users/%F0%9F%8F%86", ""),
    ("/v1/users/a/b", ""),
    ("/v1/users/", ""),
    ("//", ""),
    ("", ""),
]


@pytest.mark.parametrize(("path", "query"), ODD_REQUESTS)
def test_read_api_never_answers_odd_input_with_a_5xx(boards: Backend, path: str, query: str) -> None:
    response = read_api.handle(api_event(path, query), boards)
    assert 200 <= response["statusCode"] < 500
    body_of(response)


def test_read_api_survives_a_bare_event(boards: Backend) -> None:
    response = read_api.handle({}, boards)  # no method, no path: a GET of / (the console's page)
    assert response["statusCode"] == 200 and response["headers"]["content-type"].startswith("text/html")
    bare_post = read_api.handle({"requestContext": {"http": {"method": "POST"}}}, boards)
    assert bare_post["statusCode"] == 405
    body_of(bare_post)


# --- caching and CORS (DESIGN section 5) --------------------------------------------------------------------


@pytest.fixture(params=["local", "aws"])
def either(request: pytest.FixtureRequest, tmp_path: Path, fake_aws_credentials: None) -> Iterator[Backend]:
    """A backend of each kind (aws: boto3 on moto), with the default hourly refresh."""
    settings = Settings(data_dir=tmp_path / "data")
    if request.param == "local":
        yield build_local_backend(settings)
        return
    with mock_aws():
        from streamboard.adapters.aws.provision import provision

        yield build_aws_backend(settings, REGISTRY, provision(settings, REGISTRY))


def land_refresh(backend: Backend, refreshed: dt.datetime, top_score: int) -> None:
    """Write every board as a refresh that started at ``refreshed`` does (the writer's own path)."""
    stamp = format_ts(refreshed)
    rows = [{"scope": scope, "time_window": window, "as_of": refreshed, "user_id": user, "user_name": user,
             "board_rank": rank, "score": top_score - 10 * rank}
            for scope in ("overall", "chess") for window in ("all", "30d")
            for rank, user in enumerate(("ann", "bob", "cy"), start=1)]
    backend.boards.replace_boards(leaderboards.boards_from_rows(rows, stamp))


def test_board_etag_changes_exactly_when_a_refresh_lands_and_304_until_then(either: Backend) -> None:
    start = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    land_refresh(either, start, 100)
    first = read_api.handle(api_event("/v1/leaderboards/chess"), either)
    again = read_api.handle(api_event("/v1/leaderboards/chess"), either)
    tag = first["headers"]["etag"]
    assert first["statusCode"] == again["statusCode"] == 200
    assert re.fullmatch(r'"[0-9a-f]+"', tag) and again["headers"]["etag"] == tag
    for header in (tag, f"W/{tag}", f'"nope", {tag}', "*"):
        cached = read_api.handle(api_event("/v1/leaderboards/chess", headers={"If-None-Match": header}), either)
        assert cached["statusCode"] == 304 and cached["body"] == ""
        assert cached["headers"]["etag"] == tag and "public, max-age=" in cached["headers"]["cache-control"]
        assert cached["headers"]["access-control-allow-origin"] == "*"
    other = read_api.handle(api_event("/v1/leaderboards/chess", headers={"If-None-Match": '"nope"'}), either)
    assert other["statusCode"] == 200 and body_of(other) == body_of(first)

    land_refresh(either, start + dt.timedelta(hours=1), 500)
    after = read_api.handle(api_event("/v1/leaderboards/chess", headers={"If-None-Match": tag}), either)
    assert after["statusCode"] == 200 and after["headers"]["etag"] != tag
    assert body_of(after)["entries"][0]["score"] == 490
    assert read_api.handle(api_event("/v1/leaderboards/chess", headers={"If-None-Match": after["headers"]["etag"]}),
                           either)["statusCode"] == 304


def test_a_board_kept_by_a_reader_process_is_served_at_most_its_cache_time_with_that_much_less_max_age(
        either: Backend) -> None:
    """The read API's container keeps a board's head a second (settings.board_cache_seconds): a refresh landed by
    the writer shows there within that second, and what it serves meanwhile is that much older, so no cache
    keeps it beyond the 300 s cap."""
    start = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    land_refresh(either, start, 100)
    clock = [0.0]
    store = PagedBoards(either.boards.table, copies=either.settings.board_copies,  # type: ignore[attr-defined]
                        cache_seconds=1.0, clock=lambda: clock[0])
    reader = dataclasses.replace(either, boards=store)
    now = start.timestamp() + 60
    first = read_api.handle(api_event("/v1/leaderboards/chess"), reader, now=now)
    assert max_age(first) == read_api.BOARD_MAX_AGE
    land_refresh(either, start, 500)  # the writer, another process
    clock[0] = 0.6
    kept = read_api.handle(api_event("/v1/leaderboards/chess"), reader, now=now + 0.6)
    assert kept["headers"]["etag"] == first["headers"]["etag"] and body_of(kept) == body_of(first)
    assert max_age(kept) == read_api.BOARD_MAX_AGE - 1
    clock[0] = 1.0
    fresh = read_api.handle(api_event("/v1/leaderboards/chess", headers={"If-None-Match": first["headers"]["etag"]}),
                            reader, now=now + 1)
    assert fresh["statusCode"] == 200 and fresh["headers"]["etag"] != first["headers"]["etag"]
    assert body_of(fresh)["entries"][0]["score"] == 490 and max_age(fresh) == read_api.BOARD_MAX_AGE


def test_each_window_and_limit_of_a_board_has_its_own_etag(either: Backend) -> None:
    land_refresh(either, dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC), 100)
    variants = ["", "window=30d", "limit=2", "limit=20", "window=30d&limit=20"]
    tags = [read_api.handle(api_event("/v1/leaderboards/chess", q), either)["headers"]["etag"] for q in variants]
    assert len(set(tags)) == len(variants)  # limit=20 and the default hold the same 3 entries, still distinct
    default = read_api.handle(api_event("/v1/leaderboards/chess", "limit=20", headers={"If-None-Match": tags[0]}),
                              either)
    assert default["statusCode"] == 200


def max_age(response: dict[str, Any]) -> int:
    match = re.fullmatch(r"public, max-age=(\d+)", response["headers"]["cache-control"])
    assert match, response["headers"]["cache-control"]
    return int(match.group(1))


@pytest.mark.parametrize(("since_refresh", "expected"), [
    (3600 - 40, 40),  # the next hourly refresh is 40 s away
    (0, read_api.BOARD_MAX_AGE),  # just refreshed: capped, so an on-demand refresh shows up within 5 minutes
    (3600 - 299.5, 299),
    (3600, 0),  # due now
    (3600 + 600, 0),  # overdue: it may land any moment
])
def test_board_max_age_never_outlives_the_next_scheduled_refresh(either: Backend, since_refresh: float,
                                                                 expected: int) -> None:
    refreshed = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    land_refresh(either, refreshed, 100)
    now = refreshed.timestamp() + since_refresh
    response = read_api.handle(api_event("/v1/leaderboards/overall", "window=30d"), either, now=now)
    assert max_age(response) == expected
    assert max_age(response) == 0 or now + max_age(response) <= refreshed.timestamp() + either.settings.refresh_seconds


def test_board_max_age_follows_the_configured_schedule(tmp_path: Path) -> None:
    backend = build_local_backend(Settings(data_dir=tmp_path / "data", refresh_seconds=120))
    refreshed = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    land_refresh(backend, refreshed, 100)
    response = read_api.handle(api_event("/v1/leaderboards/overall"), backend, now=refreshed.timestamp() + 30)
    assert max_age(response) == 90


def test_a_board_never_refreshed_is_not_kept(backend: Backend) -> None:
    response = read_api.handle(api_event("/v1/leaderboards/overall"), backend)
    assert response["statusCode"] == 200 and max_age(response) == 0 and response["headers"]["etag"]


def test_profile_is_cached_a_few_seconds_with_an_etag_of_its_content(either: Backend) -> None:
    either.profiles.apply([{"event_id": "e1", "event_type": "score", "user_id": "ann", "ts": "t",
                            "category": "chess", "points": 5}], "2026-03-01T12:00:00.000Z")
    first = read_api.handle(api_event("/v1/users/ann"), either)
    assert 1 <= max_age(first) <= 10
    tag = first["headers"]["etag"]
    cached = read_api.handle(api_event("/v1/users/ann", headers={"if-none-match": f"W/{tag}"}), either)
    assert cached["statusCode"] == 304 and cached["body"] == ""
    either.profiles.apply([{"event_id": "e2", "event_type": "score", "user_id": "ann", "ts": "t",
                            "category": "chess", "points": 7}], "2026-03-01T12:00:01.000Z")
    changed = read_api.handle(api_event("/v1/users/ann", headers={"if-none-match": tag}), either)
    assert changed["statusCode"] == 200 and body_of(changed)["total"] == 12 and changed["headers"]["etag"] != tag


def test_health_admin_and_errors_are_never_stored(boards: Backend) -> None:
    boards.apps.create("ops", "admin", key="admin-key")
    boards.refresh = lambda full=False: {"boards": 0}
    health = read_api.handle(api_event("/healthz"), boards)
    admin = read_api.handle(api_event("/v1/admin/refresh", method="POST", headers={"x-api-key": "admin-key"}),
                            boards)
    denied = read_api.handle(api_event("/v1/admin/refresh", method="POST"), boards)
    missing = read_api.handle(api_event("/v1/leaderboards/checkers"), boards)
    for response, status in ((health, 200), (admin, 200), (denied, 401), (missing, 404)):
        assert response["statusCode"] == status
        assert response["headers"]["cache-control"] == "no-store" and "etag" not in response["headers"]
    # a matching If-None-Match does not turn health into a 304
    assert read_api.handle(api_event("/healthz", headers={"if-none-match": "*"}), boards)["statusCode"] == 200


@pytest.mark.parametrize("path", ["/v1/leaderboards/chess", "/v1/users/player-0001", "/v1/leaderboards",
                                  "/healthz", "/v1/leaderboards/checkers"])
def test_reads_allow_cors_from_any_origin_without_credentials(boards: Backend, path: str) -> None:
    boards.profiles.apply([{"event_id": "e1", "event_type": "score", "user_id": "player-0001", "ts": "t",
                            "category": "chess", "points": 990}], "2026-03-01T12:00:00.000Z")
    origin = {"origin": "https://game.example"}
    get = read_api.handle(api_event(path, headers=origin), boards)
    assert get["headers"]["access-control-allow-origin"] == "*"
    assert get["headers"]["access-control-expose-headers"] == "ETag"
    assert not any(h.startswith("access-control-allow-credentials") for h in get["headers"])
    preflight = read_api.handle(api_event(path, method="OPTIONS", headers={
        **origin, "access-control-request-method": "GET", "access-control-request-headers": "if-none-match"}), boards)
    assert preflight["statusCode"] == 204 and preflight["body"] == ""
    headers = preflight["headers"]
    assert headers["access-control-allow-origin"] == "*"
    assert set(headers["access-control-allow-methods"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
    assert "if-none-match" in headers["access-control-allow-headers"].lower()
    assert int(headers["access-control-max-age"]) > 0


def test_the_admin_route_answers_no_browser_cross_origin(boards: Backend) -> None:
    origin = {"origin": "https://evil.example"}
    post = read_api.handle(api_event("/v1/admin/refresh", method="POST", headers=origin), boards)
    preflight = read_api.handle(api_event("/v1/admin/refresh", method="OPTIONS", headers={
        **origin, "access-control-request-method": "POST"}), boards)
    assert post["statusCode"] == 401 and preflight["statusCode"] == 405
    for response in (post, preflight):
        assert not any(h.startswith("access-control-") for h in response["headers"])


# --- every user's ranks, and the entries around a user (streamboard.ranks) ---------------------------------------

RANK_SCOPES = ("overall", "chess")


def land_ranks(backend: Backend, refreshed: dt.datetime, bonus: int = 0, batch: int = 1
               ) -> dict[tuple[str, str], list[BoardEntry]]:
    """Write ranks as a refresh that started at ``refreshed`` does: 40 players in ties of four (chess only for
    the even ones, no 30d board for the last ten); returns the oracle's boards."""
    from streamboard.ranks import UserScores

    scores = {}
    for i in range(40):
        user = f"p{i:02d}"
        base = 100 - (i // 4) * 10 + (bonus if i == 39 else 0)
        mine = {("overall", "all"): base, ("overall", "365d"): base}
        if i < 30:
            mine[("overall", "30d")] = base // 2
        if i % 2 == 0:
            mine.update({("chess", "all"): base, ("chess", "365d"): base})
        scores[user] = mine
    users = [UserScores(u, f"Name {u}", True, tuple(
        (scope, *(m.get((scope, w), 0) for w in read_api.WINDOWS)) for scope in RANK_SCOPES
        if any(m.get((scope, w)) for w in read_api.WINDOWS))) for u, m in sorted(scores.items())]
    backend.ranks.write(users, batch=batch, plan=f"{batch}@{refreshed}", rebuild=True, base_batch=0,
                        as_of=format_ts(refreshed), refreshed_at=format_ts(refreshed + dt.timedelta(seconds=3)))
    for user in scores:  # a profile (GET /v1/users needs one)
        backend.profiles.apply([{"event_id": f"e-{user}", "event_type": "score", "user_id": user, "ts": "t",
                                 "category": "chess", "points": 1}], format_ts(refreshed))
    return rank_oracle.boards(scores, {u: f"Name {u}" for u in scores})


def test_a_users_ranks_on_every_board_with_board_size_and_percentile(either: Backend) -> None:
    ordered = land_ranks(either, dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC))
    expected = rank_oracle.ranks(ordered)
    for user in ("p00", "p05", "p38", "p39"):
        body = body_of(read_api.handle(api_event(f"/v1/users/{user}"), either))
        assert body["ranks"] == expected[user]
    p05 = {(r["scope"], r["window"]): r for r in expected["p05"]}
    # p05 ties with p04..p07 for rank 5 of 40; 32 players below
    assert p05[("overall", "all")] == {"scope": "overall", "window": "all", "rank": 5, "score": 90, "of": 40,
                                       "percentile": 32 / 40}
    assert ("chess", "all") not in p05 and [r["window"] for r in expected["p39"] if r["scope"] == "overall"] == [
        "365d", "all"]  # on no board without a score there


@pytest.mark.parametrize(("user", "limit", "first_rank"), [
    ("p00", 5, 1),  # at rank 1: clipped at the top, the user first
    ("p02", 5, 1),  # inside the first tie: (limit - 1) // 2 = 2 before it, the tie of four and rank 5
    ("p17", 6, 13),  # in the middle: 2 before, 3 after, across three scores
    ("p21", 3, 21),  # inside a tie in the middle: the window starts in it, every entry rank 21
    ("p39", 7, 33),  # at the last rank: clipped at the bottom, the user last
])
def test_around_a_user_is_a_board_centred_on_their_place(either: Backend, user: str, limit: int,
                                                         first_rank: int) -> None:
    ordered = land_ranks(either, dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC))
    response = read_api.handle(api_event("/v1/leaderboards/overall", f"window=all&around={user}&limit={limit}"),
                               either)
    assert response["statusCode"] == 200
    body = body_of(response)
    assert set(body) == {"scope", "window", "as_of", "refreshed_at", "entries"}
    assert body["as_of"] == "2026-03-01T12:00:00.000Z" and body["refreshed_at"] == "2026-03-01T12:00:03.000Z"
    want = rank_oracle.around(ordered[("overall", "all")], user, limit)
    assert want is not None and body["entries"] == [
        {"rank": e.rank, "user_id": e.user_id, "user_name": e.user_name, "score": e.score} for e in want]
    assert body["entries"][0]["rank"] == first_rank and user in [e["user_id"] for e in body["entries"]]
    default = body_of(read_api.handle(api_event("/v1/leaderboards/overall", f"around={user}"), either))
    assert len(default["entries"]) == 10 and default["window"] == "all"  # the board's defaults


@pytest.mark.parametrize(("query", "status", "error"), [
    ("window=30d&around=p35", 404, "'p35' is not on the overall board of window 30d"),
    ("window=all&around=nobody", 404, "'nobody' is not on the overall board"),
    ("around=", 400, "around must be a user_id"),
    ("around=" + "u" * 129, 400, "around must be a user_id"),
    ("around=p01&limit=0", 400, "limit must be"),
])
def test_around_a_user_not_on_the_board_is_a_clear_404(either: Backend, query: str, status: int, error: str) -> None:
    land_ranks(either, dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC))
    response = read_api.handle(api_event("/v1/leaderboards/overall", query), either)
    assert response["statusCode"] == status and error in body_of(response)["error"]
    assert response["headers"]["cache-control"] == "no-store"
    chess = read_api.handle(api_event("/v1/leaderboards/chess", "around=p01"), either)  # odd players: no chess
    assert chess["statusCode"] == 404 and "not on the chess board" in body_of(chess)["error"]
    checkers = read_api.handle(api_event("/v1/leaderboards/checkers", "around=p01"), either)
    assert checkers["statusCode"] == 404 and "no leaderboard for scope 'checkers'" in body_of(checkers)["error"]


def test_around_is_cached_like_a_board_with_an_etag_per_version_and_user(either: Backend) -> None:
    start = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    land_ranks(either, start)
    now = start.timestamp() + 3600 - 40  # the next hourly refresh is 40 s away
    first = read_api.handle(api_event("/v1/leaderboards/overall", "around=p39&limit=3"), either, now=now)
    tag = first["headers"]["etag"]
    assert max_age(first) == 40 and first["headers"]["access-control-allow-origin"] == "*"
    cached = read_api.handle(api_event("/v1/leaderboards/overall", "around=p39&limit=3",
                                       headers={"If-None-Match": tag}), either, now=now)
    assert cached["statusCode"] == 304 and cached["body"] == "" and cached["headers"]["etag"] == tag
    other = read_api.handle(api_event("/v1/leaderboards/overall", "around=p38&limit=3"), either, now=now)
    board = read_api.handle(api_event("/v1/leaderboards/overall", "limit=3"), either, now=now)
    assert len({tag, other["headers"]["etag"], board["headers"].get("etag")}) == 3
    land_ranks(either, start + dt.timedelta(hours=1), bonus=100, batch=2)  # p39 now leads
    reader = dataclasses.replace(either, ranks=type(either.ranks)(either.boards.table, cache_seconds=0))  # type: ignore[attr-defined]
    after = read_api.handle(api_event("/v1/leaderboards/overall", "around=p39&limit=3",
                                      headers={"If-None-Match": tag}), reader, now=now + 3600)
    assert after["statusCode"] == 200 and after["headers"]["etag"] != tag
    entries = body_of(after)["entries"]
    assert [e["rank"] for e in entries] == [1, 2, 2] and entries[0]["user_id"] == "p39"


# --- leaderboard writer ------------------------------------------------------------------------------------------


def test_writer_keeps_the_old_boards_on_a_failed_query(boards: Backend) -> None:
    before = boards.boards.get_board("overall", "30d", 1000)
    query_id = boards.query.start_query("SELECT * FROM no_such_table")
    assert boards.query.status(query_id).state == "FAILED"
    event = load_event("athena_state_change")
    event["detail"]["queryExecutionId"] = query_id

    result = leaderboards.writer_handle(event, boards)

    assert result["state"] == "FAILED" and result["boards"] == 0
    assert "no_such_table" in result["reason"]
    assert boards.boards.get_board("overall", "30d", 1000) == before
    assert boards.boards.scopes() == ["chess", "overall"]


def test_writer_leaves_boards_alone_for_a_query_that_is_not_a_refresh_step(boards: Backend) -> None:
    query_id = boards.query.start_query(
        "SELECT 'overall' AS scope, 'all' AS time_window, TIMESTAMP '2026-03-02 00:00:00' AS as_of, "
        "'new-user' AS user_id, 'New' AS user_name, 5 AS score, 1 AS board_rank"
    )
    before = boards.boards.get_board("overall", "all", 10)
    event = load_event("athena_state_change")
    event["detail"].update({"queryExecutionId": query_id, "currentState": "SUCCEEDED"})
    del event["detail"]["athenaError"]
    result = leaderboards.writer_handle(event, boards)
    assert result == {"query_id": query_id, "state": "SUCCEEDED", "refresh": None}
    assert boards.boards.get_board("overall", "all", 10) == before


# --- deployed entry points ---------------------------------------------------------------------------------------


@pytest.fixture
def deployed_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[Settings]:
    monkeypatch.setenv(ENV_DATA_DIR, str(settings.data_dir))
    deployed.backend.cache_clear()
    yield settings
    deployed.backend.cache_clear()


def test_entry_points_build_the_backend_from_the_environment(deployed_env: Settings) -> None:
    assert router.handler(load_event("kinesis_router"), None) == {"batchItemFailures": []}
    results = transform.handler(load_event("firehose_transform"), None)["records"]
    assert [r["result"] for r in results] == ["Ok", "Ok", "Dropped", "ProcessingFailed", "ProcessingFailed", "Dropped"]
    assert any("/transform-" in key for key in deployed.backend().lake.list_keys("bad-events/"))  # its lake
    response = read_api.handler(load_event("apigw_leaderboard"), None)
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["entries"] == []
    assert deployed.backend().settings.data_dir == deployed_env.data_dir
