"""Rate limits, the circuit breaker, EMF metrics and the fault plan, on their own."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ingest.batcher import CircuitBreaker
from ingest.limits import RateLimiter, TokenBucket
from ingest.metrics import Metrics
from streamboard.errors import RateLimited
from streamboard.faults import FaultPlan, FaultyStream
from streamboard.ports import PutResult, ReadRecord, StreamRecord


def test_token_bucket_grants_the_burst_then_refills_at_the_rate() -> None:
    bucket = TokenBucket(rate=100, burst=50)
    assert bucket.take(50) == 0
    wait = bucket.take(10)
    assert 0.05 <= wait <= 0.11  # ten tokens at 100/s
    time.sleep(0.12)
    assert bucket.take(10) == 0


def test_rate_limiter_is_per_app_and_says_when_to_retry() -> None:
    limiter = RateLimiter(events_per_second=10, burst=20)
    limiter.check("a", 20)
    with pytest.raises(RateLimited) as err:
        limiter.check("a", 5)
    assert err.value.retry_after >= 1 and "rate limit" in str(err.value)
    limiter.check("b", 20)  # another app has its own bucket
    RateLimiter(0, 0).check("a", 10**9)  # 0 = unlimited


def test_breaker_opens_after_repeated_failures_and_probes_after_the_cooldown() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown=0.05)
    breaker.record(False)
    assert breaker.state == "closed" and breaker.allow()
    breaker.record(False)
    assert breaker.state == "open" and not breaker.allow()
    time.sleep(0.06)
    assert breaker.state == "half-open" and breaker.allow()
    breaker.record(False)  # the probe failed: open again
    assert breaker.state == "open"
    time.sleep(0.06)
    breaker.record(True)
    assert breaker.state == "closed"


def test_metrics_are_embedded_metric_format() -> None:
    m = Metrics("ingest")
    assert m.emf() is None
    m.add("EventsAccepted", 3)
    m.add("EventsAccepted", 2)
    m.observe("PutRecordsLatency", 4.5)
    doc = m.emf()
    assert doc is not None and doc["EventsAccepted"] == 5 and doc["PutRecordsLatency"] == [4.5]
    meta = doc["_aws"]["CloudWatchMetrics"][0]
    assert meta["Namespace"] == "Streamboard" and meta["Dimensions"] == [["Service"]]
    assert {"Name": "PutRecordsLatency", "Unit": "Milliseconds"} in meta["Metrics"]
    assert m.emf() is None  # reset after each document


def test_a_hot_path_tally_counts_into_the_next_document_only() -> None:
    m = Metrics("ingest")
    tally = m.counter("Requests", "EventsAccepted", "EventsRejected")
    tally.counts[0] += 2
    tally.counts[1] += 150
    m.add("EventsAccepted", 1)
    doc = m.emf()
    assert doc is not None and doc["Requests"] == 2 and doc["EventsAccepted"] == 151 and "EventsRejected" not in doc
    assert m.emf() is None
    tally.counts[2] += 1
    assert m.emf()["EventsRejected"] == 1  # type: ignore[index]


class _Stream:
    def __init__(self) -> None:
        self.got: list[StreamRecord] = []

    def put_records(self, records: list[StreamRecord]) -> list[PutResult]:
        self.got.extend(records)
        return [PutResult("shardId-0", str(len(self.got))) for _ in records]

    def shard_ids(self) -> list[str]:
        return []

    def read(self, shard_id: str, after: str | None, limit: int) -> list[ReadRecord]:
        return []

    def latest(self, shard_id: str) -> str | None:
        return None


def test_fault_plan_switches_while_running(tmp_path: Path) -> None:
    plan_file = tmp_path / "faults.json"
    inner = _Stream()
    stream = FaultyStream(inner, FaultPlan(plan_file))
    records = [StreamRecord(str(i), b"x") for i in range(200)]
    assert all(r.ok for r in stream.put_records(records))  # no file: no faults
    plan_file.write_text(json.dumps({"stream_throttle": 0.5}))
    results = stream.put_records(records)
    failed = sum(not r.ok for r in results)
    assert 60 < failed < 140 and len(inner.got) == 200 + 200 - failed
    time.sleep(0.01)
    plan_file.write_text(json.dumps({"stream_down": True}))
    os.utime(plan_file, (time.time() + 1, time.time() + 1))  # a new mtime even on coarse clocks
    with pytest.raises(ConnectionError):
        stream.put_records(records)


class _AnsweringStream:
    """Answers every put with the given error code for every record (None: all written)."""

    def __init__(self, error: str | None) -> None:
        self.error, self.calls = error, 0

    def put_records(self, records: list[StreamRecord]) -> list[PutResult]:
        self.calls += 1
        return [PutResult("shardId-000000000000", "1") if self.error is None else PutResult(error_code=self.error)
                for _ in records]


class _Queue:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, bodies: list[bytes]) -> None:
        self.sent.extend(bodies)


@pytest.mark.parametrize(("error", "opens"), [("ProvisionedThroughputExceededException", False),
                                               ("InternalFailure", True)])
def test_a_throttling_stream_keeps_the_breaker_shut_a_failing_one_opens_it(error: str, opens: bool) -> None:
    from ingest.batcher import GroupCommitter

    stream, dlq = _AnsweringStream(error), _Queue()
    breaker = CircuitBreaker(threshold=3, cooldown=60)
    committer = GroupCommitter(stream, dlq, retry_seconds=0.3, breaker=breaker)  # type: ignore[arg-type]
    committer._commit([StreamRecord("k", b"{}")])  # retries until retry_seconds, then the DLQ
    assert dlq.sent == [b"{}"]
    assert stream.calls >= 3
    assert (committer.breaker.state == "open") is opens


class _Recording:
    """Records each PutRecords call's partition keys; fails every call whose first key is in ``fail``."""

    def __init__(self, fail: frozenset[str] = frozenset()) -> None:
        self.fail, self.calls = fail, []

    def put_records(self, records: list[StreamRecord]) -> list[PutResult]:
        self.calls.append([r.partition_key for r in records])
        if records[0].partition_key in self.fail:
            raise ConnectionError("down")
        return [PutResult("shardId-000000000000", "1") for _ in records]


class _DownQueue:
    def send(self, bodies: list[bytes]) -> None:
        raise ConnectionError("the queue is down too")


def test_requests_join_groups_of_at_most_max_records_and_share_each_groups_fate() -> None:
    """Requests queued together form groups (one PutRecords each) of whole requests, at most 3 records here;
    a group whose write fails (stream and queue down) fails each of its requests, and only those."""
    import asyncio

    from ingest.batcher import GroupCommitter
    from streamboard.errors import Unavailable

    stream = _Recording(fail=frozenset({"r3"}))
    committer = GroupCommitter(stream, _DownQueue(), max_records=3, retry_seconds=0.01,  # type: ignore[arg-type]
                               breaker=CircuitBreaker(threshold=100))
    requests = [[StreamRecord("r0", b"{}")], [StreamRecord("r1", b"{}"), StreamRecord("r2", b"{}")],
                [StreamRecord("r3", b"{}")], [StreamRecord("r4", b"{}")], [StreamRecord("r5", b"{}")],
                [StreamRecord("r6", b"{}"), StreamRecord("r7", b"{}")]]

    async def run() -> list[BaseException | None]:
        await committer.start()
        futures = [committer.join(records, len(records)) for records in requests]  # all before the first write
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        await committer.stop()
        return outcomes

    outcomes = asyncio.run(run())
    assert [call for call in stream.calls if call[0] != "r3"] == [["r0", "r1", "r2"], ["r6", "r7"]]
    assert {tuple(call) for call in stream.calls if call[0] == "r3"} == {("r3", "r4", "r5")}  # retried whole
    assert outcomes[:2] == [None, None] and outcomes[5] is None
    assert all(isinstance(o, Unavailable) for o in outcomes[2:5])
    assert committer.pending == 0 and committer.stats.failed_requests == 3
