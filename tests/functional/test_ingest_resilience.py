"""Ingest's protections: rate limits (429), a bounded buffer (503), a hung stream (503, not acknowledged),
records too large for the dead-letter queue (kept in the lake behind a pointer, followed by redrive). Slow
bodies (408) are the connection's: tests/functional/test_serving.py."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import time
from typing import Any

from processors.redrive import redrive
from streamboard.backend import Backend
from streamboard.ports import PutResult
from streamboard.settings import Settings
from tests.conftest import events_of, stream_record
from tests.functional.test_ingest_api import (
    KEY,
    FakeStream,
    action_event,
    ingest,
    key_of,
    score_event,
    stream_contents,
)
from tests.functional.test_ingest_api import local as local  # noqa: F401 - the fixture


def _events(n: int) -> list[dict[str, Any]]:
    return [score_event(user=f"u{i}") for i in range(n)]


def test_over_the_rate_limit_is_429_with_retry_after_and_nothing_written(settings: Settings, local: Backend) -> None:
    limited = dataclasses.replace(settings, rate_limit_events_per_s=50, rate_limit_burst=100)
    allowed, over = _events(100), _events(60)
    with ingest(limited, local) as client:
        first = client.post("/v1/events", json={"events": allowed}, headers={"x-api-key": KEY})
        second = client.post("/v1/events", json={"events": over}, headers={"x-api-key": KEY})
    assert first.status_code == 202
    assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
    assert "rate limit" in second.json()["error"]
    assert [e["event_id"] for e in stream_contents(local.stream)] == [e["event_id"] for e in allowed]


def test_a_full_buffer_answers_503_instead_of_growing(settings: Settings, local: Backend) -> None:
    small = dataclasses.replace(settings, ingest_max_pending=150)
    slow = FakeStream(delay=0.5)
    with ingest(small, local, stream=slow) as client, concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(client.post, "/v1/events", json={"events": _events(100)}, headers={"x-api-key": KEY})
                   for _ in range(6)]
        codes = sorted(f.result().status_code for f in futures)
        busy = [f.result() for f in futures if f.result().status_code == 503]
    assert 202 in codes and 503 in codes, codes
    assert all(int(r.headers["retry-after"]) >= 1 and "capacity" in r.json()["error"] for r in busy)
    assert len(slow.stored) == codes.count(202)  # a record per accepted request
    assert len(events_of(r.data for r in slow.stored)) == 100 * codes.count(202)  # the refused never written


def test_requests_that_time_out_still_hold_their_place_in_the_buffer(settings: Settings, local: Backend) -> None:
    """A hung stream: requests give up (503, not acknowledged) but their records stay queued and keep counting
    against the buffer, so the buffer stays bounded; once the stream answers, they are written."""
    import threading

    release = threading.Event()

    class Hung(FakeStream):
        def put_records(self, records: Any) -> list[PutResult]:
            release.wait(30)
            return super().put_records(records)

    stream = Hung()
    small = dataclasses.replace(settings, ingest_max_pending=250, ingest_request_timeout_s=0.3)
    with ingest(small, local, stream=stream) as client:
        first, second, third = (client.post("/v1/events", json={"events": _events(100)}, headers={"x-api-key": KEY})
                                for _ in range(3))
        assert [first.status_code, second.status_code, third.status_code] == [503, 503, 503]
        assert "took too long" in first.json()["error"] and "took too long" in second.json()["error"]
        assert "capacity" in third.json()["error"]  # the first two still fill 200 of the 250 places
        assert client.app.state.committer.pending == 200  # type: ignore[attr-defined]
        release.set()
    assert len(events_of(r.data for r in stream.stored)) == 200  # written once the stream answered


def test_stopping_gives_up_on_a_hung_stream_after_the_stop_timeout(
        settings: Settings, local: Backend, caplog: Any) -> None:
    import logging
    import threading

    release = threading.Event()

    class Hung(FakeStream):
        def put_records(self, records: Any) -> list[PutResult]:
            release.wait(30)
            return super().put_records(records)

    quick = dataclasses.replace(settings, ingest_request_timeout_s=0.3, stop_timeout_s=0.5)
    started = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING, logger="streamboard.ingest"), ingest(quick, local, stream=Hung()) as c:
            resp = c.post("/v1/events", json={"events": _events(10)}, headers={"x-api-key": KEY})
        stopped_after = time.monotonic() - started
    finally:
        release.set()
    assert resp.status_code == 503  # never acknowledged ...
    assert stopped_after < 10  # ... so shutdown gives up after its timeout (0.5 s) instead of the 30 s hang
    assert "10 events not written (their requests were not acknowledged)" in caplog.text


class _DownStream(FakeStream):
    def put_records(self, records: Any) -> list[PutResult]:
        raise ConnectionError("down")


def test_records_too_large_for_the_queue_are_kept_in_the_lake_and_redriven(local: Backend) -> None:
    from ingest.batcher import MAX_QUEUE_MESSAGE, GroupCommitter
    from streamboard.overflow import overflow_pointer

    def bulky(n: int) -> dict[str, Any]:
        return {**action_event(f"u{n}"), "properties": {f"k{i}": "x" * 1024 for i in range(50)}}  # ~55 kB

    big_events, small_events = [bulky(n) for n in range(6)], [score_event("u1"), score_event("u2")]
    big, small = stream_record(big_events), stream_record(small_events)  # a request's record each
    assert len(big.data) > MAX_QUEUE_MESSAGE > len(small.data)
    committer = GroupCommitter(_DownStream(), local.dlq, retry_seconds=0.01, oversize=overflow_pointer(local.lake))

    async def run() -> None:
        await committer.start()
        await asyncio.gather(committer.submit([big], len(big_events)), committer.submit([small], len(small_events)))
        await committer.stop()

    asyncio.run(run())
    assert local.dlq.depth() == 2
    assert len(local.lake.list_keys("dlq-overflow/")) == 1
    summary = redrive(local)
    assert summary == {"redriven": 2, "unreadable": 0, "failed": 0, "remaining": 0}
    in_stream = {r.partition_key: r.data for s in local.stream.shard_ids() for r in local.stream.read(s, None, 100)}
    assert in_stream == {big.partition_key: big.data, small.partition_key: small.data}  # byte for byte
    assert big.partition_key == key_of(big_events[0]) and small.partition_key == key_of(small_events[0])
    assert sorted(e["event_id"] for e in events_of(in_stream.values())) == sorted(
        e["event_id"] for e in big_events + small_events)
