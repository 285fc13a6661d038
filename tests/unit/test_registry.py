"""The event contract of DESIGN section 3, as the registry enforces it for every client event."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamboard.registry import REGISTRY, InvalidEvent, format_ts

RECEIVED = dt.datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=dt.UTC)
APP = "game-app"
_MISSING = object()


def score(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "3f1c7a52-9a0e-4c47-8f0d-2b6f4f1f8a10",
        "event_type": "score",
        "user_id": "user-1",
        "ts": "2026-03-01T11:59:00.123Z",
        "category": "chess",
        "points": 10,
    }
    return _apply(event, changes)


def action(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "0b8e3a41-5d2c-4b6e-9a7f-1c2d3e4f5a6b",
        "event_type": "action",
        "user_id": "user-1",
        "ts": "2026-03-01T11:59:00Z",
        "name": "level_up",
        "properties": {"level": "7", "mode": "ranked"},
    }
    return _apply(event, changes)


def _apply(event: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for key, value in changes.items():
        if value is _MISSING:
            event.pop(key, None)
        else:
            event[key] = value
    return event


def validate(event: Any, **kwargs: Any) -> dict[str, Any]:
    return REGISTRY.validate(event, app_id=APP, received_at=RECEIVED, **kwargs)


def rejected(event: Any, **kwargs: Any) -> str:
    with pytest.raises(InvalidEvent) as info:
        validate(event, **kwargs)
    return str(info.value)


def column_names(event_type: str) -> list[str]:
    return [c.name for c in REGISTRY.get(event_type).stream_columns]


# --- valid events -------------------------------------------------------------------------------------------


def test_valid_score_is_normalized_and_enriched() -> None:
    out = validate(score(user_name="Ada", challenge_id="daily-1"))
    assert list(out) == column_names("score")
    assert out == {
        "event_id": "3f1c7a52-9a0e-4c47-8f0d-2b6f4f1f8a10",
        "event_type": "score",
        "user_id": "user-1",
        "ts": "2026-03-01T11:59:00.123Z",
        "app_id": APP,
        "received_at": "2026-03-01T12:00:00.250Z",
        "category": "chess",
        "points": 10,
        "challenge_id": "daily-1",
        "user_name": "Ada",
    }


def test_optional_score_fields_default_to_null() -> None:
    out = validate(score())
    assert out["challenge_id"] is None and out["user_name"] is None


def test_valid_action_keeps_properties() -> None:
    out = validate(action())
    assert list(out) == column_names("action")
    assert out["name"] == "level_up"
    assert out["properties"] == {"level": "7", "mode": "ranked"}
    assert out["app_id"] == APP


def test_action_without_properties() -> None:
    assert validate(action(properties=_MISSING))["properties"] is None


def test_event_id_is_normalized_to_lowercase_canonical_uuid() -> None:
    upper = "3F1C7A52-9A0E-4C47-8F0D-2B6F4F1F8A10"
    assert validate(score(event_id=upper))["event_id"] == upper.lower()
    assert validate(score(event_id=upper.replace("-", "")))["event_id"] == upper.lower()


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2026-03-01T13:59:00.123456+02:00", "2026-03-01T11:59:00.123Z"),
        ("2026-03-01T06:29:00-05:30", "2026-03-01T11:59:00.000Z"),
        ("2026-03-01T11:59:00.9Z", "2026-03-01T11:59:00.900Z"),
        ("2026-03-01T11:59:00+00:00", "2026-03-01T11:59:00.000Z"),
    ],
)
def test_ts_offsets_are_normalized_to_utc_milliseconds(ts: str, expected: str) -> None:
    assert validate(score(ts=ts))["ts"] == expected


def test_same_app_id_as_the_key_is_accepted() -> None:
    assert validate(score(app_id=APP))["app_id"] == APP


def test_bounds_that_are_allowed() -> None:
    assert validate(score(points=1))["points"] == 1
    assert validate(score(points=1_000_000))["points"] == 1_000_000
    assert validate(score(user_id="u" * 128))["user_id"] == "u" * 128
    assert validate(score(user_id="x"))["user_id"] == "x"
    assert validate(score(category="a" * 64))["category"] == "a" * 64
    assert validate(score(category="speed_run-2"))["category"] == "speed_run-2"
    assert validate(score(challenge_id="c" * 128, user_name="n" * 128))["challenge_id"] == "c" * 128
    props = {f"k{i}": "v" for i in range(50)}
    assert validate(action(properties=props))["properties"] == props
    assert validate(action(name="n" * 128))["name"] == "n" * 128


# --- the future limit ---------------------------------------------------------------------------------------


def test_ts_up_to_15_minutes_in_the_future_is_accepted() -> None:
    ts = format_ts(RECEIVED + dt.timedelta(minutes=15))
    assert validate(score(ts=ts))["ts"] == ts


def test_ts_more_than_15_minutes_in_the_future_is_rejected() -> None:
    message = rejected(score(ts=format_ts(RECEIVED + dt.timedelta(minutes=15, seconds=1))))
    assert "ts" in message and "future" in message


def test_future_limit_is_configurable() -> None:
    ts = format_ts(RECEIVED + dt.timedelta(minutes=5))
    assert "future" in rejected(score(ts=ts), max_future=dt.timedelta(minutes=1))
    far = format_ts(RECEIVED + dt.timedelta(hours=2))
    assert validate(score(ts=far), max_future=dt.timedelta(hours=3))["ts"] == far


def test_past_ts_is_accepted() -> None:
    assert validate(score(ts="2001-09-09T01:46:40Z"))["ts"] == "2001-09-09T01:46:40.000Z"


# --- rejections: each message names the field ---------------------------------------------------------------


@pytest.mark.parametrize("missing", ["event_id", "user_id", "ts", "category", "points"])
def test_score_required_fields(missing: str) -> None:
    message = rejected(score(**{missing: _MISSING}))
    assert "missing" in message and missing in message


@pytest.mark.parametrize("missing", ["event_id", "user_id", "ts", "name"])
def test_action_required_fields(missing: str) -> None:
    message = rejected(action(**{missing: _MISSING}))
    assert "missing" in message and missing in message


def test_missing_event_type() -> None:
    assert "event_type" in rejected(score(event_type=_MISSING))


@pytest.mark.parametrize("event_type", ["purchase", "", "Score", 7, None, ["score"]])
def test_unknown_event_type(event_type: Any) -> None:
    message = rejected(score(event_type=event_type))
    assert "event_type" in message


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"event_id": "not-a-uuid"}, "event_id"),
        ({"event_id": "3f1c7a52-9a0e-4c47-8f0d-2b6f4f1f8a1"}, "event_id"),
        ({"event_id": 12345}, "event_id"),
        ({"event_id": None}, "event_id"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": "u" * 129}, "user_id"),
        ({"user_id": 42}, "user_id"),
        ({"ts": "2026-03-01T11:59:00"}, "ts"),
        ({"ts": "2026-03-01T11:59:00.123"}, "ts"),
        ({"ts": "2026-03-01"}, "ts"),
        ({"ts": "yesterday"}, "ts"),
        ({"ts": 1772366340}, "ts"),
        ({"category": "Chess"}, "category"),
        ({"category": "chess club"}, "category"),
        ({"category": ""}, "category"),
        ({"category": "a" * 65}, "category"),
        ({"category": "échecs"}, "category"),
        ({"category": "overall"}, "category"),  # the name of the all-categories board
        ({"points": 0}, "points"),
        ({"points": -5}, "points"),
        ({"points": 1_000_001}, "points"),
        ({"points": True}, "points"),
        ({"points": 10.0}, "points"),
        ({"points": 2.5}, "points"),
        ({"points": "10"}, "points"),
        ({"points": None}, "points"),
        ({"challenge_id": ""}, "challenge_id"),
        ({"challenge_id": "c" * 129}, "challenge_id"),
        ({"challenge_id": 3}, "challenge_id"),
        ({"user_name": ""}, "user_name"),
        ({"user_name": "n" * 129}, "user_name"),
    ],
)
def test_score_field_rules(changes: dict[str, Any], field: str) -> None:
    assert field in rejected(score(**changes))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "n" * 129}, "name"),
        ({"name": 5}, "name"),
        ({"properties": {"level": 7}}, "properties"),
        ({"properties": {"nested": {"a": "b"}}}, "properties"),
        ({"properties": {"list": ["a"]}}, "properties"),
        ({"properties": {"flag": True}}, "properties"),
        ({"properties": {"none": None}}, "properties"),
        ({"properties": ["a", "b"]}, "properties"),
        ({"properties": "level=7"}, "properties"),
        ({"properties": {f"k{i}": "v" for i in range(51)}}, "properties"),
    ],
)
def test_action_field_rules(changes: dict[str, Any], field: str) -> None:
    assert field in rejected(action(**changes))


def test_unknown_field_on_score_is_rejected() -> None:
    message = rejected(score(level="7"))
    assert "unknown field" in message and "level" in message


def test_unknown_field_on_action_is_rejected_with_a_hint_about_properties() -> None:
    message = rejected(action(level="7"))
    assert "unknown field" in message and "level" in message and "properties" in message


def test_app_id_different_from_the_keys_app_is_rejected() -> None:
    message = rejected(score(app_id="someone-else"))
    assert "app_id" in message


def test_received_at_from_the_client_is_rejected() -> None:
    assert "received_at" in rejected(score(received_at="2026-03-01T12:00:00Z"))
    assert "received_at" in rejected(action(received_at=None))


@pytest.mark.parametrize("not_an_object", [None, [], "event", 3, [score()]])
def test_non_object_is_rejected(not_an_object: Any) -> None:
    assert "object" in rejected(not_an_object)


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_ts_out_of_range_in_utc_is_an_invalid_event_not_a_crash(ts: str) -> None:
    assert "ts" in rejected(score(ts=ts))


def test_timestamps_always_have_four_digit_years() -> None:
    assert format_ts(dt.datetime(999, 1, 2, 3, 4, 5, 6000, tzinfo=dt.UTC)) == "0999-01-02T03:04:05.006Z"
    assert validate(score(ts="0005-06-07T08:09:10Z"))["ts"] == "0005-06-07T08:09:10.000Z"


# --- property: validate never fails with anything but InvalidEvent ------------------------------------------

_TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _field_values() -> dict[str, st.SearchStrategy[Any]]:
    """Per known field, a mix of plausible good values, edge cases and arbitrary JSON."""
    naive_or_aware = st.datetimes(
        min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
        timezones=st.one_of(st.none(), st.timezones()),
    ).map(lambda d: d.isoformat())
    return {
        "event_id": st.uuids().map(str) | st.uuids().map(lambda u: u.hex.upper()) | json_values,
        "event_type": st.sampled_from(["score", "action", "other"]) | json_values,
        "user_id": st.text(max_size=140) | json_values,
        "ts": naive_or_aware | st.sampled_from(["2026-03-01T11:59:00Z", "0001-01-01T00:00:00+14:00"]) | json_values,
        "app_id": st.sampled_from([APP, "other-app"]) | json_values,
        "received_at": json_values,
        "category": st.from_regex(r"[a-z0-9_-]{0,70}", fullmatch=True) | json_values,
        "points": st.integers(-10, 2_000_000) | json_values,
        "challenge_id": st.text(max_size=140) | json_values,
        "user_name": st.text(max_size=140) | json_values,
        "name": st.text(max_size=140) | json_values,
        "properties": st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=55) | json_values,
    }


@st.composite
def event_like(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event of either type with some fields replaced by other values or removed, and maybe extras."""
    values = _field_values()
    event: dict[str, Any] = draw(st.sampled_from([score, action]))()
    for name in draw(st.lists(st.sampled_from(sorted(values)), unique=True, max_size=4)):
        if draw(st.booleans()):
            event[name] = draw(values[name])
        else:
            event.pop(name, None)
    if draw(st.integers(0, 9)) == 0:
        event.update(draw(st.dictionaries(st.text(max_size=10), json_values, min_size=1, max_size=2)))
    return event


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_like())
def test_validate_returns_exactly_the_columns_or_raises_invalid_event(raw: dict[str, Any]) -> None:
    try:
        out = validate(raw)
    except InvalidEvent as exc:
        assert str(exc)
        return
    event_type = REGISTRY.get(out["event_type"])
    assert list(out) == [c.name for c in event_type.stream_columns]
    assert out["app_id"] == APP
    assert _TS_RE.match(out["ts"]) and _TS_RE.match(out["received_at"])
    assert out["event_id"] == str(uuid.UUID(out["event_id"]))


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_validate_on_any_json_value(raw: Any) -> None:
    with contextlib.suppress(InvalidEvent):
        validate(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event_like(), min_size=1, max_size=6))
def test_the_fast_path_accepts_only_what_the_per_event_path_accepts(raws: list[dict[str, Any]]) -> None:
    """The one-pass check forwards the client's bytes: whatever it takes must read back as the per-event
    validation gives it, and a batch with any invalid event must not pass."""
    received_text = format_ts(RECEIVED)
    got = REGISTRY.validate_batch(json.dumps({"events": raws}).encode(), app_id=APP, received_at=RECEIVED,
                                  received_at_text=received_text)
    try:
        expected = [validate(raw, received_at_text=received_text) for raw in raws]
    except InvalidEvent:
        assert got is None
        return
    if got is not None:
        count, records = got
        assert count == len(raws)
        read = [REGISTRY.read_record(data) for _, data in records]
        assert all(not invalid for _, invalid in read)
        assert [e for events, _ in read for e in events] == expected
