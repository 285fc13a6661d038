"""GET /v1/health: the local runtime's own figures, CloudWatch's on AWS (moto), and the handler's answer."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from processors import read_api
from streamboard.adapters.aws import health as aws_health
from streamboard.adapters.aws.health import CloudWatchHealth
from streamboard.backend import Backend, build_aws_backend
from streamboard.badevents import keep_bad_events
from streamboard.health import RATE_WINDOW_SECONDS
from streamboard.ports import Board, BoardEntry
from streamboard.registry import REGISTRY, format_ts
from streamboard.runtime.stack import Pipeline
from streamboard.settings import Settings
from tests.conftest import stream_record
from tests.functional.test_handlers import api_event, body_of


def health(backend: Backend) -> dict[str, Any]:
    response = read_api.handle(api_event(read_api.HEALTH_PATH), backend)
    assert response["statusCode"] == 200
    assert response["headers"]["cache-control"] == "no-store" and "etag" not in response["headers"]
    return body_of(response)  # type: ignore[no-any-return]


def score(user: str, points: int, event_id: str) -> dict[str, Any]:
    return {"event_id": event_id, "event_type": "score", "user_id": user, "ts": "2026-03-01T12:00:00Z",
            "category": "chess", "points": points}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- local -----------------------------------------------------------------------------------------------------


def test_local_health_counts_the_backlog_behind_the_router_and_drops_it_once_routed(pipeline: Pipeline) -> None:
    b = pipeline.backend
    assert health(b)["stream_backlog"] == {"records": 0, "age_seconds": 0.0}
    b.stream.put_records([stream_record([score(f"u{i}", 5, f"00000000-0000-4000-8000-00000000000{i}")])
                          for i in range(3)])
    waiting = health(b)["stream_backlog"]
    assert waiting["records"] == 3 and 0.0 <= waiting["age_seconds"] < 60
    pipeline.pump_once()
    assert health(b)["stream_backlog"] == {"records": 0, "age_seconds": 0.0}


def test_local_health_reports_the_dlq_and_the_last_days_bad_events(pipeline: Pipeline) -> None:
    b = pipeline.backend
    b.dlq.send([b"one", b"two"])
    now = dt.datetime.now(dt.UTC)
    keep_bad_events(b.lake, "ingest-local", [({"x": 1}, "no event_id"), ({"y": 2}, "no event_type")], now)
    keep_bad_events(b.lake, "router", [({"z": 3}, "unknown type")], now - dt.timedelta(hours=3))
    keep_bad_events(b.lake, "ingest-local", [({"old": 1}, "too old to count")], now - dt.timedelta(hours=30))
    body = health(b)
    assert body["dlq_depth"] == 2
    assert body["bad_events"] == 3  # the last 24 hours' hour partitions only
    keep_bad_events(b.lake, "ingest-local", [({"w": 4}, "bad points")], now)
    assert health(b)["bad_events"] == 4


def test_local_events_per_minute_is_the_accepted_counter_over_the_last_minutes(settings: Settings) -> None:
    pipeline = Pipeline(settings)
    usage, local = pipeline.backend.usage, pipeline.health
    assert usage is not None and local is not None
    clock = Clock(1_000_000.0)
    local.clock = clock
    local._samples.clear()
    local.sample(force=True)
    assert local.events_per_minute() is None  # no time has passed: no rate yet
    clock.now += 30
    usage.add(events_accepted=300)
    assert local.events_per_minute() == pytest.approx(600.0)  # 300 in 30 s
    for _ in range(100):  # ten minutes of samples every 6 s at 10 events/s
        clock.now += 6
        usage.add(events_accepted=60)
        local.sample()
    assert local.events_per_minute() == pytest.approx(600.0, rel=0.03)
    assert clock.now - local._samples[0][0] <= RATE_WINDOW_SECONDS + 6  # only the window's samples are kept


def test_health_names_the_last_refresh_and_how_old_its_data_is(pipeline: Pipeline) -> None:
    b = pipeline.backend
    assert health(b)["last_refresh"] is None and health(b)["freshness_seconds"] is None
    as_of = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    refreshed = format_ts(as_of + dt.timedelta(seconds=4))
    b.boards.replace_boards([Board("overall", "all", format_ts(as_of), refreshed, (BoardEntry(1, "u", None, 3),))])
    body = health(b)
    assert body["last_refresh"] == refreshed
    assert 600 <= body["freshness_seconds"] < 660


def test_health_without_a_pipeline_in_the_process_answers_with_nulls(backend: Backend) -> None:
    body = health(backend)
    assert set(body) == {"as_of", "events_per_minute", "stream_backlog", "dlq_depth", "bad_events", "last_refresh",
                         "freshness_seconds"}
    assert body["events_per_minute"] is None and body["dlq_depth"] is None
    assert body["stream_backlog"] == {"records": None, "age_seconds": None}


def test_health_is_a_public_read_with_cors_and_head(pipeline: Pipeline) -> None:
    b = pipeline.backend
    get = read_api.handle(api_event(read_api.HEALTH_PATH, headers={"origin": "https://ops.example"}), b)
    head = read_api.handle(api_event(read_api.HEALTH_PATH, method="HEAD"), b)
    assert get["headers"]["access-control-allow-origin"] == "*"
    assert head["statusCode"] == 200 and head["body"] == ""
    assert "/v1/health" in read_api.OPENAPI["paths"]


# --- AWS (moto) ------------------------------------------------------------------------------------------------


@pytest.fixture
def aws(tmp_path: Path, fake_aws_credentials: None) -> Iterator[Backend]:
    settings = Settings(data_dir=tmp_path / "data")
    with mock_aws():
        from streamboard.adapters.aws.provision import provision

        yield build_aws_backend(settings, REGISTRY, provision(settings, REGISTRY))


def _put(backend: Backend, namespace: str, name: str, dimensions: list[dict[str, str]], value: float,
         seconds_ago: float) -> None:
    backend.health.clients("cloudwatch").put_metric_data(  # type: ignore[union-attr]
        Namespace=namespace, MetricData=[{"MetricName": name, "Dimensions": dimensions, "Value": value,
                                          "Timestamp": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds_ago)}])


def test_on_aws_without_metrics_health_still_answers(aws: Backend) -> None:
    """moto's CloudWatch has no datapoints: counts of events read 0, the backlog's age is unknown."""
    assert isinstance(aws.health, CloudWatchHealth)
    body = health(aws)
    assert body["events_per_minute"] == 0 and body["bad_events"] == 0
    assert body["stream_backlog"] == {"records": None, "age_seconds": None}
    assert body["dlq_depth"] == 0 and body["last_refresh"] is None


def test_on_aws_health_reads_the_ingest_metrics_the_iterator_age_and_the_dlq(aws: Backend) -> None:
    ingest = aws_health.INGEST_DIMENSIONS
    _put(aws, "Streamboard", "EventsAccepted", ingest, 1500, 90)
    _put(aws, "Streamboard", "EventsAccepted", ingest, 999, 900)  # before the rate's window
    _put(aws, "Streamboard", "EventsRejected", ingest, 7, 3 * 3600)
    _put(aws, "Streamboard", "EventsRejected", ingest, 5, 30 * 3600)  # before the day
    _put(aws, "AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds",
         [{"Name": "StreamName", "Value": aws.settings.stream_name}], 4200, 30)
    aws.dlq.send([b"waiting"])
    body = health(aws)
    assert body["events_per_minute"] == 1500 * 60 / RATE_WINDOW_SECONDS
    assert body["bad_events"] == 7
    assert body["stream_backlog"] == {"records": None, "age_seconds": 4.2}
    assert body["dlq_depth"] == 1


def test_on_aws_the_figures_are_cached_per_container(aws: Backend) -> None:
    cw = aws.health
    assert isinstance(cw, CloudWatchHealth)
    clock = Clock(2_000_000_000.0)
    cw.clock = clock
    first = cw.figures()
    aws.dlq.send([b"late"])
    assert cw.figures() is first  # within the minute: no call to CloudWatch or SQS
    clock.now += aws_health.CACHE_SECONDS
    assert cw.figures().dlq_depth == 1


def test_on_aws_a_failing_source_leaves_its_figure_empty_and_health_answers(aws: Backend,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "GetMetricData")

    class Refusing:
        def get_paginator(self, name: str) -> Any:
            raise denied

        def get_queue_attributes(self, **kwargs: Any) -> Any:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetQueueAttributes")

    assert isinstance(aws.health, CloudWatchHealth)
    real = aws.health.clients
    monkeypatch.setattr(aws.health, "clients", lambda service: Refusing() if service == "cloudwatch" else real(service))
    monkeypatch.setattr(aws.dlq, "depth", lambda: Refusing().get_queue_attributes())
    body = health(aws)
    assert body["events_per_minute"] == 0 and body["stream_backlog"]["age_seconds"] is None
    assert body["dlq_depth"] is None


def test_the_metric_names_are_the_ones_ingest_publishes() -> None:
    from ingest.metrics import NAMESPACE, UNITS, Metrics

    assert aws_health.INGEST_NAMESPACE == NAMESPACE
    assert {"EventsAccepted", "EventsRejected"} <= set(UNITS)
    metrics = Metrics("ingest")
    metrics.add("EventsAccepted")
    doc = metrics.emf()
    assert doc is not None
    assert [{"Name": d, "Value": doc[d]} for d in doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]] == \
        aws_health.INGEST_DIMENSIONS
    json.dumps(doc)
