"""The bad-events sink: rejected or unprocessable events, kept in the lake with their reason."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from typing import Any

from streamboard.ports import Lake

BAD_EVENTS_PREFIX = "bad-events"


def hour_prefix(when: dt.datetime) -> str:
    when = when.astimezone(dt.UTC)
    return f"year={when:%Y}/month={when:%m}/day={when:%d}/hour={when:%H}"


def keep_bad_events(lake: Lake, source: str, items: Sequence[tuple[Any, str]], now: dt.datetime | None = None) -> str:
    """Write ``(event, reason)`` pairs as one JSON-lines object; return its key."""
    now = now or dt.datetime.now(dt.UTC)
    lines = [
        json.dumps({"source": source, "received_at": now.isoformat(), "reason": reason, "event": event},
                   default=str, separators=(",", ":"))
        for event, reason in items
    ]
    key = f"{BAD_EVENTS_PREFIX}/{hour_prefix(now)}/{source}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex}.jsonl"
    lake.put_object(key, ("\n".join(lines) + "\n").encode())
    return key
