"""Local catalog: Glue-like tables and partitions in SQLite."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from streamboard.adapters.local.sqlite import SqliteDB
from streamboard.ports import Partition

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tables (
  name TEXT PRIMARY KEY, columns TEXT NOT NULL, partition_keys TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS partitions (
  tbl TEXT NOT NULL, vals TEXT NOT NULL, location TEXT NOT NULL, PRIMARY KEY (tbl, vals)
);
"""
# Added later: when each partition was registered (Glue's CreationTime); older catalogs get the column.
_ADDED_AT = "ALTER TABLE partitions ADD COLUMN added_at REAL"


class LocalCatalog:
    def __init__(self, path: Path) -> None:
        self.db = SqliteDB(path, _SCHEMA)
        with self.db.tx() as conn:
            if "added_at" not in {r[1] for r in conn.execute("PRAGMA table_info(partitions)")}:
                conn.execute(_ADDED_AT)

    def ensure_table(self, name: str, columns: list[dict[str, str]], partition_keys: list[dict[str, str]]) -> None:
        with self.db.tx() as conn:
            conn.execute(
                "INSERT INTO tables VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET columns=excluded.columns, "
                "partition_keys=excluded.partition_keys",
                (name, json.dumps(columns), json.dumps(partition_keys)),
            )

    def table_names(self) -> list[str]:
        return [r[0] for r in self.db.conn().execute("SELECT name FROM tables ORDER BY name").fetchall()]

    def columns(self, name: str) -> list[dict[str, str]]:
        row = self.db.conn().execute("SELECT columns FROM tables WHERE name=?", (name,)).fetchone()
        return [] if row is None else list(json.loads(row[0]))

    def add_partitions(self, table: str, partitions: Sequence[Partition]) -> int:
        with self.db.tx() as conn:
            before = conn.total_changes
            now = time.time()
            conn.executemany(
                "INSERT OR IGNORE INTO partitions (tbl, vals, location, added_at) VALUES (?, ?, ?, ?)",
                [(table, json.dumps(list(p.values)), p.location, now) for p in partitions],
            )
            return conn.total_changes - before

    def partitions(self, table: str) -> list[Partition]:
        rows = self.db.conn().execute(
            "SELECT vals, location, added_at FROM partitions WHERE tbl=? ORDER BY vals", (table,)
        ).fetchall()
        return [Partition(tuple(json.loads(v)), loc, added) for v, loc, added in rows]
