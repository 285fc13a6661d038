"""The ingest fast path (a whole batch validated in one pass) must produce exactly what the per-event path
produces, and step aside for anything else."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streamboard.registry import REGISTRY, InvalidEvent, format_ts
from streamboard.synthetic import generate

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
NOW_TEXT = format_ts(NOW)


def _slow(events: list[Any]) -> list[dict[str, Any]] | None:
    out = []
    for e in events:
        try:
            out.append(REGISTRY.validate(e, app_id="game", received_at=NOW, received_at_text=NOW_TEXT))
        except InvalidEvent:
            return None
    return out


def _fast(events: list[Any]) -> list[dict[str, Any]] | None:
    got = REGISTRY.validate_batch(json.dumps({"events": events}).encode(), app_id="game", received_at=NOW,
                                  received_at_text=NOW_TEXT)
    if got is None:
        return None
    assert all(key == json.loads(data)["user_id"] for key, data in got)
    return [json.loads(data) for _, data in got]


POOL = generate(600, now=NOW, invalid_every=7, duplicate_every=1000, seed=3)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(POOL), min_size=1, max_size=40))
def test_fast_path_equals_the_per_event_path(events: list[dict[str, Any]]) -> None:
    slow = _slow(events)
    fast = _fast(events)
    if slow is None:
        assert fast is None  # any invalid event: every event gets its own answer on the slow path
    else:
        assert fast == json.loads(json.dumps(slow))


def test_fast_path_steps_aside_for_server_fields_and_odd_bodies() -> None:
    ok = [e for e in POOL if _slow([e]) is not None][:3]
    assert _fast(ok) is not None
    assert _fast([{**ok[0], "app_id": "other"}]) is None
    assert _fast([{**ok[0], "app_id": "game"}]) is not None
    assert _fast([{**ok[0], "received_at": NOW_TEXT}]) is None
    assert REGISTRY.validate_batch(json.dumps(ok[0]).encode(), app_id="game", received_at=NOW,
                                   received_at_text=NOW_TEXT) is None  # a single event body
    assert REGISTRY.validate_batch(b"[1, 2", app_id="game", received_at=NOW, received_at_text=NOW_TEXT) is None
    assert _fast([]) is None
