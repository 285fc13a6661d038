"""The ingest fast path (a whole batch checked in one pass, the client's bytes forwarded) must give records
whose events read back exactly as the per-event path's, and step aside for anything else."""

from __future__ import annotations

import datetime as dt
import json
import uuid
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


def _read(records: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    out = []
    for key, data in records:
        events, invalid = REGISTRY.read_record(data)
        assert not invalid
        assert key == uuid.UUID(events[0]["event_id"]).hex  # the first event's id
        out.extend(events)
    return out


def _fast(events: list[Any], body: bytes | None = None) -> list[dict[str, Any]] | None:
    got = REGISTRY.validate_batch(body or json.dumps({"events": events}).encode(), app_id="game",
                                  received_at=NOW, received_at_text=NOW_TEXT)
    if got is None:
        return None
    count, records = got
    assert count == len(events)
    return _read(records)


def _slow_records(events: list[Any]) -> list[dict[str, Any]]:
    checked = [REGISTRY.check(e, app_id="game", received_at=NOW) for e in events]
    return _read(REGISTRY.records(checked, app_id="game", received_at_text=NOW_TEXT))


POOL = generate(600, now=NOW, invalid_every=7, duplicate_every=1000, seed=3)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(POOL), min_size=1, max_size=40))
def test_fast_path_equals_the_per_event_path(events: list[dict[str, Any]]) -> None:
    slow = _slow(events)
    fast = _fast(events)
    if slow is None:
        assert fast is None  # any invalid event: every event gets its own answer on the slow path
    else:
        assert fast == slow
        assert _slow_records(events) == slow


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(POOL))
def test_a_single_event_body_takes_the_fast_path_exactly_when_it_is_valid(event: dict[str, Any]) -> None:
    slow = _slow([event])
    assert _fast([event], json.dumps(event).encode()) == slow  # None for an invalid event: the slow path answers


def test_a_single_event_breaking_a_rule_or_the_clock_leaves_the_fast_path() -> None:
    score = next(e for e in POOL if e.get("event_type") == "score" and _slow([e]) is not None)
    future = format_ts(NOW + dt.timedelta(minutes=16))
    for bad in ({"category": "overall"}, {"category": "Chess!"}, {"ts": "0001-01-01T00:30:00+01:00"}, {"ts": future}):
        event = {**score, **bad}
        assert _slow([event]) is None and _fast([event], json.dumps(event).encode()) is None, bad


def test_whitespace_and_escapes_in_the_body_read_back_the_same() -> None:
    ok = [e for e in POOL if _slow([e]) is not None][:5]
    body = json.dumps({"events": ok}, indent=3, ensure_ascii=True).encode()
    assert _fast(ok, b"  \n" + body) == _slow(ok)


def test_a_request_too_large_for_one_record_becomes_several(monkeypatch: Any) -> None:
    from streamboard import registry

    ok = [e for e in POOL if _slow([e]) is not None][:40]
    monkeypatch.setattr(registry, "MAX_RECORD_BYTES", 2_000)
    got = REGISTRY.validate_batch(json.dumps({"events": ok}).encode(), app_id="game", received_at=NOW,
                                  received_at_text=NOW_TEXT)
    assert got is not None
    count, records = got
    assert count == len(ok) and len(records) > 1
    assert all(len(data) <= 2_000 for _, data in records)
    assert _read(records) == _slow(ok)


def test_read_record_quarantines_invalid_events_and_refuses_non_records() -> None:
    ok = [e for e in POOL if _slow([e]) is not None][:2]
    data = json.dumps({"app_id": "game", "received_at": NOW_TEXT,
                       "events": [ok[0], {**ok[1], "points": -5}]}).encode()
    events, invalid = REGISTRY.read_record(data)
    assert events == _slow([ok[0]])
    assert len(invalid) == 1 and "points" in invalid[0][1]
    # Values only the registry's own rules catch, and a ts that cannot convert to UTC: quarantined alone.
    for bad in ({"category": "overall"}, {"category": "Chess!"}, {"ts": "0001-01-01T00:30:00+01:00"}):
        score = next(e for e in ok + POOL if e.get("event_type") == "score" and _slow([e]) is not None)
        data = json.dumps({"app_id": "game", "received_at": NOW_TEXT, "events": [ok[0], {**score, **bad}]}).encode()
        events, invalid = REGISTRY.read_record(data)
        assert events == _slow([ok[0]]) and len(invalid) == 1, bad
    for not_a_record in (b"{", b"[]", b'{"events": []}', json.dumps(ok[0]).encode()):
        try:
            REGISTRY.read_record(not_a_record)
        except ValueError:
            continue
        raise AssertionError(f"read {not_a_record!r} as a record")


def test_fast_path_steps_aside_for_server_fields_and_odd_bodies() -> None:
    ok = [e for e in POOL if _slow([e]) is not None][:3]
    assert _fast(ok) is not None
    assert _fast([{**ok[0], "app_id": "other"}]) is None
    # An app_id equal to the key's app is accepted, on the slow path (the fast path forwards client bytes).
    assert _fast([{**ok[0], "app_id": "game"}]) is None
    assert _slow_records([{**ok[0], "app_id": "game"}]) == _slow([ok[0]])
    # Top-level keys beside "events" would reach the record: never on the fast path.
    for extra in ("app_id", "received_at", "other"):
        assert _fast(ok, json.dumps({"events": ok, extra: "x"}).encode()) is None
    assert _fast([{**ok[0], "received_at": NOW_TEXT}]) is None
    assert _fast([ok[0]], json.dumps(ok[0]).encode()) == _slow([ok[0]])  # a single-event body
    assert _fast([ok[0]], json.dumps({**ok[0], "points": 0}).encode()) is None
    assert REGISTRY.validate_batch(b"[1, 2", app_id="game", received_at=NOW, received_at_text=NOW_TEXT) is None
    assert _fast([]) is None
