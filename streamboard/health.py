"""Pipeline health (``GET /v1/health``): what the console's health page and an operator look at.

The answer, the same on both backends (figures a backend cannot know are ``null``, never invented):

- ``as_of``: when the pipeline figures were read (on AWS they are cached per container for up to a minute).
- ``events_per_minute``: events the ingest API accepted, per minute, averaged over the last
  :data:`RATE_WINDOW_SECONDS` (locally over what the runtime has sampled of it, if it started more recently).
  On AWS from the ingest service's ``EventsAccepted`` metric; a minute in which it accepted nothing publishes
  no datapoint, so no datapoint at all reads as 0 (as it does under moto, whose CloudWatch returns none).
- ``stream_backlog``: ``{"records", "age_seconds"}``: stream records the router has not taken yet, and how long
  the oldest of them has waited (0 when there are none). Locally both, from the stream and the event source
  mapping's checkpoints; on AWS only the age (Kinesis ``GetRecords.IteratorAgeMilliseconds``, the latest
  minute's maximum; ``null`` without a datapoint), as CloudWatch counts no records behind a consumer.
- ``dlq_depth``: messages in the ingest dead-letter queue (events that wait for ``streamboard redrive``),
  visible and in flight; SQS's own approximate count on AWS.
- ``bad_events``: events kept in the bad-events sink over the last :data:`BAD_EVENTS_HOURS` hours. Locally the
  lines of its objects in the lake; on AWS the ingest service's ``EventsRejected`` metric (the router's and
  the transform's rare bad events are in the lake only), 0 without a datapoint.
- ``last_refresh``: when the boards were last replaced (``refreshed_at`` of the overall board); ``null``
  before the first refresh.
- ``freshness_seconds``: how old the boards' data is: now minus the ``as_of`` the last refresh covered.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from streamboard.ports import Board, PipelineFigures
from streamboard.registry import format_ts, parse_ts

RATE_WINDOW_SECONDS = 300
BAD_EVENTS_HOURS = 24


def health_report(figures: PipelineFigures | None, last_board: Board | None, now: dt.datetime) -> dict[str, Any]:
    """The ``GET /v1/health`` body from the pipeline's figures (``None``: no pipeline meters here) and the
    overall board's latest snapshot (``None`` before the first refresh)."""
    last_refresh = last_board.refreshed_at if last_board is not None else None
    covered = last_board.as_of if last_board is not None else None
    freshness = None if covered is None else round(max(0.0, (now - parse_ts(covered)).total_seconds()), 3)
    f = figures
    return {
        "as_of": f.as_of if f is not None else format_ts(now),
        "events_per_minute": None if f is None or f.events_per_minute is None else round(f.events_per_minute, 1),
        "stream_backlog": {
            "records": None if f is None else f.backlog_records,
            "age_seconds": None if f is None or f.backlog_age_seconds is None else round(f.backlog_age_seconds, 3),
        },
        "dlq_depth": None if f is None else f.dlq_depth,
        "bad_events": None if f is None else f.bad_events,
        "last_refresh": last_refresh,
        "freshness_seconds": freshness,
    }
