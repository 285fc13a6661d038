"""The local event source mapping keeps each invocation under Lambda's payload limit, as AWS does: with
aggregated records (up to 1 MB each), the batch size alone would allow far larger events."""

from __future__ import annotations

import json

from streamboard.ports import ReadRecord
from streamboard.runtime.esm import MAX_PAYLOAD_BYTES, kinesis_event, within_payload


def _records(n: int, size: int) -> list[ReadRecord]:
    return [ReadRecord("shardId-000000000000", str(i), f"k{i}", b"x" * size, 0.0) for i in range(n)]


def test_a_batch_of_large_records_is_cut_to_fit_one_invocation() -> None:
    records = _records(20, 1_000_000)
    batch = within_payload(records)
    assert 1 <= len(batch) < len(records)
    assert batch == records[: len(batch)]  # a prefix: order within the shard is kept
    event = kinesis_event(batch, "arn:aws:kinesis:us-east-1:0:stream/s", "us-east-1")
    assert len(json.dumps(event)) <= MAX_PAYLOAD_BYTES
    bigger = within_payload(records[: len(batch) + 1])
    assert bigger == batch  # one more record would not fit


def test_small_records_are_not_cut_and_one_record_always_goes() -> None:
    small = _records(500, 1000)
    assert within_payload(small) == small
    huge = _records(2, 6 * 1024 * 1024)
    assert within_payload(huge) == huge[:1]
