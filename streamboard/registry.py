"""The event-type registry: the one place that lists event types and their fields.

Validation in ingest, routing in the router, the Glue table schema, the Parquet
(Arrow) schema, the Firehose delivery streams, the Athena tables and the CDK
resources are all derived from :data:`REGISTRY`. Adding an event type is one
entry in :data:`EVENT_TYPES`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec

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

Slug = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_-]{1,64}$")]
Name128 = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Points = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
Properties = Annotated[
    dict[Annotated[str, msgspec.Meta(min_length=1, max_length=128)], Annotated[str, msgspec.Meta(max_length=1024)]],
    msgspec.Meta(max_length=50),
]
AwareDatetime = Annotated[dt.datetime, msgspec.Meta(tz=True)]


@dataclass(frozen=True)
class Field:
    """One column of an event type: its name, storage kind, validation type and whether it is required."""

    name: str
    kind: Kind
    py_type: Any
    required: bool = True
    doc: str = ""
    reserved: frozenset[str] = frozenset()  # values the field may not take


@dataclass(frozen=True)
class EventType:
    """A registered event type: its name (also its table, stream and route) and its own fields."""

    name: str
    fields: tuple[Field, ...]
    doc: str = ""
    _struct: Any = field(default=None, compare=False, repr=False)
    _own_fields: tuple[str, ...] = field(default=(), compare=False, repr=False)
    _reserved: tuple[tuple[str, frozenset[str]], ...] = field(default=(), compare=False, repr=False)

    @property
    def columns(self) -> tuple[Field, ...]:
        """Every stored column: the envelope, then the type's own fields."""
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

EVENT_TYPES: tuple[EventType, ...] = (
    EventType(
        "score",
        (
            Field("category", "string", Slug, doc="slug [a-z0-9_-]{1,64}; not 'overall'",
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
    """Lookup and validation over a set of event types (the default set is :data:`EVENT_TYPES`)."""

    def __init__(self, types: Iterable[EventType]) -> None:
        self.types: dict[str, EventType] = {}
        for t in types:
            if t.name in self.types:
                raise ValueError(f"event type {t.name!r} registered twice")
            object.__setattr__(t, "_struct", _client_struct(t))
            object.__setattr__(t, "_own_fields", tuple(f.name for f in t.fields))
            object.__setattr__(t, "_reserved", tuple((f.name, f.reserved) for f in t.fields if f.reserved))
            self.types[t.name] = t
        structs = [t._struct for t in self.types.values()]
        union: Any = structs[0]
        for st in structs[1:]:
            union = union | st
        batch = msgspec.defstruct("EventBatch", [("events", list[union])], forbid_unknown_fields=True)
        self._batch_decoder = msgspec.json.Decoder(batch)
        self._encoder = msgspec.json.Encoder()

    def validate_batch(
        self,
        body: bytes,
        *,
        app_id: str,
        received_at: dt.datetime,
        received_at_text: str,
        max_future: dt.timedelta = DEFAULT_MAX_FUTURE,
        max_events: int = 500,
    ) -> list[tuple[str, bytes]] | None:
        """The fast path for a ``{"events": [...]}`` body whose every event is valid: decoded and validated in
        one pass, returned as ``(partition key, stream record)`` pairs. ``None`` means "not that simple" (a
        single-event body, any invalid event, anything unusual): use :meth:`validate` per event, which gives
        each event its own answer. Both paths produce the same records."""
        try:
            batch = self._batch_decoder.decode(body)
        except (msgspec.DecodeError, RecursionError):
            return None
        events: list[Any] = batch.events  # type: ignore[attr-defined]
        if not events or len(events) > max_events:
            return None
        latest = received_at + max_future
        utc = dt.UTC
        encode = self._encoder.encode
        out = []
        for obj in events:
            if obj.received_at is not None or (obj.app_id is not None and obj.app_id != app_id):
                return None
            for name, reserved in self.types[obj.__struct_config__.tag]._reserved:
                if getattr(obj, name) in reserved:
                    return None
            try:
                ts = obj.ts.astimezone(utc)
            except OverflowError:
                return None
            if ts > latest:
                return None
            obj.ts = ts.isoformat(timespec="milliseconds")[:-6] + "Z"  # drop "+00:00": same as format_ts
            obj.app_id = app_id
            obj.received_at = received_at_text
            out.append((obj.user_id, encode(obj)))
        return out

    def __iter__(self) -> Iterator[EventType]:
        return iter(self.types.values())

    def names(self) -> list[str]:
        return list(self.types)

    def get(self, name: str) -> EventType:
        try:
            return self.types[name]
        except KeyError:
            raise KeyError(f"unknown event type {name!r}; registered: {', '.join(self.types)}") from None

    def validate(
        self,
        raw: Any,
        *,
        app_id: str,
        received_at: dt.datetime,
        max_future: dt.timedelta = DEFAULT_MAX_FUTURE,
        received_at_text: str | None = None,
    ) -> dict[str, Any]:
        """Validate one client event and return its normalized, enriched form.

        ``received_at_text`` is ``format_ts(received_at)``, passed in by callers validating many events at
        once (it is the same for every event of a request).

        Raises :class:`InvalidEvent` with a message a client can act on.
        """
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
        t = self.types[event_type]
        try:
            # The struct tolerates app_id (checked above), so the client's dict converts without a copy.
            obj = msgspec.convert(raw, t._struct)
        except msgspec.ValidationError as exc:
            message = _humanize(str(exc))
            has_properties = any(f.name == "properties" for f in t.fields)
            if message.startswith("unknown field") and has_properties:
                message += "; put custom fields under 'properties'"
            raise InvalidEvent(message) from None
        for name, reserved in t._reserved:
            if getattr(obj, name) in reserved:
                raise InvalidEvent(f"{name} {getattr(obj, name)!r} is reserved (field `{name}`)")
        ts: dt.datetime = obj.ts
        try:
            ts = ts.astimezone(dt.UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: valid RFC 3339, but before year 1 in UTC
            raise InvalidEvent("ts is out of range once converted to UTC (field `ts`)") from None
        if ts > received_at + max_future:
            raise InvalidEvent(
                f"ts {format_ts(ts)} is more than {int(max_future.total_seconds() // 60)} minutes "
                "in the future of receipt; check the client's clock"
            )
        out: dict[str, Any] = {
            "event_id": str(obj.event_id),
            "event_type": event_type,
            "user_id": obj.user_id,
            "ts": format_ts(ts),
            "app_id": app_id,
            "received_at": received_at_text or format_ts(received_at),
        }
        for name in t._own_fields:
            out[name] = getattr(obj, name)
        return out


class InvalidEvent(ValueError):
    """An event that breaks the contract; the message says what to fix."""


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


def _client_struct(t: EventType) -> Any:
    """The msgspec type a client's event of type ``t`` must match (server-set fields excluded)."""
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for f in ENVELOPE + t.fields:
        if f.name == "event_type":
            continue
        if f.name in ("app_id", "received_at"):
            # Server-set: a client's app_id must match the key's app; a client's received_at is refused.
            fields.append((f.name, str | None, None))
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
