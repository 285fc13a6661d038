"""Firehose emulation: buffering by size and time, the transform Lambda contract, JSON to Parquet
from the registry's schema, the ``<type>/year=/month=/day=/hour=`` key layout and the error prefix.

A record may carry many JSON objects (the router packs events, ``streamboard.packing``): as the format
conversion's docs describe, each JSON object in a record's transformed data becomes one row."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from streamboard.adapters.local.delivery import LocalDeliveryStreams
from streamboard.badevents import hour_prefix
from streamboard.packing import Unreadable, read_objects
from streamboard.ports import Lake
from streamboard.registry import EventType, Registry

log = logging.getLogger("streamboard.firehose")

_ARROW = {
    "string": pa.string(),
    "bigint": pa.int64(),
    "timestamp": pa.timestamp("ms"),
    "map<string,string>": pa.map_(pa.string(), pa.string()),
}
ERROR_PREFIX = "errors"
MAX_RECORDS_PER_INVOCATION = 5000  # Lambda's 6 MB payload caps a real invocation about here


def arrow_schema(event_type: EventType) -> pa.Schema:
    return pa.schema([pa.field(c.name, _ARROW[c.kind]) for c in event_type.columns])


def _convert_value(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "timestamp":
        return dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S.%f")
    if kind == "bigint":
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"expected an integer, got {value!r}")
        return value
    if kind == "map<string,string>":
        return [(str(k), str(v)) for k, v in dict(value).items()]
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def to_row(event_type: EventType, obj: dict[str, Any]) -> dict[str, Any]:
    """One transformed JSON object to an Arrow-ready row, as the Parquet conversion reads it."""
    return {c.name: _convert_value(c.kind, obj.get(c.name)) for c in event_type.columns}


def to_parquet(event_type: EventType, rows: list[dict[str, Any]]) -> bytes:
    table = pa.Table.from_pylist(rows, schema=arrow_schema(event_type))
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy")
    return sink.getvalue()


class FirehoseEmulator:
    def __init__(
        self,
        buffer: LocalDeliveryStreams,
        lake: Lake,
        registry: Registry,
        transform: Callable[[dict[str, Any], Any], dict[str, Any]],
        buffer_bytes: int,
        buffer_seconds: float,
        region: str = "local",
    ) -> None:
        self.buffer = buffer
        self.lake = lake
        self.registry = registry
        self.transform = transform
        self.buffer_bytes = buffer_bytes
        self.buffer_seconds = buffer_seconds
        self.region = region

    def flush(self, force: bool = False) -> int:
        """Deliver every stream whose buffer is full or old enough (all of them with ``force``).
        Returns the number of rows written to the lake (one per event: a record may carry many)."""
        taken = 0
        for t in self.registry:
            while True:
                count, size, oldest = self.buffer.buffered(t.delivery_stream)
                if count == 0:
                    break
                due = size >= self.buffer_bytes or (oldest is not None and time.time() - oldest >= self.buffer_seconds)
                if not (force or due):
                    break
                taken += self._deliver(t)
        return taken

    def _deliver(self, event_type: EventType) -> int:
        stream = event_type.delivery_stream
        batch = self.buffer.take(stream, self.buffer_bytes, MAX_RECORDS_PER_INVOCATION)
        if not batch:
            return 0
        by_id = {f"{row_id:020d}": (data, arrival) for row_id, data, arrival in batch}
        event = {
            "invocationId": str(uuid.uuid4()),
            "deliveryStreamArn": f"arn:aws:firehose:{self.region}:000000000000:deliverystream/{stream}",
            "region": self.region,
            "records": [
                {
                    "recordId": rid,
                    "approximateArrivalTimestamp": int(arrival * 1000),
                    "data": base64.b64encode(data).decode(),
                }
                for rid, (data, arrival) in by_id.items()
            ],
        }
        response = self.transform(event, None)
        results = {r["recordId"]: r for r in response.get("records", [])}
        rows_by_hour: dict[str, list[dict[str, Any]]] = defaultdict(list)
        failures: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for rid, (data, arrival) in by_id.items():
            res = results.get(rid)
            arrived = dt.datetime.fromtimestamp(arrival, dt.UTC)
            if res is None or res.get("result") not in ("Ok", "Dropped", "ProcessingFailed"):
                failures["processing-failed"].append(_error_record(data, arrival, "Lambda.MissingRecordId",
                                                                  "the transform did not return this record"))
                continue
            if res["result"] == "Dropped":
                continue
            if res["result"] == "ProcessingFailed":
                failures["processing-failed"].append(_error_record(data, arrival, "Lambda.ProcessingFailed",
                                                                  "the transform reported ProcessingFailed"))
                continue
            out = base64.b64decode(res["data"])
            try:
                objects, others = read_objects(out)
            except Unreadable as exc:
                failures["format-conversion-failed"].append(
                    _error_record(out, arrival, "DataFormatConversion.MalformedData", str(exc)))
                continue
            for text, reason in others:
                failures["format-conversion-failed"].append(
                    _error_record(text.encode(), arrival, "DataFormatConversion.MalformedData", reason))
            for obj in objects:
                try:
                    rows_by_hour[hour_prefix(arrived)].append(to_row(event_type, obj))
                except (ValueError, TypeError) as exc:
                    failures["format-conversion-failed"].append(_error_record(
                        json.dumps(obj).encode(), arrival, "DataFormatConversion.MalformedData", str(exc)))
        stamp = dt.datetime.now(dt.UTC)
        for prefix, rows in rows_by_hour.items():
            key = f"{event_type.name}/{prefix}/{stream}-{stamp:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}.parquet"
            self.lake.put_object(key, to_parquet(event_type, rows))
        for kind, errs in failures.items():
            log.warning("%d records of %s failed (%s); kept under %s/", len(errs), stream, kind, ERROR_PREFIX)
            name = f"{stream}-{stamp:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"
            key = f"{ERROR_PREFIX}/{kind}/{stream}/{hour_prefix(stamp)}/{name}"
            self.lake.put_object(key, b"".join(json.dumps(e).encode() + b"\n" for e in errs))
        # Only now, with everything written, leave the buffer (at least once, as Firehose).
        self.buffer.ack(stream, batch[-1][0])
        return sum(map(len, rows_by_hour.values()))


def _error_record(data: bytes, arrival: float, code: str, message: str) -> dict[str, Any]:
    """The shape Firehose writes under its error output prefix."""
    return {
        "attemptsMade": 1,
        "arrivalTimestamp": int(arrival * 1000),
        "errorCode": code,
        "errorMessage": message,
        "attemptEndingTimestamp": int(time.time() * 1000),
        "rawData": base64.b64encode(data).decode(),
    }
