"""Firehose transform Lambda: shapes each record for the Parquet conversion.

Contract (Kinesis Data Firehose data transformation): every input ``recordId``
comes back once with ``result`` Ok, Dropped or ProcessingFailed and base64
``data``. Ok records are one JSON object per line whose keys are exactly the
Glue table's columns, timestamps as ``yyyy-MM-dd HH:mm:ss.SSS`` in UTC (the form
Firehose's JSON deserializers read into a Parquet timestamp).
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

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


def transform_record(raw: bytes, event_type: EventType) -> dict[str, Any]:
    """One delivered event (a JSON line the router wrote) to the row the Parquet conversion expects; raises
    :class:`Unprocessable`."""
    try:
        event = json.loads(raw)
    except ValueError as exc:
        raise Unprocessable(f"not JSON: {exc}") from None
    if not isinstance(event, dict) or event.get("event_type") != event_type.name:
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


def transform(event: dict[str, Any], registry: Registry = REGISTRY) -> dict[str, Any]:
    event_type = _event_type_of(event.get("deliveryStreamArn", ""), registry)
    out = []
    for rec in event["records"]:
        raw = base64.b64decode(rec["data"])
        if not raw.strip():
            out.append({"recordId": rec["recordId"], "result": "Dropped", "data": rec["data"]})
            continue
        try:
            row = transform_record(raw, event_type)
        except Unprocessable as exc:
            log.warning("record %s failed processing: %s", rec["recordId"], exc)
            out.append({"recordId": rec["recordId"], "result": "ProcessingFailed", "data": rec["data"]})
            continue
        data = (json.dumps(row, separators=(",", ":")) + "\n").encode()
        out.append({"recordId": rec["recordId"], "result": "Ok", "data": base64.b64encode(data).decode()})
    return {"records": out}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return transform(event)
