"""Local delivery streams: Firehose's durable intake buffer in SQLite.

The local runtime's Firehose emulation (``streamboard.runtime.firehose``)
drains this buffer by size or age, runs the transform handler and writes Parquet.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from streamboard.adapters.local.sqlite import SqliteDB
from streamboard.packing import check_sizes
from streamboard.usage import Usage, firehose_billed_bytes

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buffer (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  stream TEXT NOT NULL,
  data BLOB NOT NULL,
  arrival REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS buffer_by_stream ON buffer(stream, id);
"""


class LocalDeliveryStreams:
    def __init__(self, path: Path, usage: Usage | None = None) -> None:
        self.db = SqliteDB(path, _SCHEMA)
        self.usage = usage  # counts records and their billed bytes (5 KB steps) as they enter a stream

    def put_record_batch(self, stream: str, records: Sequence[bytes]) -> list[int]:
        """Buffer the records (any number: the aws adapter splits them into calls); a record over 1,000 KiB is
        refused (ValueError), as Firehose refuses it."""
        check_sizes([len(r) for r in records])
        now = time.time()
        with self.db.tx() as conn:
            conn.executemany(
                "INSERT INTO buffer (stream, data, arrival) VALUES (?, ?, ?)", [(stream, r, now) for r in records]
            )
        if self.usage is not None:
            self.usage.add(firehose_records=len(records),
                           firehose_billed_bytes=sum(firehose_billed_bytes(len(r)) for r in records))
        return []

    # --- used by the Firehose emulation only -------------------------------------------------
    def buffered(self, stream: str) -> tuple[int, int, float | None]:
        """(records, bytes, oldest arrival) waiting in ``stream``'s buffer."""
        n, size, oldest = self.db.conn().execute(
            "SELECT count(*), coalesce(sum(length(data)), 0), min(arrival) FROM buffer WHERE stream=?", (stream,)
        ).fetchone()
        return int(n), int(size), oldest

    def take(self, stream: str, max_bytes: int, max_records: int) -> list[tuple[int, bytes, float]]:
        """The oldest records of ``stream``, up to the limits (at least one); removed only by :meth:`ack`."""
        rows = self.db.conn().execute(
            "SELECT id, data, arrival FROM buffer WHERE stream=? ORDER BY id LIMIT ?", (stream, max_records)
        ).fetchall()
        out: list[tuple[int, bytes, float]] = []
        size = 0
        for row_id, data, arrival in rows:
            if out and size + len(data) > max_bytes:
                break
            out.append((row_id, bytes(data), arrival))
            size += len(data)
        return out

    def ack(self, stream: str, up_to_id: int) -> None:
        with self.db.tx() as conn:
            conn.execute("DELETE FROM buffer WHERE stream=? AND id<=?", (stream, up_to_id))

    def streams(self) -> list[str]:
        return [r[0] for r in self.db.conn().execute("SELECT DISTINCT stream FROM buffer").fetchall()]
