"""Packing events into Firehose records and reading them back (streamboard.packing)."""

from __future__ import annotations

import json

import pytest

from streamboard.packing import (
    MAX_BATCH_BYTES,
    MAX_BATCH_RECORDS,
    MAX_RECORD_BYTES,
    Unreadable,
    batches,
    pack,
    read_objects,
)


def test_pack_fills_each_record_up_to_the_limit_in_order() -> None:
    lines = [b"x" * 9 + b"\n"] * 25  # 10 bytes each
    assert pack(lines, limit=100) == [range(0, 10), range(10, 20), range(20, 25)]
    assert pack(lines[:10], limit=100) == [range(0, 10)]  # exactly at the limit: one record
    assert pack(lines[:10] + [b"\n"], limit=100) == [range(0, 10), range(10, 11)]  # one byte over: two
    assert pack([], limit=100) == []


def test_pack_keeps_every_line_once_whatever_the_sizes() -> None:
    lines = [b"a" * (n % 97) + b"\n" for n in range(1, 2000)]
    records = pack(lines, limit=1000)
    assert [i for r in records for i in r] == list(range(len(lines)))
    sizes = [sum(len(lines[i]) for i in r) for r in records]
    assert max(sizes) <= 1000
    # greedy: no record could have taken the next one's first line
    assert all(size + len(lines[r.stop]) > 1000 for size, r in zip(sizes[:-1], records[:-1], strict=True))


def test_pack_refuses_a_line_longer_than_a_record() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        pack([b"ok\n", b"x" * 100 + b"\n"], limit=100)


def test_the_limits_are_the_put_record_batch_limits() -> None:
    assert (MAX_RECORD_BYTES, MAX_BATCH_RECORDS, MAX_BATCH_BYTES) == (1_024_000, 500, 4_194_304)


def test_batches_split_calls_by_records_and_bytes() -> None:
    assert batches([10] * 1100) == [list(range(500)), list(range(500, 1000)), list(range(1000, 1100))]
    full = [MAX_RECORD_BYTES] * 5
    assert batches(full) == [[0, 1, 2, 3], [4]]  # 4 full records are 4,096,000 bytes, within 4 MiB
    assert batches([MAX_RECORD_BYTES] * 4 + [MAX_BATCH_BYTES - 4 * MAX_RECORD_BYTES]) == [[0, 1, 2, 3, 4]]
    assert batches([]) == []
    with pytest.raises(ValueError, match="at most 1,024,000"):
        batches([10, MAX_RECORD_BYTES + 1])


def test_read_objects_reads_lines_and_objects_written_back_to_back() -> None:
    a, b, c = {"n": 1}, {"n": 2, "s": "x\ny"}, {"n": 3, "nested": {"k": [1, 2]}}
    assert read_objects(b'{"n":1}\n{"n":2,"s":"x\\ny"}\n{"n":3,"nested":{"k":[1,2]}}\n') == ([a, b, c], [])
    assert read_objects(b'{"n":1}{"n":2,"s":"x\\ny"}  {"n":3,"nested":{"k":[1,2]}}') == ([a, b, c], [])
    assert read_objects(json.dumps(b, ensure_ascii=False).encode()) == ([b], [])
    assert read_objects('{"name":"Zoë 🏆"}\r\n'.encode()) == ([{"name": "Zoë 🏆"}], [])
    assert read_objects(b"") == ([], []) and read_objects(b" \n\n") == ([], [])


def test_read_objects_reports_what_is_not_an_object_and_reads_on() -> None:
    objects, others = read_objects(b'{"n":1}\n{"n": tru\n42\n{"n":2}\n["x"]\n{"n":3}')
    assert objects == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert [text for text, _ in others] == ['{"n": tru', "42", '["x"]']
    assert "not JSON" in others[0][1]
    assert others[1][1] == "not a JSON object but int" and others[2][1] == "not a JSON object but list"


@pytest.mark.parametrize(("data", "reason"), [
    (b'[{"n":1},{"n":2}]', "no JSON object"),  # an array of objects is not valid input (FACTS.md)
    (b"\xff\xfe{}", "not UTF-8"),
    (b"PNG not json at all", "no JSON object"),
    (b"[" * 100_000, "no JSON object"),  # nesting too deep for the parser
])
def test_read_objects_refuses_unreadable_records(data: bytes, reason: str) -> None:
    with pytest.raises(Unreadable, match=reason):
        read_objects(data)
