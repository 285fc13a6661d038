"""Firehose transform Lambda: shapes each packed record for the Parquet conversion.

Contract (Kinesis Data Firehose data transformation): every input ``recordId``
comes back exactly once with ``result`` Ok, Dropped or ProcessingFailed and base64
``data``. A record carries many events (the router packs them: concatenated JSON
objects, one per line; ``streamboard.packing``). Each event is checked and
normalized on its own; the good ones go back packed under the record's ``recordId``
(Ok): one JSON object per line whose keys are exactly the Glue table's columns,
timestamps as ``yyyy-MM-dd HH:mm:ss.SSS`` in UTC (the form Firehose's JSON
deserializers read into a Parquet timestamp). The bad ones (an event that does not
fit its table, a piece that is not a JSON object) are kept with their reason in the
bad-events sink, never in the lake's tables. Only an unreadable record (not UTF-8,
no JSON object at all) is ProcessingFailed: Firehose then keeps it whole under the
error prefix.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from streamboard.backend import Backend
from streamboard.badevents import keep_bad_events
from streamboard.packing import Unreadable, read_objects
from streamboard.ports import Lake
from streamboard.registry import REGISTRY, EventType, Registry, parse_ts

log = logging.getLogger("streamboard.transform")


class Unprocessable(ValueError):
    pass


def _event_type_of(stream_arn: str, registry: Registry) -> EventType:
    stream = stream_arn.rsplit("/", 1)[-1]
    for t in registry:
        if stream == t.delivery_stream or stream.endswith("-" + t.name):
            return t
    raise Unprocessable(f"no event type is delivered by stream {stream!r}")


def transform_event(event: dict[str, Any], event_type: EventType) -> dict[str, Any]:
    """One delivered event (as the router wrote it) to the row the Parquet conversion expects; raises
    :class:`Unprocessable`."""
    if event.get("event_type") != event_type.name:
        raise Unprocessable(f"not a {event_type.name} event")
    row: dict[str, Any] = {}
    for col in event_type.columns:
        value = event.get(col.name)
        if value is None:
            if col.required and col.name not in ("app_id", "received_at"):
                raise Unprocessable(f"missing {col.name}")
            row[col.name] = None
        elif col.kind == "timestamp":
            try:
                when = parse_ts(str(value))
                row[col.name] = f"{when.year:04d}-" + when.strftime("%m-%d %H:%M:%S.%f")[:-3]
            except (ValueError, OverflowError):
                raise Unprocessable(f"{col.name} is not a timestamp: {value!r}") from None
        elif col.kind == "bigint":
            if not isinstance(value, int) or isinstance(value, bool):
                raise Unprocessable(f"{col.name} is not an integer: {value!r}")
            row[col.name] = value
        elif col.kind == "map<string,string>":
            if not isinstance(value, dict):
                raise Unprocessable(f"{col.name} is not an object")
            row[col.name] = {str(k): str(v) for k, v in value.items()}
        else:
            row[col.name] = str(value)
    return row


def transform(event: dict[str, Any], lake: Lake, registry: Registry = REGISTRY) -> dict[str, Any]:
    """The transformation's response to a Firehose invocation; the bad events of its records go to ``lake``'s
    bad-events sink (one object per invocation, written before the response: if that write fails, the
    invocation fails and Firehose retries it, so nothing is lost)."""
    event_type = _event_type_of(event.get("deliveryStreamArn", ""), registry)
    out = []
    bad: list[tuple[Any, str]] = []
    for rec in event["records"]:
        rid = rec["recordId"]
        try:
            objects, others = read_objects(base64.b64decode(rec["data"]))
        except Unreadable as exc:
            log.warning("record %s failed processing: %s", rid, exc)
            out.append({"recordId": rid, "result": "ProcessingFailed", "data": rec["data"]})
            continue
        rows = []
        for obj in objects:
            try:
                rows.append(transform_event(obj, event_type))
            except Unprocessable as exc:
                bad.append((obj, f"transform: record {rid}: {exc}"))
        bad.extend((piece, f"transform: record {rid}: {reason}") for piece, reason in others)
        if not rows:
            # Nothing for the lake (a blank record, or every event bad and kept above). Dropped is the contract's
            # word for that; Ok with empty data would hand the format conversion an empty record.
            out.append({"recordId": rid, "result": "Dropped", "data": rec["data"]})
            continue
        # UTF-8 as the router wrote it (not \u escapes): the response stays about the size of the invocation.
        data = "".join(json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n" for row in rows).encode()
        out.append({"recordId": rid, "result": "Ok", "data": base64.b64encode(data).decode()})
    if bad:
        log.warning("%d bad events in %s kept in the bad-events sink", len(bad), event_type.delivery_stream)
        keep_bad_events(lake, "transform", bad)
    return {"records": out}


def handle(event: dict[str, Any], backend: Backend) -> dict[str, Any]:
    return transform(event, backend.lake, backend.registry)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from processors.deployed import backend

    return handle(event, backend())
