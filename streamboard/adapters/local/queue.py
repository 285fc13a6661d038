"""Local queue: an SQS-like queue in SQLite (at-least-once, visibility timeout, explicit delete)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from streamboard.adapters.local.sqlite import SqliteDB
from streamboard.ports import QueueMessage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  queue TEXT NOT NULL,
  body BLOB NOT NULL,
  sent REAL NOT NULL,
  visible_at REAL NOT NULL,
  receipt TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages(queue, visible_at, id);
"""


class LocalQueue:
    """One named queue in a shared SQLite file."""

    def __init__(self, path: Path, name: str, visibility_timeout: float = 30.0) -> None:
        self.db = SqliteDB(path, _SCHEMA)
        self.name = name
        self.visibility_timeout = visibility_timeout

    def send(self, bodies: Sequence[bytes]) -> None:
        now = time.time()
        with self.db.tx() as conn:
            conn.executemany(
                "INSERT INTO messages (queue, body, sent, visible_at) VALUES (?, ?, ?, ?)",
                [(self.name, b, now, now) for b in bodies],
            )

    def receive(self, max_messages: int = 10) -> list[QueueMessage]:
        now = time.time()
        out: list[QueueMessage] = []
        with self.db.tx() as conn:
            rows = conn.execute(
                "SELECT id, body FROM messages WHERE queue=? AND visible_at<=? ORDER BY id LIMIT ?",
                (self.name, now, max_messages),
            ).fetchall()
            for msg_id, body in rows:
                receipt = f"{msg_id}:{uuid.uuid4().hex}"
                conn.execute(
                    "UPDATE messages SET visible_at=?, receipt=? WHERE id=?",
                    (now + self.visibility_timeout, receipt, msg_id),
                )
                out.append(QueueMessage(receipt, bytes(body)))
        return out

    def delete(self, receipts: Sequence[str]) -> None:
        with self.db.tx() as conn:
            conn.executemany("DELETE FROM messages WHERE queue=? AND receipt=?", [(self.name, r) for r in receipts])

    def release(self, receipts: Sequence[str]) -> None:
        with self.db.tx() as conn:
            conn.executemany("UPDATE messages SET visible_at=0, receipt=NULL WHERE queue=? AND receipt=?",
                             [(self.name, r) for r in receipts])

    def depth(self) -> int:
        row = self.db.conn().execute("SELECT count(*) FROM messages WHERE queue=?", (self.name,)).fetchone()
        return int(row[0])
