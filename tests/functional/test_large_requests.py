"""Requests at the size limits travel whole: a record per request, split when too large for one Kinesis
record, and event source mapping batches cut to Lambda's payload limit; every event lands exactly once."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from starlette.testclient import TestClient

from ingest.app import IngestSinks, create_app
from streamboard import registry
from streamboard.runtime import esm
from streamboard.runtime.stack import Pipeline
from tests.conftest import events_of


def _action(i: int, now: dt.datetime) -> dict[str, Any]:
    # About 1,900 bytes each: 500 of them come close to the 1 MiB body limit.
    return {"event_id": str(uuid.uuid4()), "event_type": "action", "user_id": f"user-{i % 37}",
            "ts": (now - dt.timedelta(seconds=i)).isoformat(), "name": "played",
            "properties": {f"k{j}": f"{i}-{j}-" + "x" * 150 for j in range(10)}}


def _post(pipeline: Pipeline, events: list[dict[str, Any]]) -> dict[str, Any]:
    backend = pipeline.backend
    backend.apps.create("big", key="big-key")
    app = create_app(pipeline.settings, IngestSinks(backend.stream, backend.dlq, backend.apps, backend.lake))
    with TestClient(app) as client:
        resp = client.post("/v1/events", json={"events": events}, headers={"x-api-key": "big-key"})
    assert resp.status_code == 202, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _stream_data(pipeline: Pipeline) -> list[bytes]:
    stream = pipeline.backend.stream
    return [r.data for s in stream.shard_ids() for r in stream.read(s, None, 10**6)]


def test_a_request_near_the_body_limit_is_one_record_and_lands_whole(pipeline: Pipeline) -> None:
    now = dt.datetime.now(dt.UTC)
    events = [_action(i, now) for i in range(500)]
    assert _post(pipeline, events) == {"accepted": 500, "rejected": []}
    data = _stream_data(pipeline)
    assert len(data) == 1 and len(data[0]) <= registry.MAX_RECORD_BYTES
    pipeline.refresh()
    _, rows = pipeline.backend.query.run("SELECT count(*), count(DISTINCT event_id) FROM action")
    assert rows == [(500, 500)]


def test_split_records_and_cut_batches_still_land_every_event_once(
        pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "MAX_RECORD_BYTES", 60_000)  # ~30 events a record
    monkeypatch.setattr(esm, "MAX_PAYLOAD_BYTES", 200_000)  # ~2 records an invocation
    now = dt.datetime.now(dt.UTC)
    events = [_action(i, now) for i in range(300)]
    assert _post(pipeline, events)["accepted"] == 300
    data = _stream_data(pipeline)
    assert len(data) >= 5 and all(len(d) <= 60_000 for d in data)
    assert sorted(e["event_id"] for e in events_of(data)) == sorted(e["event_id"] for e in events)
    summary = pipeline.refresh()
    assert summary["routed"] == len(data)
    _, rows = pipeline.backend.query.run("SELECT count(*), count(DISTINCT event_id) FROM action")
    assert rows == [(300, 300)]
