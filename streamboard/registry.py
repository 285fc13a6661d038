"""The event-type registry: the one place that lists event types and their fields.

Validation in ingest, routing in the router, the Glue table schema, the Parquet
(Arrow) schema, the Firehose delivery streams, the Athena tables and the CDK
resources are all derived from :data:`REGISTRY`. Adding an event type is one
entry in :data:`EVENT_TYPES`.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from operator import attrgetter, or_
from typing import Annotated, Any, Literal

import msgspec

from streamboard.ports import StreamRecord

# Column kinds, with their spelling in each system that stores events.
Kind = Literal["string", "bigint", "timestamp", "map<string,string>"]

GLUE_TYPES: dict[str, str] = {
    "string": "string",
    "bigint": "bigint",
    "timestamp": "timestamp",
    "map<string,string>": "map<string,string>",
}
DUCKDB_TYPES: dict[str, str] = {
    "string": "VARCHAR",
    "bigint": "BIGINT",
    "timestamp": "TIMESTAMP",
    "map<string,string>": "MAP(VARCHAR, VARCHAR)",
}

# Hive-style partition keys of every lake table (time of arrival in the lake).
PARTITION_KEYS: tuple[str, ...] = ("year", "month", "day", "hour")

#: How far into the future of receipt an event's ts may be, unless configured.
DEFAULT_MAX_FUTURE = dt.timedelta(minutes=15)

Slug = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]  # and the pattern SLUG, checked by the registry
SLUG = r"[a-z0-9_-]+"
Name128 = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Points = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
Properties = Annotated[
    dict[Annotated[str, msgspec.Meta(min_length=1, max_length=128)], Annotated[str, msgspec.Meta(max_length=1024)]],
    msgspec.Meta(max_length=50),
]
AwareDatetime = Annotated[dt.datetime, msgspec.Meta(tz=True)]
# Timestamps before this may not convert to UTC (year 1 with a positive offset): the slow path says so.
EARLIEST = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
_TS = attrgetter("ts")
# A StreamRecord from a (partition key, data) pair, made in C (the NamedTuple's own __new__ is a Python frame).
_record: Callable[[tuple[str, bytes]], StreamRecord] = functools.partial(tuple.__new__, StreamRecord)
# A stream record's limit: Kinesis takes 1 MiB of data and partition key together.
MAX_RECORD_BYTES = 1_000_000

_EVENTS_RAW = msgspec.json.Decoder(msgspec.defstruct("EventsRaw", [("events", msgspec.Raw)]))
# `{"events":[],"events":}` around the last array: a body with less than this around it has one 'events'
_DUPLICATE_MIN_OVERHEAD = 23


def repeats_top_level_key(body: bytes) -> bool:
    """Whether a ``{"events": [...]}`` body has the key ``events`` more than once (JSON decoders keep the
    last value silently, dropping the others). Cheap: a body with the key's bytes once and no backslash has
    it once; else the last array's length tells whether there is room around it for another; only when
    there is, the stdlib parser looks at every key."""
    if body.count(b'"events"') == 1 and b"\\" not in body:
        return False  # the key written once, and no escape that could spell it another way
    try:
        raw = _EVENTS_RAW.decode(body).events  # type: ignore[attr-defined]
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return False  # not a batch body (or not JSON at all): nothing to repeat
    if len(body) - len(raw) < _DUPLICATE_MIN_OVERHEAD:
        return False
    top_has_duplicate = False

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal top_has_duplicate
        obj = dict(pairs)
        top_has_duplicate = len(obj) != len(pairs)  # the top-level object is the last one to complete
        return obj

    try:
        json.loads(body, object_pairs_hook=pairs_hook)
    except (ValueError, RecursionError):
        return True  # msgspec read it and the stdlib cannot: do not guess
    return top_has_duplicate


# An event id as the fast path decodes it: its text, checked by uuid_texts (a uuid.UUID per event costs the
# decode more than all the fast path's other checks).
UuidText = Annotated[str, msgspec.Meta(min_length=32, max_length=36)]
_EVENT_ID = attrgetter("event_id")
# Each byte of a text as its class: a hex digit 0, a hyphen -, anything else x.
_UUID_CLASSES = bytes(0x30 if chr(c) in "0123456789abcdefABCDEF" else c if c == 0x2D else 0x78 for c in range(256))
_HYPHENATED, _BARE = b"00000000-0000-0000-0000-000000000000", b"0" * 32
_UUID_FORMS = (_HYPHENATED, _BARE)
_LOWER = bytes.maketrans(b"ABCDEF", b"abcdef")  # with the hyphens deleted: UUID(text).hex, of a text checked


def uuid_texts(ids: list[str]) -> bool:
    """Whether every text is a UUID as msgspec reads one: hex digits hyphenated 8-4-4-4-12, or 32 hex digits;
    either case. Each text is 32 to 36 characters long (as UuidText decodes them). In bulk, in C: the texts
    joined, each byte mapped to its class, compared with the form's classes repeated; texts of both forms are
    compared one by one."""
    n = len(ids)
    shape = "".join(ids).encode(errors="replace").translate(_UUID_CLASSES)  # not ASCII: x, in 1 to 4 bytes
    if len(shape) == 36 * n:  # all hyphenated (or something in them is not ASCII: then unequal)
        return shape == _HYPHENATED * n
    if len(shape) == 32 * n:
        return shape == _BARE * n
    return all(text.encode(errors="replace").translate(_UUID_CLASSES) in _UUID_FORMS for text in ids)


def _union(structs: Iterable[Any]) -> Any:
    """The tagged union of event structs."""
    return functools.reduce(or_, structs)


@dataclass(frozen=True)
class Field:
    """One column of an event type: its name, storage kind, validation type and whether it is required."""

    name: str
    kind: Kind
    py_type: Any
    required: bool = True
    doc: str = ""
    pattern: str | None = None  # a regex the whole (string) value must match, beyond py_type's own bounds
    reserved: frozenset[str] = frozenset()  # values the field may not take


@dataclass(frozen=True)
class EventType:
    """A registered event type: its name (also its table, stream and route) and its own fields."""

    name: str
    fields: tuple[Field, ...]
    doc: str = ""

    @property
    def columns(self) -> tuple[Field, ...]:
        """Every stored column: the envelope, the type's own fields, then the router's stamp (last, as a column
        added to a lake is)."""
        return self.stream_columns + (ROUTED_AT,)

    @property
    def stream_columns(self) -> tuple[Field, ...]:
        """What ingest writes of an event to the stream: the envelope, then the type's own fields."""
        return ENVELOPE + self.fields

    @property
    def delivery_stream(self) -> str:
        """Name of this type's delivery stream (prefixed with the deployment name where deployed)."""
        return f"streamboard-{self.name}"

    def glue_columns(self) -> list[dict[str, str]]:
        return [{"Name": f.name, "Type": GLUE_TYPES[f.kind], "Comment": f.doc} for f in self.columns]

    def glue_partition_keys(self) -> list[dict[str, str]]:
        return [{"Name": k, "Type": "string"} for k in PARTITION_KEYS]


ENVELOPE: tuple[Field, ...] = (
    Field("event_id", "string", uuid.UUID, doc="UUID; the client's idempotency key"),
    Field("event_type", "string", str, doc="a registered event type"),
    Field("user_id", "string", Name128, doc="1..128 chars"),
    Field("ts", "timestamp", AwareDatetime, doc="event time, UTC, millisecond precision"),
    Field("app_id", "string", str, required=False, doc="set by the server from the API key"),
    Field("received_at", "timestamp", str, required=False, doc="set by the server"),
)

# Set by the router when it routes an event (not part of what ingest accepts or writes to the stream): the
# near-real-time profiles count live increments by routing slot, and a refresh learns from this column which
# slots' events the lake holds (streamboard.profiles).
ROUTED_AT = Field("routed_at", "timestamp", str, required=False, doc="set by the router")

EVENT_TYPES: tuple[EventType, ...] = (
    EventType(
        "score",
        (
            Field("category", "string", Slug, doc="slug [a-z0-9_-]{1,64}; not 'overall'", pattern=SLUG,
                  reserved=frozenset({"overall"})),
            Field("points", "bigint", Points, doc="integer 1..1,000,000"),
            Field("challenge_id", "string", Name128, required=False, doc="counts once per user"),
            Field("user_name", "string", Name128, required=False, doc="display name; the latest wins"),
        ),
        doc="Points scored by a user in a category.",
    ),
    EventType(
        "action",
        (
            Field("name", "string", Name128, doc="what the user did"),
            Field("properties", "map<string,string>", Properties, required=False,
                  doc="flat string-to-string object, at most 50 keys"),
        ),
        doc="Something a user did; free-form data goes under properties.",
    ),
)


class Registry:
    """Lookup and validation over a set of event types (the default set is :data:`EVENT_TYPES`).

    Stream records. The accepted events of one request travel as one record (as the KPL aggregates:
    Kinesis limits a shard to 1,000 records/s, so a record per event would need ~5x the shards that the
    bytes need). A record is a JSON object ``{"app_id": ..., "received_at": ..., "events": [...]}``: the
    server's fields, then the client's events as validated (for an all-valid batch, the client's own bytes).
    At most :data:`MAX_RECORD_BYTES`; a larger request becomes several records. Consumers read a record with
    :meth:`read_record`, which gives each event in its normalized form (``ts`` in UTC to the millisecond, as
    the lake stores it), the same dict :meth:`validate` gives.
    """

    def __init__(self, types: Iterable[EventType]) -> None:
        self.types: dict[str, EventType] = {}
        # Per type, derived here (each registry its own: the EventType values may be shared between registries).
        self._struct_of: dict[str, Any] = {}
        self._rules_of: dict[Any, tuple[_ValueRule, ...]] = {}  # by struct
        self._own_fields_of: dict[Any, tuple[str, ...]] = {}  # by struct
        # The fast path's structs (validate_batch): the same, but event_id as its text, checked in bulk.
        fast_structs = []
        for t in types:
            if t.name in self.types:
                raise ValueError(f"event type {t.name!r} registered twice")
            self.types[t.name] = t
            struct = self._struct_of[t.name] = _client_struct(t)
            fast = _client_struct(t, event_id=UuidText)
            fast_structs.append(fast)
            self._rules_of[struct] = self._rules_of[fast] = tuple(
                _ValueRule(f) for f in t.fields if f.pattern or f.reserved)
            self._own_fields_of[struct] = tuple(f.name for f in t.fields)
        # A type's rules checked over a whole batch without grouping by type first: when no other type has a
        # field of a rule's name, reading it from every event succeeds only if all are of that type.
        self._alone: dict[Any, tuple[_ValueRule, ...]] = {}
        for t, fast in zip(self.types.values(), fast_structs, strict=True):
            others = {f.name for o in self.types.values() if o is not t for f in o.fields}
            rules = self._rules_of[fast]
            if rules and not others & {r.name for r in rules}:
                self._alone[self._struct_of[t.name]] = self._alone[fast] = rules
        union: Any = _union(self._struct_of.values())
        fast_union: Any = _union(fast_structs)
        batch = msgspec.defstruct("EventBatch", [("events", list[union])], forbid_unknown_fields=True)
        self._batch_decoder = msgspec.json.Decoder(batch)
        self._event_decoder = msgspec.json.Decoder(union)
        fast_batch = msgspec.defstruct("FastBatch", [("events", list[fast_union])], forbid_unknown_fields=True)
        self._fast_batch_decoder = msgspec.json.Decoder(fast_batch)
        self._fast_event_decoder = msgspec.json.Decoder(fast_union)
        record = msgspec.defstruct("Record", [("app_id", str), ("received_at", str), ("events", list[union])])
        self._record_decoder = msgspec.json.Decoder(record)
        self._loose_record_decoder = msgspec.json.Decoder(
            msgspec.defstruct("LooseRecord", [("app_id", str), ("received_at", str), ("events", list[Any])]))
        self._encoder = msgspec.json.Encoder()
        self._heads: dict[str, bytes] = {}  # a record's start for each app, up to its received_at's text

    def validate_batch(
        self,
        body: bytes,
        *,
        app_id: str,
        received_at: dt.datetime,
        received_at_text: str,
        max_future: dt.timedelta = DEFAULT_MAX_FUTURE,
        max_events: int = 500,
    ) -> tuple[int, list[StreamRecord]] | None:
        """The fast path for a body (``{"events": [...]}`` or one event) whose every event is valid: decoded
        and checked in one pass; returns the number of events and the stream records, as
        ``(partition key, data)``.

        ``None`` means "not that simple" (any invalid event, anything unusual): then
        check each event with :meth:`check`, which gives each its own answer, and build the records of the
        valid ones with :meth:`records`. Both paths give records whose events read back the same.
        ``received_at`` bounds the events' ts (``max_future`` after it); a moment before the request's arrival
        makes the bound stricter, and an event past it takes the slow path, which checks it exactly."""
        if not body.startswith(b'{"events"'):  # most likely one event: decoded as one first
            try:
                first: Any = self._fast_event_decoder.decode(body)
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                pass
            else:
                # its ts, id and rules checked directly (a single event's request is the costliest per event)
                event_id = first.event_id.encode()  # (msgspec gives no lone surrogate) uuid_texts, inline:
                if first.ts <= EARLIEST or first.ts > received_at + max_future \
                        or event_id.translate(_UUID_CLASSES) not in _UUID_FORMS:
                    return None
                for rule in self._rules_of[type(first)]:
                    value = rule.get(first)
                    if value not in rule.good and rule.error(value) is not None:
                        return None
                # with the server's fields in front, the client's bytes are the record
                start = self._heads.get(app_id) or self._start(app_id)
                data = b"".join((start, self._encoder.encode(received_at_text), b',"events":[', body, b"]}"))
                if len(data) > MAX_RECORD_BYTES:
                    return 1, self.records([first], app_id=app_id, received_at_text=received_at_text)
                return 1, [_record((event_id.translate(_LOWER, b"-").decode(), data))]  # UUID(event_id).hex
        try:  # then a batch, the only other form
            events = self._fast_batch_decoder.decode(body).events  # type: ignore[attr-defined]
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return None
        if not events or len(events) > max_events:
            return None
        # A repeated key: msgspec decodes each of its values as an array of events (and keeps the last), so a body
        # with a single "]" (found from each end, in C) has the key once; else look closer.
        if body.find(b"]") != body.rfind(b"]") and repeats_top_level_key(body):
            return None
        ts = list(map(_TS, events))
        # EARLIEST: a ts that may not convert to UTC (year 1) takes the slow path and its clear message.
        if min(ts) <= EARLIEST or max(ts) > received_at + max_future:
            return None
        if not self._rules_hold(events) or not uuid_texts(list(map(_EVENT_ID, events))):
            return None
        # All valid, and the body is exactly {"events": [...]} (no other key decodes): with the server's fields
        # in front, the client's bytes are the record.
        start = self._heads.get(app_id) or self._start(app_id)
        data = b"".join((start, self._encoder.encode(received_at_text), b",", memoryview(body.lstrip())[1:]))  # a copy
        if len(data) > MAX_RECORD_BYTES:
            return len(events), self.records(events, app_id=app_id, received_at_text=received_at_text)
        return len(events), [_record((events[0].event_id.encode().translate(_LOWER, b"-").decode(), data))]

    def decode(self, body: bytes) -> tuple[list[Any], bool] | None:
        """A body's events typed by their schemas (``{"events": [...]}``, or one event: then True), or None when
        it is not all valid events (the field types and bounds; not yet the rules :meth:`validate_batch` adds)."""
        # The likely form first (a failed decode raises, which costs): a batch starts with its "events" key.
        forms = ((self._batch_decoder, False), (self._event_decoder, True))
        if not body.lstrip().startswith(b'{"events"'):
            forms = forms[::-1]
        for decoder, single in forms:
            try:
                doc: Any = decoder.decode(body)
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                continue
            return ([doc] if single else doc.events), single
        return None

    def records(self, events: list[Any], *, app_id: str, received_at_text: str) -> list[StreamRecord]:
        """The stream records of events checked by :meth:`check`: one, or more if one would be too large.
        The partition key is the first event's id (:func:`partition_key`; random: records spread evenly over
        the shards)."""
        if not events:
            return []
        data = self._head(app_id, received_at_text) + b'"events":' + self._encoder.encode(events) + b"}"
        if len(data) <= MAX_RECORD_BYTES or len(events) == 1:  # one event is far below the limit
            return [_record((partition_key(events[0].event_id), data))]
        half = len(events) // 2
        return (self.records(events[:half], app_id=app_id, received_at_text=received_at_text)
                + self.records(events[half:], app_id=app_id, received_at_text=received_at_text))

    def _rules_hold(self, events: list[Any]) -> bool:
        """Whether every event's values keep its fields' patterns and reserved words (checked per distinct
        value, most of them remembered as good)."""
        alone = self._alone.get(type(events[0])) if events else None
        if alone is not None:  # likely all of the first one's type: its rules over all, without grouping
            try:
                return all(rule.holds(set(map(rule.get, events))) for rule in alone)
            except AttributeError:
                pass  # an event of another type: each type on its own
        kinds = set(map(type, events))
        for kind in kinds:
            group = events if len(kinds) == 1 else [obj for obj in events if type(obj) is kind]
            if not all(rule.holds(set(map(rule.get, group))) for rule in self._rules_of[kind]):
                return False
        return True

    def _head(self, app_id: str, received_at_text: str) -> bytes:
        """A record's start, up to its events: ``{"app_id":...,"received_at":...,``."""
        start = self._heads.get(app_id) or self._start(app_id)
        return start + self._encoder.encode(received_at_text) + b","

    def _start(self, app_id: str) -> bytes:
        """``{"app_id":...,"received_at":`` for an app, kept."""
        if len(self._heads) > 10_000:
            self._heads.clear()
        start = self._heads[app_id] = b'{"app_id":' + self._encoder.encode(app_id) + b',"received_at":'
        return start

    def read_record(self, data: bytes) -> tuple[list[dict[str, Any]], list[tuple[Any, str]]]:
        """The events of a stream record in their normalized form, and any that are not valid events (with
        the reason; never expected, as ingest checked them). Raises ValueError for data that is not a record."""
        try:
            rec: Any = self._record_decoder.decode(data)
            if self._rules_hold(rec.events):
                return [self._normalized(obj, rec.app_id, rec.received_at) for obj in rec.events], []
        except (msgspec.DecodeError, RecursionError, OverflowError):
            pass  # something in it is not a valid event: look at each on its own
        try:
            loose: Any = self._loose_record_decoder.decode(data)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise ValueError(f"not a stream record: {exc}") from None
        events, invalid = [], []
        for raw in loose.events:
            try:
                obj = self._checked(raw, loose.app_id, parse_ts(loose.received_at), None)
            except (InvalidEvent, ValueError, OverflowError) as exc:
                invalid.append((raw, str(exc)))
                continue
            events.append(self._normalized(obj, loose.app_id, loose.received_at))
        return events, invalid

    def __iter__(self) -> Iterator[EventType]:
        return iter(self.types.values())

    def names(self) -> list[str]:
        return list(self.types)

    def get(self, name: str) -> EventType:
        try:
            return self.types[name]
        except KeyError:
            raise KeyError(f"unknown event type {name!r}; registered: {', '.join(self.types)}") from None

    def check(
        self,
        raw: Any,
        *,
        app_id: str,
        received_at: dt.datetime,
        max_future: dt.timedelta = DEFAULT_MAX_FUTURE,
    ) -> Any:
        """Validate one client event; return it as its type's struct, for :meth:`records`.

        Raises :class:`InvalidEvent` with a message a client can act on."""
        return self._checked(raw, app_id, received_at, max_future)

    def validate(
        self,
        raw: Any,
        *,
        app_id: str,
        received_at: dt.datetime,
        max_future: dt.timedelta = DEFAULT_MAX_FUTURE,
        received_at_text: str | None = None,
    ) -> dict[str, Any]:
        """Validate one client event and return its normalized, enriched form (what :meth:`read_record` gives
        for it). Raises :class:`InvalidEvent` with a message a client can act on."""
        obj = self._checked(raw, app_id, received_at, max_future)
        return self._normalized(obj, app_id, received_at_text or format_ts(received_at))

    def _normalized(self, obj: Any, app_id: str, received_at_text: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event_id": str(obj.event_id),
            "event_type": obj.__struct_config__.tag,
            "user_id": obj.user_id,
            "ts": format_ts(obj.ts),
            "app_id": app_id,
            "received_at": received_at_text,
        }
        for name in self._own_fields_of[type(obj)]:
            out[name] = getattr(obj, name)
        return out

    def _checked(
        self, raw: Any, app_id: str, received_at: dt.datetime, max_future: dt.timedelta | None
    ) -> Any:
        """The client's event as its type's struct (without the server's fields), checked."""
        if not isinstance(raw, Mapping):
            raise InvalidEvent("an event must be a JSON object")
        event_type = raw.get("event_type")
        if event_type is None:
            raise InvalidEvent("missing required field 'event_type'")
        if not isinstance(event_type, str) or event_type not in self.types:
            raise InvalidEvent(
                f"unknown event_type {event_type!r}; expected one of: {', '.join(self.types)}"
            )
        client_app = raw.get("app_id")
        if client_app is not None and client_app != app_id:
            raise InvalidEvent("app_id does not match the API key's app (leave it out; the server sets it)")
        if "received_at" in raw:
            raise InvalidEvent("received_at is set by the server; leave it out")
        if client_app is not None or "app_id" in raw:
            raw = {k: v for k, v in raw.items() if k != "app_id"}  # checked above; the server sets it
        t = self.types[event_type]
        struct = self._struct_of[event_type]
        try:
            obj = msgspec.convert(raw, struct)
        except msgspec.ValidationError as exc:
            message = _humanize(str(exc))
            has_properties = any(f.name == "properties" for f in t.fields)
            if message.startswith("unknown field") and has_properties:
                message += "; put custom fields under 'properties'"
            raise InvalidEvent(message) from None
        for rule in self._rules_of[struct]:
            error = rule.error(getattr(obj, rule.name))
            if error is not None:
                raise InvalidEvent(error)
        try:
            obj.ts.astimezone(dt.UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: valid RFC 3339, but before year 1 in UTC
            raise InvalidEvent("ts is out of range once converted to UTC (field `ts`)") from None
        if max_future is not None and obj.ts > received_at + max_future:
            raise InvalidEvent(
                f"ts {format_ts(obj.ts)} is more than {int(max_future.total_seconds() // 60)} minutes "
                "in the future of receipt; check the client's clock"
            )
        return obj


class _ValueRule:
    """A field's pattern and reserved values, checked once msgspec has checked the type and bounds. Values
    that passed are remembered (a bounded set), so a batch of familiar values costs a set lookup each."""

    REMEMBER = 10_000

    def __init__(self, f: Field) -> None:
        self.name = f.name
        self.get = attrgetter(f.name)
        self.pattern = f.pattern
        self.regex = re.compile(f.pattern) if f.pattern else None
        self.reserved = f.reserved
        self.good: set[Any] = {None}  # an optional field left out

    def holds(self, values: set[Any]) -> bool:
        """Whether every value keeps the rule (most of them remembered as good: a set comparison)."""
        return values <= self.good or all(self.error(v) is None for v in values)

    def error(self, value: Any) -> str | None:
        """Why ``value`` is not allowed in this field, or None."""
        if value in self.good:
            return None
        if self.regex is not None and not self.regex.fullmatch(value):
            return f"{self.name} {value!r} must match {self.pattern} (field `{self.name}`)"
        if value in self.reserved:
            return f"{self.name} {value!r} is reserved (field `{self.name}`)"
        if len(self.good) < self.REMEMBER:
            self.good.add(value)
        return None


class InvalidEvent(ValueError):
    """An event that breaks the contract; the message says what to fix."""


def partition_key(event_id: Any) -> str:
    """The partition key of a stream record whose first event has this id: the id as 32 hex digits
    (``UUID.hex``, a third of ``str``'s cost; :meth:`Registry.validate_batch` writes it inline, and a redriven
    record gets the same)."""
    if isinstance(event_id, uuid.UUID):
        return event_id.hex
    try:
        return uuid.UUID(str(event_id)).hex
    except ValueError:  # not a UUID (never, for a validated event): the id as it is
        return str(event_id)


def format_ts(ts: dt.datetime) -> str:
    """RFC 3339 in UTC with millisecond precision (the lake's precision): 2026-01-02T03:04:05.678Z.

    Fixed width, so these strings sort as the instants they name."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(dt.UTC).replace(tzinfo=None)
    return ts.isoformat(timespec="milliseconds") + "Z"


def parse_ts(value: str) -> dt.datetime:
    """Parse a timestamp written by :func:`format_ts` (or any RFC 3339 string) to an aware UTC datetime."""
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def utc_iso(value: Any) -> str | None:
    """A result timestamp as RFC 3339 UTC (``Z``), to the millisecond when it has a fraction."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        text: str = value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")
        return text + "Z"
    return str(value)


def _client_struct(t: EventType, event_id: Any = None) -> Any:
    """The msgspec type a client's event of type ``t`` must match (server-set fields excluded); ``event_id``
    decodes that field as another type."""
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for f in ENVELOPE + t.fields:
        if f.name == "event_type":
            continue
        if f.name == "event_id" and event_id is not None:
            fields.append((f.name, event_id))
            continue
        if f.name in ("app_id", "received_at"):
            # Server-set: not in the struct, so a client's value stops the fast path; the slow path accepts
            # an app_id equal to the key's app and refuses anything else.
            continue
        if f.required:
            fields.append((f.name, f.py_type))
        else:
            fields.append((f.name, f.py_type | None, None))
    fields.sort(key=lambda item: len(item) == 3)  # required before optional
    return msgspec.defstruct(
        f"{t.name.title()}Event",
        fields,
        tag_field="event_type",
        tag=t.name,
        forbid_unknown_fields=True,
        kw_only=True,
        omit_defaults=True,  # a record leaves out the optional fields the client left out
        gc=False,  # its values (strings, numbers, datetimes, a dict of strings) hold no cycle: nothing to track
    )


def _humanize(msg: str) -> str:
    """Turn msgspec's messages into ones that name the field plainly."""
    msg = msg.replace("Object contains unknown field", "unknown field")
    msg = msg.replace("Object missing required field", "missing required field")
    msg = msg.replace(" - at `$.", " (field `").replace("` - at `$.", "` (field `")
    if "(field `" in msg and not msg.endswith(")"):
        msg += ")"
    return msg


REGISTRY = Registry(EVENT_TYPES)
