"""Health figures on AWS (``streamboard.health``): one CloudWatch ``GetMetricData`` call and one SQS
``GetQueueAttributes``, cached per Lambda container so a console polling the health page costs little."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from streamboard.adapters.aws.clients import Clients
from streamboard.health import BAD_EVENTS_HOURS, RATE_WINDOW_SECONDS
from streamboard.ports import DeadLetterQueue, PipelineFigures
from streamboard.registry import format_ts

log = logging.getLogger("streamboard.health")

#: The ingest service's metrics (ingest/metrics.py writes them in Embedded Metric Format; tests hold the two equal).
INGEST_NAMESPACE = "Streamboard"
INGEST_DIMENSIONS = [{"Name": "Service", "Value": "ingest"}]
CACHE_SECONDS = 60.0  # CloudWatch's own resolution is a minute
MINUTE, HOUR = 60, 3600


class CloudWatchHealth:
    """``figures()`` from CloudWatch (events accepted and rejected, the stream's iterator age) and SQS (the DLQ's
    depth). A figure whose source fails or has no datapoint is 0 for counts of events, ``None`` otherwise
    (see ``streamboard.health``); the failure is logged, never raised."""

    def __init__(self, clients: Clients, stream_name: str, dlq: DeadLetterQueue,
                 cache_seconds: float = CACHE_SECONDS, clock: Callable[[], float] = time.time) -> None:
        self.clients, self.stream_name, self.dlq = clients, stream_name, dlq
        self.cache_seconds, self.clock = cache_seconds, clock
        self._cached: tuple[float, PipelineFigures] | None = None
        self._lock = threading.Lock()

    def figures(self) -> PipelineFigures:
        now = self.clock()
        with self._lock:
            if self._cached is not None and now - self._cached[0] < self.cache_seconds:
                return self._cached[1]
        figures = self._read(now)
        with self._lock:
            self._cached = (now, figures)
        return figures

    def _stat(self, query_id: str, namespace: str, name: str, dimensions: list[dict[str, str]], period: int,
              statistic: str) -> dict[str, Any]:
        return {"Id": query_id, "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": dimensions},
            "Period": period, "Stat": statistic}}

    def _series(self, queries: list[dict[str, Any]], end: dt.datetime,
                seconds: float) -> dict[str, list[tuple[dt.datetime, float]]]:
        """Each query's datapoints over the last ``seconds``, newest first (none when CloudWatch has none or
        cannot be read)."""
        series: dict[str, list[tuple[dt.datetime, float]]] = {q["Id"]: [] for q in queries}
        try:
            pages = self.clients("cloudwatch").get_paginator("get_metric_data").paginate(
                MetricDataQueries=queries, StartTime=end - dt.timedelta(seconds=seconds), EndTime=end,
                ScanBy="TimestampDescending")
            for page in pages:
                for result in page.get("MetricDataResults", []):
                    series.setdefault(result["Id"], []).extend(
                        zip(result.get("Timestamps", []), result.get("Values", []), strict=False))
        except (BotoCoreError, ClientError) as exc:
            log.warning("health: CloudWatch metrics unavailable: %s", exc)
        return {k: sorted(v, key=lambda p: p[0], reverse=True) for k, v in series.items()}

    def _read(self, now: float) -> PipelineFigures:
        end = dt.datetime.fromtimestamp(now, dt.UTC)
        # Two calls: minutes for the rate and the backlog, hours for the day's bad events (fewer datapoints).
        recent = self._series([
            self._stat("accepted", INGEST_NAMESPACE, "EventsAccepted", INGEST_DIMENSIONS, MINUTE, "Sum"),
            self._stat("iterator_age", "AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds",
                       [{"Name": "StreamName", "Value": self.stream_name}], MINUTE, "Maximum"),
        ], end, RATE_WINDOW_SECONDS)
        day = self._series([self._stat("rejected", INGEST_NAMESPACE, "EventsRejected", INGEST_DIMENSIONS, HOUR,
                                       "Sum")], end, BAD_EVENTS_HOURS * HOUR)
        age = recent["iterator_age"]
        try:
            dlq_depth: int | None = self.dlq.depth()
        except (BotoCoreError, ClientError) as exc:
            log.warning("health: the DLQ's depth is unavailable: %s", exc)
            dlq_depth = None
        return PipelineFigures(
            as_of=format_ts(dt.datetime.fromtimestamp(now, dt.UTC)),
            events_per_minute=sum(v for _, v in recent["accepted"]) * MINUTE / RATE_WINDOW_SECONDS,
            backlog_records=None,  # CloudWatch counts no records behind a consumer, only their age
            backlog_age_seconds=age[0][1] / 1000.0 if age else None,
            dlq_depth=dlq_depth,
            bad_events=int(sum(v for _, v in day["rejected"])),
        )
