"""Firehose records that carry many events: packing them, the PutRecordBatch limits, reading them back.

Firehose bills ingestion and format conversion per record, each rounded up to 5 KB, so a ~300-byte event
sent as a record of its own is billed as 5 KB. The router packs each delivery stream's events of one batch
into records of up to :data:`MAX_RECORD_BYTES`: concatenated JSON objects, one per line (``{...}\\n{...}\\n``),
the form Firehose's JSON -> Parquet conversion reads (an array of objects is not valid input; see
FACTS.md). For 1,000 events of 300 bytes in one router batch that is 1 record instead of 1,000, and
300,000 bytes billed as 302,080 (59 steps of 5 KB, taken as 5,120 bytes) instead of 5,120,000 (1,000
steps): 17 times fewer billed bytes. A full record holds about 3,400 such events; a router batch with
fewer events of a type makes a smaller record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

MAX_RECORD_BYTES = 1000 * 1024  # PutRecordBatch: one record's data, before base64
MAX_BATCH_RECORDS = 500  # PutRecordBatch: records per call
MAX_BATCH_BYTES = 4 * 1024 * 1024  # PutRecordBatch: data per call

_SPACE = re.compile(r"[ \t\r\n]*")
_DECODER = json.JSONDecoder()


def pack(lines: Sequence[bytes], limit: int = MAX_RECORD_BYTES) -> list[range]:
    """Consecutive lines grouped into records of at most ``limit`` bytes, in order: each record's line indexes.

    Raises ValueError for a line longer than ``limit`` (the registry's field bounds keep an event far below
    1,000 KiB)."""
    out: list[range] = []
    start, size = 0, 0
    for i, line in enumerate(lines):
        if len(line) > limit:
            raise ValueError(f"a line of {len(line):,} bytes does not fit in a Firehose record ({limit:,} bytes)")
        if size + len(line) > limit:
            out.append(range(start, i))
            start, size = i, 0
        size += len(line)
    if start < len(lines):
        out.append(range(start, len(lines)))
    return out


def batches(sizes: Sequence[int]) -> list[list[int]]:
    """Record indexes grouped into PutRecordBatch calls of at most 500 records and 4 MiB, in order.

    Raises ValueError for a record over :data:`MAX_RECORD_BYTES`: Firehose refuses the whole call."""
    check_sizes(sizes)
    out: list[list[int]] = []
    cur: list[int] = []
    size = 0
    for i, n in enumerate(sizes):
        if cur and (len(cur) == MAX_BATCH_RECORDS or size + n > MAX_BATCH_BYTES):
            out.append(cur)
            cur, size = [], 0
        cur.append(i)
        size += n
    if cur:
        out.append(cur)
    return out


def check_sizes(sizes: Sequence[int]) -> None:
    """Raise ValueError when a record is larger than Firehose takes."""
    for i, n in enumerate(sizes):
        if n > MAX_RECORD_BYTES:
            raise ValueError(f"record {i} has {n:,} bytes; a Firehose record takes at most {MAX_RECORD_BYTES:,}")


class Unreadable(ValueError):
    """A record that is not UTF-8, or holds no JSON object at all."""


def read_objects(data: bytes) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The JSON objects of a packed record, in order, and each piece of it that is not one, with the reason.

    Objects may follow each other directly or with whitespace between them (``{...}{...}`` and
    ``{...}\\n{...}\\n`` alike); after a piece that is not JSON, reading resumes on the next line. Raises
    :class:`Unreadable` when the data is not UTF-8, or is not blank and holds no JSON object."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unreadable(f"not UTF-8: {exc}") from None
    objects: list[dict[str, Any]] = []
    others: list[tuple[str, str]] = []
    pos = _skip_space(text, 0)
    while pos < len(text):
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except (ValueError, RecursionError) as exc:
            newline = text.find("\n", pos)
            end = len(text) if newline < 0 else newline
            others.append((text[pos:end], f"not JSON: {getattr(exc, 'msg', exc)}"))
        else:
            if isinstance(value, dict):
                objects.append(value)
            else:
                others.append((text[pos:end], f"not a JSON object but {type(value).__name__}"))
        pos = _skip_space(text, end)
    if others and not objects:
        raise Unreadable(f"no JSON object in it ({others[0][1]})")
    return objects, others


def _skip_space(text: str, pos: int) -> int:
    match = _SPACE.match(text, pos)
    return match.end() if match else pos
