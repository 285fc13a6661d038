"""Kinesis Data Firehose behind the DeliveryStreams port."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from streamboard.adapters.aws.clients import Clients
from streamboard.packing import batches

DEFAULT_PREFIX = "streamboard-"


class FirehoseDelivery:
    """PutRecordBatch in calls of at most 500 records / 4 MiB (:func:`streamboard.packing.batches`); only the
    failed records are retried. A record over 1,000 KiB is refused before any call (ValueError), as Firehose
    would refuse its call: the router packs records within that limit."""

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
        chunks = batches([len(r) for r in records])
        firehose = self.clients("firehose")
        failed_all: list[int] = []
        for chunk in chunks:
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

