"""The local read API answers a board read it gave less than a second ago from memory
(``streamboard.microcache``): the same bytes and validators, a 304 on a matching If-None-Match, a max-age
that keeps counting down, and nothing kept that must not be (errors, no-store, bodies, other routes)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from streamboard.microcache import MicroCache
from streamboard.registry import format_ts
from streamboard.runtime.stack import Pipeline, read_api_app
from streamboard.settings import Settings
from tests.conftest import stream_record

BOARD = "/v1/leaderboards/overall?window=all&limit=10"


class Handler:
    """A stand-in for the read API: counts its calls, answers what a test sets."""

    def __init__(self) -> None:
        self.calls = 0
        self.status, self.cache_control = 200, b"public, max-age=100"

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        self.calls += 1
        body = b'{"n":%d}' % self.calls
        await send({"type": "http.response.start", "status": self.status, "headers": [
            (b"content-type", b"application/json"), (b"etag", b'"v%d"' % self.calls),
            (b"cache-control", self.cache_control), (b"content-length", b"%d" % len(body)),
            (b"access-control-allow-origin", b"*")]})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def clock() -> list[float]:
    return [1000.0]


def test_a_board_read_again_within_the_second_is_answered_from_memory(clock: list[float]) -> None:
    handler = Handler()
    client = TestClient(MicroCache(handler, seconds=1.0, clock=lambda: clock[0]))
    first = client.get(BOARD)
    assert first.status_code == 200 and first.content == b'{"n":1}' and handler.calls == 1
    clock[0] += 0.4
    again = client.get(BOARD)
    assert handler.calls == 1 and again.content == first.content and again.headers["etag"] == '"v1"'
    assert again.headers["cache-control"] == "public, max-age=99"  # counted down, rounded up like the handler
    assert again.headers["content-length"] == "7" and again.headers["access-control-allow-origin"] == "*"
    # a matching validator: 304, no body, no content headers, the same validators
    cond = client.get(BOARD, headers={"if-none-match": 'W/"v0", "v1"'})
    assert cond.status_code == 304 and cond.content == b"" and handler.calls == 1
    assert "content-type" not in cond.headers and cond.headers["etag"] == '"v1"'
    assert cond.headers["cache-control"] == "public, max-age=99"
    head = client.head(BOARD)
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == "7"
    # another URL (a limit, a window) is another entry
    assert client.get(BOARD.replace("limit=10", "limit=11")).content == b'{"n":2}'
    # past the second, the handler answers again (a refresh may have landed)
    clock[0] += 0.7
    assert client.get(BOARD).content == b'{"n":3}'


def test_conditional_reads_alone_fill_the_cache_and_get_304s(clock: list[float]) -> None:
    """Clients that all hold the current version send only conditional requests: the first one a second asks
    the handler for the board without the condition, keeps it, and every answer is a 304 from memory."""
    handler = Handler()
    client = TestClient(MicroCache(handler, seconds=1.0, clock=lambda: clock[0]))
    answers = [client.get(BOARD, headers={"if-none-match": '"v1"'}) for _ in range(3)]
    assert [a.status_code for a in answers] == [304] * 3 and handler.calls == 1
    assert all(a.content == b"" and a.headers["etag"] == '"v1"' for a in answers)
    stale = client.get(BOARD, headers={"if-none-match": '"v0"'})  # an older copy: the body
    assert stale.status_code == 200 and stale.content == b'{"n":1}' and handler.calls == 1
    clock[0] += 1.5
    after = client.get(BOARD, headers={"if-none-match": '"v1"'})  # a second later the handler says "v2"
    assert after.status_code == 200 and after.headers["etag"] == '"v2"' and handler.calls == 2
    # an answer that is not kept (an error) is the handler's own, asked with the condition
    handler.status = 404
    clock[0] += 1.5
    assert client.get(BOARD, headers={"if-none-match": '"v2"'}).status_code == 404


@pytest.mark.parametrize("case", ["error", "no-store", "post", "body", "other-route", "board-list", "off"])
def test_what_is_never_answered_from_memory(clock: list[float], case: str) -> None:
    handler = Handler()
    handler.status = 404 if case == "error" else 200
    handler.cache_control = b"no-store" if case == "no-store" else b"public, max-age=100"
    client = TestClient(MicroCache(handler, seconds=0 if case == "off" else 1.0, clock=lambda: clock[0]))
    url = {"other-route": "/v1/users/ada", "board-list": "/v1/leaderboards/"}.get(case, BOARD)

    def call() -> Any:
        if case == "post":
            return client.post(url)
        if case == "body":
            return client.request("GET", url, content=b"{}")
        return client.get(url)

    call()
    call()
    assert handler.calls == 2


def test_the_read_api_reaches_its_handler_once_a_second_for_one_board(tmp_path: Path) -> None:
    pipeline = Pipeline(Settings(data_dir=tmp_path / "data"))
    now = dt.datetime.now(dt.UTC)
    ts = format_ts(now - dt.timedelta(minutes=1))  # before the refresh's as_of, whole seconds
    pipeline.backend.stream.put_records([stream_record([
        {"event_id": str(uuid.uuid4()), "event_type": "score", "user_id": f"u{i}", "ts": ts, "category": "chess",
         "points": i + 1} for i in range(5)], received_at=now)])
    pipeline.refresh()
    invocations = pipeline.backend.usage.report()["units"]["lambda_invocations"]  # type: ignore[union-attr]
    client = TestClient(read_api_app(pipeline.backend))
    answers = [client.get(BOARD) for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    assert len({(a.content, a.headers["etag"]) for a in answers}) == 1
    assert [e["user_id"] for e in answers[0].json()["entries"]] == [f"u{i}" for i in range(4, -1, -1)]
    assert client.get(BOARD, headers={"if-none-match": answers[0].headers["etag"]}).status_code == 304
    # the usage counts what reached the origin: one invocation of the read Lambda
    assert pipeline.backend.usage.report()["units"]["lambda_invocations"] == invocations + 1  # type: ignore[union-attr]
    # a refresh this process lands shows at once (as with the board store's own cached heads)
    pipeline.backend.stream.put_records([stream_record([
        {"event_id": str(uuid.uuid4()), "event_type": "score", "user_id": "u0", "ts": ts, "category": "chess",
         "points": 100}], received_at=now)])
    pipeline.refresh()
    after = client.get(BOARD, headers={"if-none-match": answers[0].headers["etag"]})
    assert after.status_code == 200 and after.json()["entries"][0] == {
        "rank": 1, "user_id": "u0", "user_name": None, "score": 101}


def test_concurrent_reads_of_an_expired_board_ask_the_handler_once(clock: list[float]) -> None:
    """When an entry is missing or expired, the requests that arrive while the handler is answering one of
    them wait for that answer instead of each asking the handler (no stampede once a second per board); a
    request the handler's answer cannot serve (not kept: an error) still gets the handler's own."""
    import asyncio

    class Slow(Handler):
        def __init__(self) -> None:
            super().__init__()
            self.gate = asyncio.Event()

        async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
            await self.gate.wait()
            await super().__call__(scope, receive, send)

    async def get(cache: MicroCache, etag: bytes | None = None) -> tuple[int, bytes]:
        path, _, query = BOARD.partition("?")
        headers = [(b"if-none-match", etag)] if etag else []
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        await cache({"type": "http", "method": "GET", "path": path, "query_string": query.encode(),
                     "headers": headers}, receive, send)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    async def run(status: int) -> tuple[Slow, list[tuple[int, bytes]]]:
        handler = Slow()
        handler.status = status
        cache = MicroCache(handler, seconds=1.0, clock=lambda: clock[0])
        requests = [asyncio.create_task(get(cache, b'"v1"' if i % 2 else None)) for i in range(8)]
        await asyncio.sleep(0.01)  # every request has arrived; the handler is still answering the first
        handler.gate.set()
        return handler, list(await asyncio.gather(*requests))

    handler, answers = asyncio.run(run(200))
    assert handler.calls == 1
    assert answers == [(200, b'{"n":1}'), (304, b"")] * 4
    handler, answers = asyncio.run(run(500))  # nothing kept: each request is the handler's to answer
    assert handler.calls == 8 and {status for status, _ in answers} == {500}
