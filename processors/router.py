"""Router Lambda: fans the Kinesis stream out to one delivery stream per event type.

Event source: Kinesis (batch, ReportBatchItemFailures on). Each record carries the
events of one ingest request (see ``Registry.read_record``); each event goes to its
type's delivery stream, one line of JSON in the lake's normalized form, and a batch's
lines of one stream are packed into Firehose records of up to 1,000 KiB
(``streamboard.packing``: Firehose bills every record in 5 KB steps). When a packed
record is not delivered, every Kinesis record that contributed an event to it is
reported in ``batchItemFailures``, so the event source mapping retries from the first
of them (events delivered twice that way count once downstream, by event_id); what can
never be routed (not a record, an invalid event) is quarantined in the bad-events
sink, never allowed to block the shard.
Also updates the near-real-time profiles with the delivered events (deduplicated by event_id).
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from collections import defaultdict
from typing import Any

import msgspec

from streamboard.backend import Backend
from streamboard.badevents import keep_bad_events
from streamboard.packing import pack
from streamboard.registry import format_ts

log = logging.getLogger("streamboard.router")
_encoder = msgspec.json.Encoder()


def route(records: list[dict[str, Any]], backend: Backend) -> dict[str, Any]:
    """Route Kinesis records (the ``Records`` of a Lambda event); return the partial-batch response."""
    by_stream: dict[str, list[tuple[str, bytes, dict[str, Any]]]] = defaultdict(list)
    quarantined: list[tuple[Any, str]] = []
    for rec in records:
        seq = rec["kinesis"]["sequenceNumber"]
        raw = base64.b64decode(rec["kinesis"]["data"])
        try:
            events, invalid = backend.registry.read_record(raw)
        except ValueError as exc:
            quarantined.append((raw.decode("utf-8", "replace"), f"router: cannot route record {seq}: {exc}"))
            continue
        quarantined.extend((event, f"router: record {seq}: {reason}") for event, reason in invalid)
        for event in events:
            stream = backend.registry.get(event["event_type"]).delivery_stream
            by_stream[stream].append((seq, _encoder.encode(event) + b"\n", event))

    if quarantined:
        keep_bad_events(backend.lake, "router", quarantined)

    failed: set[str] = set()
    delivered: list[dict[str, Any]] = []
    for stream, items in by_stream.items():
        packed = pack([line for _, line, _ in items])
        try:
            failed_idx = set(backend.delivery.put_record_batch(
                stream, [b"".join(line for _, line, _ in items[r.start:r.stop]) for r in packed]))
        except Exception as exc:  # noqa: BLE001 - any delivery failure means: retry these records
            log.warning("delivery to %s failed: %s", stream, exc)
            failed_idx = set(range(len(packed)))
        for i, members in enumerate(packed):
            if i in failed_idx:
                # Each Kinesis record with an event in it is retried whole; its delivered events count once.
                failed.update(items[j][0] for j in members)
            else:
                delivered.extend(items[j][2] for j in members)

    # Profiles: applying an event twice counts it once, so retried records are harmless.
    backend.profiles.apply(delivered, format_ts(dt.datetime.now(dt.UTC)))
    if backend.usage is not None:
        backend.usage.add(score_events=sum(1 for event in delivered if event["event_type"] == "score"))
    order = {rec["kinesis"]["sequenceNumber"]: i for i, rec in enumerate(records)}
    return {"batchItemFailures": [{"itemIdentifier": s} for s in sorted(failed, key=order.__getitem__)]}


def handle(event: dict[str, Any], backend: Backend) -> dict[str, Any]:
    return route(event.get("Records", []), backend)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from processors.deployed import backend

    return handle(event, backend())
