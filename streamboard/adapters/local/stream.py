"""Local event stream: a Kinesis-like sharded log in SQLite."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path

from streamboard.adapters.local.sqlite import SqliteDB
from streamboard.ports import PutResult, ReadRecord, StreamRecord
from streamboard.usage import Usage, kinesis_put_units

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  shard INTEGER NOT NULL,
  partition_key TEXT NOT NULL,
  data BLOB NOT NULL,
  arrival REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_shard ON records(shard, seq);
CREATE TABLE IF NOT EXISTS stream_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def shard_id(index: int) -> str:
    return f"shardId-{index:012d}"


def shard_for(partition_key: str, shards: int) -> int:
    """Kinesis maps the MD5 of the partition key onto shards' hash-key ranges; equal ranges here."""
    h = int.from_bytes(hashlib.md5(partition_key.encode(), usedforsecurity=False).digest(), "big")
    return h * shards >> 128


class LocalEventStream:
    """Records are ordered per shard by a global sequence number; writes are one transaction per put."""

    def __init__(self, path: Path, shards: int = 2, usage: Usage | None = None) -> None:
        self.db = SqliteDB(path, _SCHEMA)
        self.usage = usage  # counts PUT payload units (a record: its data and partition key)
        with self.db.tx() as conn:
            row = conn.execute("SELECT value FROM stream_meta WHERE key='shards'").fetchone()
            if row is None:
                conn.execute("INSERT INTO stream_meta VALUES ('shards', ?)", (str(shards),))
            else:
                shards = int(row[0])  # the shard count is fixed when the stream is created
        self.shards = shards

    def put_records(self, records: Sequence[StreamRecord]) -> list[PutResult]:
        now = time.time()
        rows = [(shard_for(r.partition_key, self.shards), r.partition_key, r.data, now) for r in records]
        results: list[PutResult] = []
        with self.db.tx() as conn:
            for row in rows:
                cur = conn.execute(
                    "INSERT INTO records (shard, partition_key, data, arrival) VALUES (?, ?, ?, ?)", row
                )
                results.append(PutResult(shard_id=shard_id(row[0]), sequence_number=str(cur.lastrowid)))
        if self.usage is not None:
            self.usage.add(kinesis_put_units=sum(kinesis_put_units(len(r.data) + len(r.partition_key.encode()))
                                                 for r in records))
        return results

    def trim(self, older_than: float) -> int:
        """Drop records that arrived before ``older_than`` (epoch seconds): Kinesis's retention period."""
        with self.db.tx() as conn:
            return int(conn.execute("DELETE FROM records WHERE arrival < ?", (older_than,)).rowcount)

    def shard_ids(self) -> list[str]:
        return [shard_id(i) for i in range(self.shards)]

    def read(self, shard: str, after: str | None, limit: int) -> list[ReadRecord]:
        index = int(shard.rsplit("-", 1)[1])
        rows = self.db.conn().execute(
            "SELECT seq, partition_key, data, arrival FROM records WHERE shard=? AND seq>? ORDER BY seq LIMIT ?",
            (index, int(after or 0), limit),
        ).fetchall()
        return [ReadRecord(shard, str(seq), pk, bytes(data), arrival) for seq, pk, data, arrival in rows]

    def backlog(self, shard: str, after: str | None) -> tuple[int, float | None]:
        """How many records of ``shard`` follow ``after`` (a consumer's checkpoint), and the oldest one's arrival
        (epoch seconds; ``None`` when there is none)."""
        index = int(shard.rsplit("-", 1)[1])
        count, oldest = self.db.conn().execute(
            "SELECT count(*), min(arrival) FROM records WHERE shard=? AND seq>?", (index, int(after or 0)),
        ).fetchone()
        return int(count), oldest

    def latest(self, shard: str) -> str | None:
        index = int(shard.rsplit("-", 1)[1])
        row = self.db.conn().execute("SELECT max(seq) FROM records WHERE shard=?", (index,)).fetchone()
        return None if row[0] is None else str(row[0])
