"""DLQ redrive: replays the ingest dead-letter queue into the stream.

Each message holds one enriched event (what ingest would have put on the stream).
A message is deleted only after its record is in the stream; replaying twice is
harmless because event_id dedupe downstream counts each event once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from streamboard.backend import Backend
from streamboard.overflow import POINTER_KEY
from streamboard.ports import StreamRecord
from streamboard.registry import partition_key

log = logging.getLogger("streamboard.redrive")


def redrive(backend: Backend, max_messages: int | None = None,
            progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Move DLQ messages into the stream until the queue is empty (or ``max_messages``); return counts."""
    moved = unreadable = failed = 0
    while max_messages is None or moved + unreadable < max_messages:
        messages = backend.dlq.receive(10)
        if not messages:
            break
        records, receipts, bad = [], [], []
        for m in messages:
            try:
                body = m.body
                record = json.loads(body)
                if POINTER_KEY in record:  # a record too large for the queue, kept in the lake
                    body = backend.lake.get_object(record[POINTER_KEY])
                    record = json.loads(body)
                records.append(StreamRecord(partition_key(record["events"][0]["event_id"]), body))
                receipts.append(m.receipt)
            except (ValueError, KeyError, IndexError, TypeError):
                bad.append(m)
        if bad:
            # Not an event: keep it out of the stream, but never drop it silently.
            from streamboard.badevents import keep_bad_events

            keep_bad_events(backend.lake, "redrive",
                            [(m.body.decode("utf-8", "replace"), "not a stream record") for m in bad])
            backend.dlq.delete([m.receipt for m in bad])
            unreadable += len(bad)
        if records:
            try:
                results = backend.stream.put_records(records)
            except Exception as exc:  # noqa: BLE001 - the stream is down: leave everything queued
                log.warning("the stream refused the redrive (%s); %d messages stay queued", exc, len(receipts))
                backend.dlq.release(receipts)
                failed += len(records)
                break
            done = [r for r, res in zip(receipts, results, strict=True) if res.ok]
            failed += len(records) - len(done)
            if done:
                backend.dlq.delete(done)
            moved += len(done)
            if len(done) < len(records):
                backend.dlq.release([r for r in receipts if r not in set(done)])
                log.warning("%d records not accepted by the stream; they stay in the queue", len(records) - len(done))
                break  # the stream is struggling: stop, the rest stays queued for the next run
            if progress:
                progress(len(done))
    return {"redriven": moved, "unreadable": unreadable, "failed": failed, "remaining": backend.dlq.depth()}


def handle(event: dict[str, Any], backend: Backend) -> dict[str, int]:
    return redrive(backend, max_messages=int(event.get("max_messages", 10_000)))


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    from processors.deployed import backend

    return handle(event, backend())
