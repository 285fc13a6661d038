"""What `up --backend aws` emulates on moto: raw Firehose objects as the delivery buffer, and DuckDB over a mirror
of the cataloged S3 partitions."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from processors import router, transform
from streamboard.adapters.aws.provision import provision
from streamboard.backend import Backend, build_aws_backend
from streamboard.registry import REGISTRY
from streamboard.runtime.aws_emulation import MirroredQueryEngine, RawDeliverySource
from streamboard.runtime.crawler import crawl
from streamboard.runtime.firehose import FirehoseEmulator
from streamboard.settings import Settings
from tests.conftest import events_of, stream_record

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def aws(tmp_path: Path, fake_aws_credentials: None) -> Iterator[Backend]:
    with mock_aws():
        settings = Settings(data_dir=tmp_path)
        yield build_aws_backend(settings, REGISTRY, provision(settings, REGISTRY))


def _score(i: int) -> bytes:
    event = {"event_id": f"00000000-0000-4000-8000-{i:012d}", "event_type": "score", "user_id": f"u{i % 7}",
             "ts": "2026-01-02T03:04:05.000Z", "app_id": "a", "received_at": "2026-01-02T03:04:06.000Z",
             "category": "arcade", "points": i + 1, "challenge_id": None, "user_name": None}
    return json.dumps(event).encode() + b"\n"


def test_every_record_of_many_raw_objects_reaches_the_lake_once(aws: Backend, tmp_path: Path) -> None:
    stream = REGISTRY.get("score").delivery_stream
    sizes = [2, 2, 3, 1, 4, 2, 2]  # several PutRecordBatch calls, so several raw objects
    n = 0
    for size in sizes:
        assert aws.delivery.put_record_batch(stream, [_score(n + i) for i in range(size)]) == []
        n += size
    source = RawDeliverySource(aws.lake)  # type: ignore[arg-type]
    assert source.buffered(stream)[0] == len(sizes)
    emulator = FirehoseEmulator(source, aws.lake, REGISTRY,  # type: ignore[arg-type]
                                lambda event, context: transform.transform(event, aws.lake, REGISTRY), 1 << 20, 60)
    assert emulator.flush(force=True) == n
    assert source.buffered(stream)[0] == 0  # raw objects are removed once delivered
    for t in REGISTRY:
        aws.catalog.ensure_table(t.name, t.glue_columns(), t.glue_partition_keys())
    crawl(aws.lake, aws.catalog, REGISTRY)
    engine = MirroredQueryEngine(aws.lake, aws.catalog, tmp_path / "mirror")  # type: ignore[arg-type]
    _, rows = engine.run("SELECT points FROM score ORDER BY points")
    assert [r[0] for r in rows] == list(range(1, n + 1))


def test_packed_records_of_the_router_reach_the_transform_as_sent_and_the_lake_once(aws: Backend,
                                                                                   tmp_path: Path) -> None:
    requests = [[{"event_id": str(uuid.uuid4()), "event_type": "action", "user_id": f"u{i}", "name": "opened_shop",
                  "ts": "2026-01-02T03:04:05.000Z", "properties": {"note": "n" * 300}} for _ in range(500)]
                for i in range(6)]  # 3,000 events of about 500 bytes (actions: moto's profile transactions are slow)
    records = [stream_record(events) for events in requests]
    kinesis = [{"kinesis": {"sequenceNumber": str(i), "data": base64.b64encode(r.data).decode()}}
               for i, r in enumerate(records)]
    sent: list[bytes] = []
    real_put = aws.delivery.put_record_batch

    def put(stream: str, data: list[bytes]) -> list[int]:
        sent.extend(data)
        return real_put(stream, data)

    aws.delivery.put_record_batch = put  # type: ignore[method-assign]
    assert router.handle({"Records": kinesis}, aws) == {"batchItemFailures": []}
    assert len(sent) == 2  # two packed records for 3,000 events

    seen: list[bytes] = []

    def transform_spy(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.extend(base64.b64decode(r["data"]) for r in event["records"])
        return transform.transform(event, aws.lake, REGISTRY)

    emulator = FirehoseEmulator(RawDeliverySource(aws.lake), aws.lake, REGISTRY,  # type: ignore[arg-type]
                                transform_spy, 4 << 20, 60)
    assert emulator.flush(force=True) == 3000
    assert seen == sent  # moto joined them; packing the lines again gives the router's records back
    for t in REGISTRY:
        aws.catalog.ensure_table(t.name, t.glue_columns(), t.glue_partition_keys())
    crawl(aws.lake, aws.catalog, REGISTRY)
    engine = MirroredQueryEngine(aws.lake, aws.catalog, tmp_path / "mirror")  # type: ignore[arg-type]
    _, rows = engine.run("SELECT event_id, count(*) FROM action GROUP BY event_id")
    assert {r[0] for r in rows} == {e["event_id"] for e in events_of(r.data for r in records)}
    assert {r[1] for r in rows} == {1}
