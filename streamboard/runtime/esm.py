"""Kinesis -> Lambda event source mapping, as AWS runs it.

Per shard: read a batch after the checkpoint, invoke the handler with a
Lambda-shaped Kinesis event, honour ``batchItemFailures`` (checkpoint before the
first failed record, retry from there), bisect the batch on a function error,
and after ``max_retries`` failed attempts send the batch's description to the
on-failure destination and move past it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamboard.adapters.local.sqlite import SqliteDB
from streamboard.ports import DeadLetterQueue, EventStream, ReadRecord

log = logging.getLogger("streamboard.esm")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (consumer TEXT NOT NULL, shard TEXT NOT NULL, seq TEXT NOT NULL,
  PRIMARY KEY (consumer, shard));
"""


# Lambda's invocation payload limit: a mapping's batch stays under it, whatever its batch size.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
_RECORD_OVERHEAD = 700  # the JSON around each record's data in the event (ids, ARNs, names)


def within_payload(records: list[ReadRecord]) -> list[ReadRecord]:
    """The longest prefix of ``records`` whose Lambda event stays under the payload limit (at least one)."""
    size = 0
    for i, r in enumerate(records):
        size += (len(r.data) + 2) // 3 * 4 + _RECORD_OVERHEAD  # base64
        if size > MAX_PAYLOAD_BYTES and i > 0:
            return records[:i]
    return records


def kinesis_event(records: list[ReadRecord], stream_arn: str, region: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": base64.b64encode(r.data).decode(),
                    "approximateArrivalTimestamp": r.arrival,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{r.shard_id}:{r.sequence_number}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::000000000000:role/streamboard-router",
                "awsRegion": region,
                "eventSourceARN": stream_arn,
            }
            for r in records
        ]
    }


class EventSourceMapping:
    def __init__(
        self,
        stream: EventStream,
        handler: Callable[[dict[str, Any], Any], dict[str, Any]],
        state_path: Path,
        on_failure: DeadLetterQueue,
        *,
        name: str = "router",
        batch_size: int = 500,
        max_retries: int = 3,
        bisect_on_error: bool = True,
        retry_backoff_seconds: float = 0.0,
        stream_arn: str = "arn:aws:kinesis:local:000000000000:stream/streamboard-events",
        region: str = "local",
    ) -> None:
        self.stream = stream
        self.handler = handler
        self.db = SqliteDB(state_path, _SCHEMA)
        self.on_failure = on_failure
        self.name = name
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.bisect_on_error = bisect_on_error
        self.retry_backoff_seconds = retry_backoff_seconds
        self._not_before: dict[str, float] = {}
        self.stream_arn = stream_arn
        self.region = region
        self._attempts: dict[str, int] = {}
        self._limit: dict[str, int] = {}

    def checkpoint(self, shard: str) -> str | None:
        row = self.db.conn().execute(
            "SELECT seq FROM checkpoints WHERE consumer=? AND shard=?", (self.name, shard)
        ).fetchone()
        return None if row is None else str(row[0])

    def _set_checkpoint(self, shard: str, seq: str) -> None:
        with self.db.tx() as conn:
            conn.execute(
                "INSERT INTO checkpoints VALUES (?, ?, ?) ON CONFLICT(consumer, shard) DO UPDATE SET seq=excluded.seq",
                (self.name, shard, seq),
            )

    def poll_shard(self, shard: str) -> int:
        """One invocation for ``shard``, if it has records; returns how many records were read."""
        if time.monotonic() < self._not_before.get(shard, 0.0):
            return 0  # backing off after a failed attempt
        limit = self._limit.get(shard, self.batch_size)
        records = within_payload(self.stream.read(shard, self.checkpoint(shard), limit))
        if not records:
            return 0
        failed_from: int | None = None
        function_error = False
        try:
            response = self.handler(kinesis_event(records, self.stream_arn, self.region), None) or {}
            failures = response.get("batchItemFailures") or []
            if failures:
                index = {r.sequence_number: i for i, r in enumerate(records)}
                ids = [f.get("itemIdentifier") for f in failures]
                # An identifier that is not in the batch fails the whole batch, as on AWS.
                failed_from = min(index[i] for i in ids) if all(i in index for i in ids) else 0
        except Exception:  # noqa: BLE001 - a function error; the mapping retries, as Lambda does
            log.exception("%s handler failed on %s (%d records)", self.name, shard, len(records))
            failed_from = 0
            function_error = True

        if failed_from is None:
            self._set_checkpoint(shard, records[-1].sequence_number)
            self._attempts.pop(shard, None)
            self._limit.pop(shard, None)
            return len(records)
        if failed_from > 0:
            self._set_checkpoint(shard, records[failed_from - 1].sequence_number)
            self._attempts.pop(shard, None)
            return failed_from
        if function_error and self.bisect_on_error and len(records) > 1:
            # Splitting the batch is not a retry attempt: retries are counted on the smallest batch.
            self._limit[shard] = max(1, len(records) // 2)
            return 0
        attempts = self._attempts.get(shard, 0) + 1
        self._attempts[shard] = attempts
        if self.retry_backoff_seconds:
            self._not_before[shard] = time.monotonic() + min(30.0, self.retry_backoff_seconds * 2 ** (attempts - 1))
        if attempts > self.max_retries:
            self._send_to_destination(shard, records, attempts)
            self._set_checkpoint(shard, records[-1].sequence_number)
            self._attempts.pop(shard, None)
            self._limit.pop(shard, None)
            return len(records)
        return 0

    def _send_to_destination(self, shard: str, records: list[ReadRecord], attempts: int) -> None:
        """The on-failure record Lambda sends for a Kinesis source: a description, not the data."""
        now = dt.datetime.now(dt.UTC).isoformat()
        function_arn = f"arn:aws:lambda:{self.region}:000000000000:function:streamboard-{self.name}"
        body = {
            "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": attempts,
                               "functionArn": function_arn},
            "timestamp": now,
            "version": "1.0",
            "KinesisBatchInfo": {
                "shardId": shard,
                "startSequenceNumber": records[0].sequence_number,
                "endSequenceNumber": records[-1].sequence_number,
                "approximateArrivalOfFirstRecord": dt.datetime.fromtimestamp(records[0].arrival, dt.UTC).isoformat(),
                "approximateArrivalOfLastRecord": dt.datetime.fromtimestamp(records[-1].arrival, dt.UTC).isoformat(),
                "batchSize": len(records),
                "streamArn": self.stream_arn,
            },
        }
        log.error("%s: %d records of %s sent to the on-failure destination after %d attempts",
                  self.name, len(records), shard, attempts)
        self.on_failure.send([json.dumps(body).encode()])

    def poll_all(self) -> int:
        return sum(self.poll_shard(s) for s in self.stream.shard_ids())

    def caught_up_until(self, started: float) -> bool:
        """Whether every record that arrived before ``started`` (epoch seconds) is past the checkpoints."""
        for shard in self.stream.shard_ids():
            nxt = self.stream.read(shard, self.checkpoint(shard), 1)
            if nxt and nxt[0].arrival < started:
                return False
        return True
