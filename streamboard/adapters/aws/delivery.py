"""Kinesis Data Firehose behind the DeliveryStreams port."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from streamboard.adapters.aws.clients import Clients

MAX_RECORDS = 500
MAX_BYTES = 4 * 1024 * 1024
DEFAULT_PREFIX = "streamboard-"


class FirehoseDelivery:
    """PutRecordBatch in calls of at most 500 records / 4 MiB; only the failed records are retried."""

    def __init__(self, clients: Clients, name_prefix: str = DEFAULT_PREFIX, attempts: int = 5,
                 base_delay: float = 0.1) -> None:
        self.clients = clients
        self.name_prefix = name_prefix
        self.attempts = attempts
        self.base_delay = base_delay

    def stream_name(self, stream: str) -> str:
        """The deployed name of a registry stream name (``streamboard-<type>``)."""
        if stream.startswith(DEFAULT_PREFIX):
            return self.name_prefix + stream[len(DEFAULT_PREFIX):]
        return stream

    def put_record_batch(self, stream: str, records: Sequence[bytes]) -> list[int]:
        name = self.stream_name(stream)
        firehose = self.clients("firehose")
        failed_all: list[int] = []
        for chunk in _chunks(len(records), [len(r) for r in records]):
            pending = list(chunk)
            for attempt in range(self.attempts):
                resp = firehose.put_record_batch(
                    DeliveryStreamName=name, Records=[{"Data": records[i]} for i in pending])
                if not resp.get("FailedPutCount"):
                    pending = []
                    break
                pending = [i for i, r in zip(pending, resp["RequestResponses"], strict=True) if "ErrorCode" in r]
                if attempt + 1 < self.attempts:
                    time.sleep(random.uniform(0, self.base_delay * 2 ** attempt))  # full jitter
            failed_all.extend(pending)
        return failed_all


def _chunks(n: int, sizes: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    cur: list[int] = []
    size = 0
    for i in range(n):
        if cur and (len(cur) == MAX_RECORDS or size + sizes[i] > MAX_BYTES):
            out.append(cur)
            cur, size = [], 0
        cur.append(i)
        size += sizes[i]
    if cur:
        out.append(cur)
    return out
