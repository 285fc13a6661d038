"""The Lambda handlers, given AWS-shaped events from tests/events/, over the local backend."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from processors import deployed, leaderboards, read_api, router, transform
from streamboard.backend import Backend
from streamboard.ports import Board, BoardEntry
from streamboard.registry import REGISTRY
from streamboard.runtime.crawler import ensure_tables
from streamboard.runtime.firehose import to_row
from streamboard.settings import ENV_DATA_DIR, Settings
from tests.conftest import load_event

LAKE_TS = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}$")


def decoded(record: dict[str, Any]) -> bytes:
    return base64.b64decode(record["kinesis"]["data"])


class FakeDelivery:
    """A DeliveryStreams port that fails the given indexes of every batch (or raises)."""

    def __init__(self, failed: Sequence[int] = (), error: Exception | None = None) -> None:
        self.failed = list(failed)
        self.error = error
        self.batches: list[tuple[str, list[bytes]]] = []

    def put_record_batch(self, stream: str, records: Sequence[bytes]) -> list[int]:
        self.batches.append((stream, list(records)))
        if self.error is not None:
            raise self.error
        return [i for i in self.failed if i < len(records)]


# --- router ----------------------------------------------------------------------------------------------------


def test_router_delivers_good_records_and_quarantines_the_rest(backend: Backend) -> None:
    event = load_event("kinesis_router")
    good = [r for r in event["Records"] if decoded(r).startswith(b"{")]
    assert len(good) == 2 and len(event["Records"]) == 3

    assert router.handle(event, backend) == {"batchItemFailures": []}

    delivery: Any = backend.delivery
    count, _, _ = delivery.buffered("streamboard-score")
    assert count == 2
    buffered = [data for _, data, _ in delivery.take("streamboard-score", 1 << 20, 100)]
    assert buffered == [decoded(r) + b"\n" for r in good]  # newline-delimited, as Firehose wants
    assert delivery.buffered("streamboard-action")[0] == 0

    keys = backend.lake.list_keys("bad-events/")
    assert len(keys) == 1
    (kept,) = [json.loads(line) for line in backend.lake.get_object(keys[0]).splitlines()]
    assert kept["source"] == "router"
    assert "PNG" in kept["event"]
    bad_seq = event["Records"][1]["kinesis"]["sequenceNumber"]
    assert bad_seq in kept["reason"]

    profile = backend.profiles.get("player-4711")
    assert profile is not None and profile.total == 120


def test_router_reports_failed_records_by_sequence_number(backend: Backend) -> None:
    event = load_event("kinesis_router")
    fake = FakeDelivery(failed=[1])
    result = router.handle(event, dataclasses.replace(backend, delivery=fake))
    third_seq = event["Records"][2]["kinesis"]["sequenceNumber"]
    assert result == {"batchItemFailures": [{"itemIdentifier": third_seq}]}
    assert [stream for stream, _ in fake.batches] == ["streamboard-score"]
    # Only the delivered record counts in the profiles; the failed one will come again.
    assert backend.profiles.get("player-4711") is not None
    assert backend.profiles.get("player-0815") is None


def test_router_reports_every_routable_record_when_delivery_raises(backend: Backend) -> None:
    event = load_event("kinesis_router")
    fake = FakeDelivery(error=ConnectionError("firehose throttled"))
    result = router.handle(event, dataclasses.replace(backend, delivery=fake))
    seqs = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
    assert result == {"batchItemFailures": [{"itemIdentifier": seqs[0]}, {"itemIdentifier": seqs[2]}]}
    assert len(backend.lake.list_keys("bad-events/")) == 1  # the unroutable one is quarantined, not retried


def test_router_quarantines_unknown_event_types(backend: Backend) -> None:
    event = load_event("kinesis_router")
    record = copy.deepcopy(event["Records"][0])
    body = json.loads(decoded(record))
    body["event_type"] = "purchase"
    record["kinesis"]["data"] = base64.b64encode(json.dumps(body).encode()).decode()
    assert router.handle({"Records": [record]}, backend) == {"batchItemFailures": []}
    (key,) = backend.lake.list_keys("bad-events/")
    assert "purchase" in json.loads(backend.lake.get_object(key))["reason"]


def test_router_routes_each_type_to_its_own_delivery_stream(backend: Backend) -> None:
    event = load_event("kinesis_router")
    record = copy.deepcopy(event["Records"][0])
    action = {"event_id": "a5e6f7a8-b9c0-4d1e-8f2a-3b4c5d6e7f80", "event_type": "action", "user_id": "p1",
              "ts": "2026-03-01T11:58:41.207Z", "app_id": "local", "received_at": "2026-03-01T11:58:41.912Z",
              "name": "opened_shop", "properties": {"screen": "main"}}
    record["kinesis"]["data"] = base64.b64encode(json.dumps(action).encode()).decode()
    fake = FakeDelivery()
    router.handle({"Records": [event["Records"][0], record]}, dataclasses.replace(backend, delivery=fake))
    assert sorted(stream for stream, _ in fake.batches) == ["streamboard-action", "streamboard-score"]


# --- transform ---------------------------------------------------------------------------------------------------


def test_transform_returns_every_record_once_with_the_contract_shape() -> None:
    event = load_event("firehose_transform")
    result = transform.handler(event, None)
    assert set(result) == {"records"}
    out = result["records"]
    assert [r["recordId"] for r in out] == [r["recordId"] for r in event["records"]]
    assert [r["result"] for r in out] == ["Ok", "ProcessingFailed", "Dropped", "Ok"]
    for rec in out:
        assert set(rec) == {"recordId", "result", "data"}
        base64.b64decode(rec["data"], validate=True)

    score = REGISTRY.get("score")
    columns = [c.name for c in score.columns]
    timestamps = [c.name for c in score.columns if c.kind == "timestamp"]
    for rec in (out[0], out[3]):
        data = base64.b64decode(rec["data"])
        assert data.endswith(b"\n") and data.count(b"\n") == 1
        row = json.loads(data)
        assert list(row) == columns
        for name in timestamps:
            assert LAKE_TS.match(row[name]), row[name]
        to_row(score, data)  # and the Parquet conversion reads it

    first = json.loads(base64.b64decode(out[0]["data"]))
    assert first["ts"] == "2026-03-01 11:58:41.207"
    assert first["received_at"] == "2026-03-01 11:58:41.912"
    assert first["points"] == 120 and first["challenge_id"] == "daily-2026-03-01"
    assert json.loads(base64.b64decode(out[3]["data"]))["ts"] == "2026-03-01 11:59:10.000"
    # A failed record goes back as it came, so Firehose can write it under the error prefix.
    assert out[1]["data"] == event["records"][1]["data"]


def test_transform_fails_records_of_another_type() -> None:
    event = load_event("firehose_transform")
    event["deliveryStreamArn"] = event["deliveryStreamArn"].replace("streamboard-score", "streamboard-action")
    results = [r["result"] for r in transform.handler(event, None)["records"]]
    assert results == ["ProcessingFailed", "ProcessingFailed", "Dropped", "ProcessingFailed"]


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
        ("/v1/leaderboards/checkers", "", "GET", 404),
        ("/v1/leaderboards/Not%20A%20Scope", "", "GET", 404),
        ("/v1/leaderboards/%00", "", "GET", 404),
        ("/v1/leaderboards/overall/extra", "", "GET", 404),
        ("/v1/users/nobody", "", "GET", 404),
        ("/v1/users/" + "u" * 129, "", "GET", 400),
        ("/v2/leaderboards/overall", "", "GET", 404),
        ("/", "", "GET", 404),
        ("/v1/leaderboards/overall", "", "POST", 405),
        ("/v1/leaderboards/overall", "", "DELETE", 405),
        ("/v1/users/player-0001", "", "PUT", 405),
        ("/v1/admin/refresh", "", "GET", 405),
        ("/v1/admin/refresh", "", "POST", 401),
    ],
)
def test_read_api_client_errors(boards: Backend, path: str, query: str, method: str, status: int) -> None:
    response = read_api.handle(api_event(path, query, method), boards)
    assert response["statusCode"] == status
    body = body_of(response)
    assert set(body) == {"error"} and body["error"]
    assert "Traceback" not in response["body"]


def test_read_api_admin_refresh_needs_an_admin_key(boards: Backend) -> None:
    boards.apps.create("game", "app", key="app-key")
    boards.apps.create("ops", "admin", key="admin-key")
    calls: list[int] = []

    def refresh() -> dict[str, Any]:
        calls.append(1)
        return {"boards": 0}

    boards.refresh = refresh
    denied = read_api.handle(api_event("/v1/admin/refresh", method="POST", headers={"x-api-key": "app-key"}), boards)
    assert denied["statusCode"] == 401 and calls == []
    allowed = read_api.handle(api_event("/v1/admin/refresh", method="POST", headers={"X-Api-Key": "admin-key"}),
                              boards)
    assert allowed["statusCode"] == 200 and calls == [1]


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
    response = read_api.handle({}, boards)
    assert response["statusCode"] == 404
    body_of(response)


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


def test_writer_replaces_boards_on_success(boards: Backend) -> None:
    query_id = boards.query.start_query(
        "SELECT 'overall' AS scope, 'all' AS time_window, TIMESTAMP '2026-03-02 00:00:00' AS as_of, "
        "'new-user' AS user_id, 'New' AS user_name, 5 AS score, 1 AS board_rank"
    )
    event = load_event("athena_state_change")
    event["detail"].update({"queryExecutionId": query_id, "currentState": "SUCCEEDED"})
    del event["detail"]["athenaError"]
    result = leaderboards.writer_handle(event, boards)
    assert result == {"query_id": query_id, "state": "SUCCEEDED", "boards": 1}
    board = boards.boards.get_board("overall", "all", 10)
    assert board is not None and board.as_of == "2026-03-02T00:00:00Z"
    assert board.entries == (BoardEntry(1, "new-user", "New", 5),)
    old = boards.boards.get_board("overall", "30d", 10)
    assert old is not None and len(old.entries) == 8  # boards absent from the result are left alone


# --- deployed entry points ---------------------------------------------------------------------------------------


@pytest.fixture
def deployed_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[Settings]:
    monkeypatch.setenv(ENV_DATA_DIR, str(settings.data_dir))
    deployed.backend.cache_clear()
    yield settings
    deployed.backend.cache_clear()


def test_entry_points_build_the_backend_from_the_environment(deployed_env: Settings) -> None:
    assert router.handler(load_event("kinesis_router"), None) == {"batchItemFailures": []}
    response = read_api.handler(load_event("apigw_leaderboard"), None)
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["entries"] == []
    assert deployed.backend().settings.data_dir == deployed_env.data_dir
