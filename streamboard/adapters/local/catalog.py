"""Local catalog: Glue-like tables and partitions in SQLite."""

from __future__ import annotations

import json
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


class LocalCatalog:
    def __init__(self, path: Path) -> None:
        self.db = SqliteDB(path, _SCHEMA)

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
            conn.executemany(
                "INSERT OR IGNORE INTO partitions VALUES (?, ?, ?)",
                [(table, json.dumps(list(p.values)), p.location) for p in partitions],
            )
            return conn.total_changes - before

    def partitions(self, table: str) -> list[Partition]:
        rows = self.db.conn().execute(
            "SELECT vals, location FROM partitions WHERE tbl=? ORDER BY vals", (table,)
        ).fetchall()
        return [Partition(tuple(json.loads(v)), loc) for v, loc in rows]
