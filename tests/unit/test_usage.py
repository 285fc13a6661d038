"""The billing rules on hand-computed cases, and the counters' store across processes and restarts."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from streamboard.usage import (
    Usage,
    athena_billed_bytes,
    dynamodb_read_units,
    dynamodb_write_units,
    firehose_billed_bytes,
    item_size,
    kinesis_put_units,
    transaction_write_units,
)

KB = 1024


def test_a_6_kb_firehose_record_is_billed_10_kb_and_a_tiny_one_5_kb() -> None:
    assert firehose_billed_bytes(6 * KB) == 10 * KB
    assert firehose_billed_bytes(5 * KB) == 5 * KB
    assert firehose_billed_bytes(100) == 5 * KB


def test_a_30_kb_kinesis_record_is_2_put_units() -> None:
    assert kinesis_put_units(30 * KB) == 2
    assert kinesis_put_units(25 * KB) == 1
    assert kinesis_put_units(1) == 1


def test_an_athena_query_under_10_mb_is_billed_10_mb() -> None:
    assert athena_billed_bytes(0) == 10 * KB * KB
    assert athena_billed_bytes(3 * KB * KB) == 10 * KB * KB
    assert athena_billed_bytes(12 * KB * KB) == 12 * KB * KB


def test_item_size_counts_names_and_values_by_dynamodb_rules() -> None:
    # "pk" (2) + "a" (1); "n" (1) + 12345 (5 significant digits: 3 bytes + 1); "b" (1) + 4 bytes; "ok" (2) + 1
    item = {"pk": {"S": "a"}, "n": {"N": "12345"}, "b": {"B": b"\x00\x01\x02\x03"}, "ok": {"BOOL": True}}
    assert item_size(item) == 3 + 5 + 5 + 3
    assert item_size({"n": {"N": "1000"}}) == 1 + 2  # trailing zeros trimmed: one digit
    assert item_size({"pk": {"S": "é"}}) == 2 + 2  # UTF-8 bytes


def test_a_1_5_kb_item_in_a_transaction_is_4_write_units() -> None:
    item = {"pk": {"S": "a"}, "v": {"S": "x" * (1536 - 4)}}
    assert item_size(item) == 1536
    assert transaction_write_units([item]) == 4
    assert dynamodb_write_units(1536) == 2
    assert dynamodb_write_units(1024) == 1


def test_read_units_by_consistency() -> None:
    assert dynamodb_read_units(5 * KB) == 2
    assert dynamodb_read_units(5 * KB, consistent=False) == 1.0
    assert dynamodb_read_units(5 * KB, transactional=True) == 4
    assert dynamodb_read_units(0, consistent=False) == 0.5  # reading nothing still costs the minimum


def test_unknown_counter_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no usage counter"):
        Usage(tmp_path / "usage.db").add(kinesis_units=1)


def _add_many(path: str, n: int) -> None:
    usage = Usage(Path(path))
    for _ in range(n):
        usage.add(events_accepted=1, dynamodb_read_units=0.5)


def test_counters_survive_restarts_and_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    Usage(path).add(kinesis_put_units=3)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_many, args=(str(path), 150)) for _ in range(3)]
    threads = [threading.Thread(target=_add_many, args=(str(path), 150)) for _ in range(2)]
    for w in [*procs, *threads]:
        w.start()
    for w in [*procs, *threads]:
        w.join(120)
    assert all(p.exitcode == 0 for p in procs)
    Usage(path).finish_refresh(athena_bytes=20 * KB * KB, lambda_invocations=4)
    Usage(path).finish_refresh(athena_bytes=11 * KB * KB, lambda_invocations=4)
    report = Usage(path).report()  # a new instance: what the file holds
    assert report["events_accepted"] == 5 * 150
    assert report["refreshes"] == 2
    units = report["units"]
    assert units["kinesis_put_units"] == 3 and units["dynamodb_read_units"] == 5 * 150 * 0.5
    assert units["lambda_invocations"] == 8
    assert units["athena_bytes_scanned_last_refresh"] == 11 * KB * KB  # the last refresh's, not a sum
