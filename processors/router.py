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
Every event is stamped with ``routed_at`` (the batch's routing time, a lake column): the near-real-time
profiles add the delivered events' points by routing slot, one update per user per batch
(``streamboard.profiles``), and a refresh learns from the column which slots the lake holds.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import threading
from collections import defaultdict
from typing import Any

import msgspec

from streamboard.backend import Backend
from streamboard.badevents import keep_bad_events
from streamboard.packing import pack
from streamboard.registry import format_ts

log = logging.getLogger("streamboard.router")
_encoder = msgspec.json.Encoder()


_last_routing = dt.datetime.min.replace(tzinfo=dt.UTC)
_routing_lock = threading.Lock()


def _routing_time() -> str:
    """This batch's ``routed_at``: now, and never the same millisecond as another batch of this process (a
    record routed twice must give two rows the refresh can tell apart, since each routing added to a profile)."""
    global _last_routing
    with _routing_lock:
        now = max(dt.datetime.now(dt.UTC), _last_routing + dt.timedelta(milliseconds=1))
        _last_routing = now.replace(microsecond=now.microsecond // 1000 * 1000)
        return format_ts(_last_routing)


def route(records: list[dict[str, Any]], backend: Backend) -> dict[str, Any]:
    """Route Kinesis records (the ``Records`` of a Lambda event); return the partial-batch response."""
    by_stream: dict[str, list[tuple[str, bytes, dict[str, Any]]]] = defaultdict(list)
    routed_at = _routing_time()
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
            event["routed_at"] = routed_at
            stream = backend.registry.get(event["event_type"]).delivery_stream
            by_stream[stream].append((seq, _encoder.encode(event) + b"\n", event))

    if quarantined:
        keep_bad_events(backend.lake, "router", quarantined)

    # Profiles first, one update per user for the batch's events: every row this routing puts in the lake is
    # then in a profile's live points (a refresh takes them back by routing slot once the lake holds them, so
    # none is ever taken back without having been added). A failed update fails the batch before anything is
    # delivered; an event whose delivery fails is added again when its record is retried, a duplicate that
    # the reconcile drops once its slot is behind the cut.
    backend.profiles.apply([event for items in by_stream.values() for _, _, event in items], routed_at)

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

    if backend.usage is not None:
        backend.usage.add(score_events=sum(1 for event in delivered if event["event_type"] == "score"))
    order = {rec["kinesis"]["sequenceNumber"]: i for i, rec in enumerate(records)}
    return {"batchItemFailures": [{"itemIdentifier": s} for s in sorted(failed, key=order.__getitem__)]}


def handle(event: dict[str, Any], backend: Backend) -> dict[str, Any]:
    return route(event.get("Records", []), backend)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from processors.deployed import backend

    return handle(event, backend())
