"""The ingest fast path (a whole batch checked in one pass, the client's bytes forwarded) must give records
whose events read back exactly as the per-event path's, and step aside for anything else."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import msgspec
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from streamboard.registry import REGISTRY, InvalidEvent, format_ts, uuid_texts
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


def test_a_repeated_events_key_leaves_the_fast_path_and_a_bracket_in_a_value_does_not() -> None:
    ok = [e for e in POOL if e.get("event_type") == "score" and _slow([e]) is not None][:3]
    one = json.dumps(ok[0]).encode()
    for second_key in (b'"events"', b'"\\u0065vents"'):
        body = b'{"events":[' + one + b"]," + second_key + b":[" + json.dumps(ok[1]).encode() + b"]}"
        assert _fast([ok[1]], body) is None, body  # the slow path refuses it: the key more than once
    # "]" in values (more than one in the body): looked at closer, still one key and all accepted.
    named = [{**e, "user_name": "[pro] player ]"} for e in ok]
    assert _fast(named) == _slow(named)


def _msgspec_reads_uuid(text: str) -> bool:
    try:
        msgspec.json.decode(msgspec.json.encode(text), type=uuid.UUID)
    except msgspec.ValidationError:
        return False
    return True


_HEXES = st.text(alphabet="0123456789abcdefABCDEF", min_size=32, max_size=32)


@st.composite
def _uuid_like(draw: Any) -> str:
    """Texts near a UUID's forms: hyphenated or bare, as they are or edited once or twice."""
    digits = draw(_HEXES)
    text = draw(st.sampled_from([digits, f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"]))
    for edit in draw(st.lists(st.sampled_from(["replace", "insert", "delete"]), max_size=2)):
        at = draw(st.integers(0, len(text) - 1))
        char = draw(st.sampled_from(list("-g G\u00e9\n0aF{")))
        text = {"replace": text[:at] + char + text[at + 1:], "insert": text[:at] + char + text[at:],
                "delete": text[:at] + text[at + 1:]}[edit]  # two edits can move a hyphen
    return text


@settings(max_examples=400, deadline=None)
@given(st.lists(_uuid_like(), min_size=1, max_size=6))
def test_event_ids_checked_in_bulk_accept_exactly_what_the_uuid_decoder_accepts(ids: list[str]) -> None:
    assume(all(32 <= len(text) <= 36 for text in ids))  # the fast path's decoder bounds their length first
    assert uuid_texts(ids) == all(map(_msgspec_reads_uuid, ids)), ids


def test_an_event_id_with_a_hyphen_out_of_place_is_refused_in_bulk() -> None:
    good = str(uuid.uuid4())
    for at in (8, 13, 18, 23):
        for to in (at - 1, at + 1):
            moved = good[:at] + good[at + 1:]
            moved = moved[:to] + "-" + moved[to:]
            assert not _msgspec_reads_uuid(moved) and not uuid_texts([good, moved]), moved
    assert uuid_texts([good, good.upper()]) and uuid_texts([good, good.replace("-", "")])  # one form, two


def test_event_ids_in_any_form_a_uuid_takes_read_back_the_same_and_bad_ones_leave_the_fast_path() -> None:
    ok = [e for e in POOL if _slow([e]) is not None][:4]
    ids = [str(uuid.uuid4()) for _ in ok]
    forms = [ids[0].upper(), ids[1].replace("-", ""), ids[2].replace("-", "").upper(), ids[3]]
    events = [{**e, "event_id": form} for e, form in zip(ok, forms, strict=True)]
    fast = _fast(events)
    assert fast is not None and fast == _slow(events)
    assert [e["event_id"] for e in fast] == ids  # normalized: lower case, hyphenated
    assert _fast([events[1]], json.dumps(events[1]).encode()) == _slow([events[1]])  # a single event
    got = REGISTRY.validate_batch(json.dumps(events[0]).encode(), app_id="game", received_at=NOW,
                                  received_at_text=NOW_TEXT)
    assert got is not None and got[1][0].partition_key == uuid.UUID(ids[0]).hex
    for bad in (ids[0][:8] + ids[0][9:13] + "-" + ids[0][13:], ids[0][:-1] + "g", " " + ids[0][1:]):
        broken = [*events[:2], {**events[2], "event_id": bad}]
        assert _slow(broken) is None and _fast(broken) is None, bad
        assert _fast([broken[2]], json.dumps(broken[2]).encode()) is None, bad
