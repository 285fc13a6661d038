"""Partial failures on the aws adapters (moto never throttles, so a fake client in front of moto does):
every record still lands exactly once."""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws
from starlette.testclient import TestClient

from ingest.app import IngestSinks, create_app
from processors.redrive import redrive
from streamboard.adapters.aws.provision import provision
from streamboard.backend import Backend, build_aws_backend
from streamboard.packing import MAX_RECORD_BYTES
from streamboard.registry import REGISTRY, format_ts
from streamboard.settings import Settings
from tests.conftest import events_of

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class FlakyKinesis:
    """Moto's Kinesis client, but a share of each PutRecords' records fail with throughput errors, or the
    whole call fails while ``down`` is set. Ingest calls it from several threads: one call at a time here."""

    def __init__(self, real: Any, fail_share: float, seed: int = 1) -> None:
        self.real, self.fail_share, self.rng = real, fail_share, random.Random(seed)
        self.lock = threading.Lock()
        self.down = False
        self.calls = 0
        self.failed_records = 0
        self.partly_failed_calls = 0  # calls where some records failed and others went in

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        with self.lock:
            return self._put_records(StreamName, Records)

    def _put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self.calls += 1
        if self.down:
            raise self.real.exceptions.ProvisionedThroughputExceededException(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "down"}}, "PutRecords")
        fail = [self.rng.random() < self.fail_share for _ in Records]
        if 0 < sum(fail) < len(fail):
            self.partly_failed_calls += 1
        ok_records = [r for r, f in zip(Records, fail, strict=True) if not f]
        real = iter(self.real.put_records(StreamName=StreamName, Records=ok_records)["Records"]) if ok_records \
            else iter(())
        out = []
        for f in fail:
            if f:
                self.failed_records += 1
                out.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"})
            else:
                out.append(next(real))
        return {"FailedRecordCount": sum(fail), "Records": out}


class FlakyFirehose:
    """Moto's Firehose client, but a share of each PutRecordBatch's records fail."""

    def __init__(self, real: Any, fail_share: float, seed: int = 2) -> None:
        self.real, self.fail_share, self.rng = real, fail_share, random.Random(seed)
        self.failed_records = 0
        self.calls: list[list[int]] = []  # each call's record sizes

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def put_record_batch(self, DeliveryStreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self.calls.append([len(r["Data"]) for r in Records])
        fail = [self.rng.random() < self.fail_share for _ in Records]
        ok = [r for r, f in zip(Records, fail, strict=True) if not f]
        real = iter(self.real.put_record_batch(DeliveryStreamName=DeliveryStreamName, Records=ok)["RequestResponses"]) \
            if ok else iter(())
        out = []
        for f in fail:
            if f:
                self.failed_records += 1
                out.append({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down"})
            else:
                out.append(next(real))
        return {"FailedPutCount": sum(fail), "RequestResponses": out}


@pytest.fixture
def aws(tmp_path: Path, fake_aws_credentials: None) -> Iterator[Backend]:
    with mock_aws():
        settings = Settings(data_dir=tmp_path, shards=2)
        clients = provision(settings, REGISTRY)
        backend = build_aws_backend(settings, REGISTRY, clients)
        backend.apps.create("game", key="game-key")
        yield backend


def _events(n: int) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    return [{"event_id": str(uuid.uuid4()), "event_type": "score", "user_id": f"u{i % 17}",
             "ts": format_ts(now - dt.timedelta(minutes=i)), "category": "arcade", "points": i + 1}
            for i in range(n)]


def _stream_event_ids(backend: Backend) -> Counter[str]:
    """How many times each event is in the stream (a record carries the events of one request)."""
    data = [rec.data for shard in backend.stream.shard_ids() for rec in backend.stream.read(shard, None, 10_000)]
    return Counter(e["event_id"] for e in events_of(data))


def test_ingest_retries_throttled_records_until_each_is_in_the_stream_once(aws: Backend) -> None:
    flaky = FlakyKinesis(aws.stream.clients("kinesis"), fail_share=0.3)  # type: ignore[attr-defined]
    aws.stream.clients._clients["kinesis"] = flaky  # type: ignore[attr-defined]
    events = _events(400)
    requests = [events[i:i + 2] for i in range(0, 400, 2)]  # a record each
    app = create_app(Settings(), IngestSinks(aws.stream, aws.dlq, aws.apps, aws.lake))
    # Small calls often fail whole under random throttling: that is a busy stream, not a broken one, so the
    # circuit breaker stays shut. At 30%, a record fails 5 times in a row about once in 400: the retries get
    # room here (the default gives up after 2 s and uses the DLQ, covered by the next test).
    app.state.committer.retry_seconds = 30.0
    with TestClient(app) as client, ThreadPoolExecutor(16) as pool:
        # Concurrent requests share PutRecords calls, so a call can fail in part.
        responses = list(pool.map(
            lambda batch: client.post("/v1/events", json={"events": batch}, headers={"x-api-key": "game-key"}),
            requests))
    for resp in responses:
        assert resp.status_code == 202 and resp.json() == {"accepted": 2, "rejected": []}
    assert flaky.failed_records > 50  # the fault really happened
    assert flaky.partly_failed_calls > 0  # ... inside calls that also put records in the stream
    ids = _stream_event_ids(aws)
    assert set(ids) == {e["event_id"] for e in events}
    assert max(ids.values()) == 1  # only the failed records were retried
    assert aws.dlq.depth() == 0


def test_stream_outage_falls_back_to_the_dlq_and_redrive_lands_each_event_once(aws: Backend) -> None:
    flaky = FlakyKinesis(aws.stream.clients("kinesis"), fail_share=0.0)  # type: ignore[attr-defined]
    aws.stream.clients._clients["kinesis"] = flaky  # type: ignore[attr-defined]
    events = _events(60)
    app = create_app(Settings(), IngestSinks(aws.stream, aws.dlq, aws.apps, aws.lake))
    with TestClient(app) as client:
        ok = client.post("/v1/events", json={"events": events[:20]}, headers={"x-api-key": "game-key"})
        flaky.down = True
        during = [client.post("/v1/events", json={"events": events[i:i + 10]}, headers={"x-api-key": "game-key"})
                  for i in range(20, 60, 10)]
    assert ok.status_code == 202  # durable in the DLQ: still acknowledged
    assert [r.status_code for r in during] == [202] * 4 and all(r.json()["accepted"] == 10 for r in during)
    assert set(_stream_event_ids(aws)) == {e["event_id"] for e in events[:20]}
    assert aws.dlq.depth() == 4  # a message per request: its record
    down = redrive(aws)  # the stream is still down: nothing moves, nothing is lost
    assert down["redriven"] == 0 and down["remaining"] == 4
    flaky.down = False
    summary = redrive(aws)
    assert summary == {"redriven": 4, "unreadable": 0, "failed": 0, "remaining": 0}
    ids = _stream_event_ids(aws)
    assert set(ids) == {e["event_id"] for e in events} and max(ids.values()) == 1


def test_firehose_partial_failures_are_retried_until_every_record_is_delivered_once(aws: Backend) -> None:
    flaky = FlakyFirehose(aws.delivery.clients("firehose"), fail_share=0.3)  # type: ignore[attr-defined]
    aws.delivery.clients._clients["firehose"] = flaky  # type: ignore[attr-defined]
    aws.delivery.base_delay = 0.0  # type: ignore[attr-defined]
    aws.delivery.attempts = 20  # type: ignore[attr-defined]
    records = [json.dumps({"n": i}).encode() + b"\n" for i in range(700)]
    assert aws.delivery.put_record_batch(REGISTRY.get("score").delivery_stream, records) == []
    assert flaky.failed_records > 100
    delivered: Counter[int] = Counter()
    for key in aws.lake.list_keys("firehose-raw/"):
        for line in aws.lake.get_object(key).splitlines():
            delivered[json.loads(line)["n"]] += 1
    assert set(delivered) == set(range(700)) and max(delivered.values()) == 1


def test_firehose_calls_keep_the_put_record_batch_limits_with_packed_records(aws: Backend) -> None:
    flaky = FlakyFirehose(aws.delivery.clients("firehose"), fail_share=0.2)  # type: ignore[attr-defined]
    aws.delivery.clients._clients["firehose"] = flaky  # type: ignore[attr-defined]
    aws.delivery.base_delay = 0.0  # type: ignore[attr-defined]
    aws.delivery.attempts = 20  # type: ignore[attr-defined]
    line = b'{"x":1}\n'
    full = line * (MAX_RECORD_BYTES // len(line))  # a full packed record: 1,000 KiB
    records = [full] * 9 + [line] * 700
    assert aws.delivery.put_record_batch(REGISTRY.get("score").delivery_stream, records) == []
    assert flaky.failed_records > 0  # and the retries keep the limits too
    for sizes in flaky.calls:
        assert len(sizes) <= 500 and sum(sizes) <= 4 * 1024 * 1024 and max(sizes) <= MAX_RECORD_BYTES
    assert sum(len(sizes) for sizes in flaky.calls) == len(records) + flaky.failed_records
    raw = b"".join(aws.lake.get_object(k) for k in aws.lake.list_keys("firehose-raw/"))
    assert len(raw) == sum(map(len, records))  # each record once


def test_firehose_reports_records_still_failing_after_its_attempts(aws: Backend) -> None:
    flaky = FlakyFirehose(aws.delivery.clients("firehose"), fail_share=1.0)  # type: ignore[attr-defined]
    aws.delivery.clients._clients["firehose"] = flaky  # type: ignore[attr-defined]
    aws.delivery.base_delay = 0.0  # type: ignore[attr-defined]
    failed = aws.delivery.put_record_batch(REGISTRY.get("score").delivery_stream, [b"a\n", b"b\n", b"c\n"])
    assert failed == [0, 1, 2]  # the router reports these as batchItemFailures
