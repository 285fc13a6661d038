"""Local stores in SQLite: leaderboard snapshots, user profiles, apps and their hashed keys.

Each store stands for the DynamoDB table of its aws adapter (``streamboard.adapters.aws.stores``), and counts
in ``usage`` the units that adapter's calls would be billed for the same work: the same items
(``streamboard.adapters.aws.items``), sized by DynamoDB's rule. Approximations: an update is billed by the
item's size after it (DynamoDB takes the larger of before and after, which is after here but when an update
removes attributes); a transaction cancelled by a condition is billed for all its items, as if written.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from streamboard.adapters.aws.items import app_items, board_item
from streamboard.adapters.local.sqlite import SqliteDB
from streamboard.errors import BadRequest
from streamboard.keys import hash_key, new_key
from streamboard.ports import App, Board, BoardEntry, Profile
from streamboard.profiles import (
    CHALLENGE_SK,
    PROFILE_SK,
    Base,
    dynamo_item,
    first_item,
    live_updates,
    needs_write,
    pending_challenges,
    reconcile_update,
    resolve,
)
from streamboard.usage import Usage, dynamodb_read_units, dynamodb_write_units, item_size

_BOARDS = """
CREATE TABLE IF NOT EXISTS snapshots (
  snapshot_id INTEGER PRIMARY KEY AUTOINCREMENT,
  scope TEXT NOT NULL, win TEXT NOT NULL, as_of TEXT, refreshed_at TEXT
);
CREATE TABLE IF NOT EXISTS boards (
  scope TEXT NOT NULL, win TEXT NOT NULL, snapshot_id INTEGER NOT NULL, PRIMARY KEY (scope, win)
);
CREATE TABLE IF NOT EXISTS entries (
  snapshot_id INTEGER NOT NULL, rank INTEGER NOT NULL, user_id TEXT NOT NULL, user_name TEXT, score INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_snapshot ON entries(snapshot_id, rank, user_id);
CREATE INDEX IF NOT EXISTS entries_by_user ON entries(user_id);
CREATE TABLE IF NOT EXISTS board_items (scope TEXT NOT NULL, win TEXT NOT NULL, bytes INTEGER NOT NULL,
  PRIMARY KEY (scope, win));
"""


class LocalBoardStore:
    """Each board points at one snapshot; a replace writes the new snapshot and swaps the pointer in one
    transaction, so a reader sees the old snapshot or the new one, never a mix."""

    def __init__(self, path: Path, usage: Usage | None = None) -> None:
        self.db = SqliteDB(path, _BOARDS)
        self.usage = usage

    def replace_boards(self, boards: Sequence[Board]) -> None:
        units = 0
        with self.db.tx() as conn:
            for b in boards:
                if self.usage is not None:
                    # a PutItem of the board's item, billed by the larger of the item it replaces and the new one
                    size = item_size(board_item(b))
                    before = conn.execute("SELECT bytes FROM board_items WHERE scope=? AND win=?",
                                          (b.scope, b.window)).fetchone()
                    units += dynamodb_write_units(max(size, before[0] if before else 0))
                    conn.execute("INSERT OR REPLACE INTO board_items VALUES (?, ?, ?)", (b.scope, b.window, size))
                cur = conn.execute(
                    "INSERT INTO snapshots (scope, win, as_of, refreshed_at) VALUES (?, ?, ?, ?)",
                    (b.scope, b.window, b.as_of, b.refreshed_at),
                )
                new_id = cur.lastrowid
                conn.executemany(
                    "INSERT INTO entries VALUES (?, ?, ?, ?, ?)",
                    [(new_id, e.rank, e.user_id, e.user_name, e.score) for e in b.entries],
                )
                old = conn.execute("SELECT snapshot_id FROM boards WHERE scope=? AND win=?", (b.scope, b.window))
                old_row = old.fetchone()
                conn.execute(
                    "INSERT INTO boards VALUES (?, ?, ?) ON CONFLICT(scope, win) DO UPDATE SET "
                    "snapshot_id=excluded.snapshot_id",
                    (b.scope, b.window, new_id),
                )
                if old_row is not None:
                    conn.execute("DELETE FROM entries WHERE snapshot_id=?", (old_row[0],))
                    conn.execute("DELETE FROM snapshots WHERE snapshot_id=?", (old_row[0],))
        if self.usage is not None:
            self.usage.add(dynamodb_write_units=units)

    def _read(self, conn: sqlite3.Connection, scope: str | None = None, window: str | None = None) -> None:
        """Bill a read of one board's item (GetItem, eventually consistent), or of them all (a strongly
        consistent Query)."""
        if self.usage is None:
            return
        if scope is None:
            size = conn.execute("SELECT coalesce(sum(bytes), 0) FROM board_items").fetchone()[0]
            self.usage.add(dynamodb_read_units=dynamodb_read_units(size))
            return
        row = conn.execute("SELECT bytes FROM board_items WHERE scope=? AND win=?", (scope, window)).fetchone()
        self.usage.add(dynamodb_read_units=dynamodb_read_units(row[0] if row else 0, consistent=False))

    def get_board(self, scope: str, window: str, limit: int) -> Board | None:
        conn = self.db.conn()
        self._read(conn, scope, window)
        conn.execute("BEGIN")  # one read snapshot for the header and the entries
        try:
            head = conn.execute(
                "SELECT s.snapshot_id, s.as_of, s.refreshed_at FROM boards b JOIN snapshots s "
                "ON s.snapshot_id=b.snapshot_id WHERE b.scope=? AND b.win=?",
                (scope, window),
            ).fetchone()
            if head is None:
                return None
            rows = conn.execute(
                "SELECT rank, user_id, user_name, score FROM entries WHERE snapshot_id=? "
                "ORDER BY rank, user_id LIMIT ?",
                (head[0], limit),
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        return Board(scope, window, head[1], head[2], tuple(BoardEntry(*r) for r in rows))

    def scopes(self) -> list[str]:
        self._read(self.db.conn())
        return [r[0] for r in self.db.conn().execute("SELECT DISTINCT scope FROM boards ORDER BY scope")]

    def ranks_for(self, user_id: str) -> list[dict[str, Any]]:
        self._read(self.db.conn())
        rows = self.db.conn().execute(
            "SELECT b.scope, b.win, e.rank, e.score FROM boards b JOIN entries e ON e.snapshot_id=b.snapshot_id "
            "WHERE e.user_id=? ORDER BY b.scope, b.win",
            (user_id,),
        ).fetchall()
        return [{"scope": s, "window": w, "rank": r, "score": sc} for s, w, r, sc in rows]


_PROFILES = """
CREATE TABLE IF NOT EXISTS profile_items (
  user_id TEXT NOT NULL, sk TEXT NOT NULL, item TEXT NOT NULL, PRIMARY KEY (user_id, sk)
);
"""


class LocalProfileStore:
    """The profile items of :mod:`streamboard.profiles` in SQLite, one row per DynamoDB item (its attributes as
    JSON), updated as the aws store's ``UpdateItem`` calls would update them and billed by their sizes."""

    def __init__(self, path: Path, usage: Usage | None = None) -> None:
        self.db = SqliteDB(path, _PROFILES)
        self.usage = usage

    @staticmethod
    def _load(conn: sqlite3.Connection, user_id: str, sk: str) -> dict[str, Any] | None:
        row = conn.execute("SELECT item FROM profile_items WHERE user_id=? AND sk=?", (user_id, sk)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def _save(self, conn: sqlite3.Connection, user_id: str, sk: str, item: dict[str, Any]) -> int:
        """Store an item; return the write units DynamoDB bills for writing it (by its size after)."""
        conn.execute("INSERT INTO profile_items VALUES (?, ?, ?) ON CONFLICT(user_id, sk) DO UPDATE SET "
                     "item=excluded.item", (user_id, sk, json.dumps(item, separators=(",", ":"))))
        return dynamodb_write_units(item_size(dynamo_item(user_id, sk, item))) if self.usage is not None else 0

    def apply(self, events: Sequence[dict[str, Any]], now: str) -> int:
        """The router's batch: one update per user with score events (the aws store's one UpdateItem each)."""
        updates = live_updates(events, now)
        writes = 0
        with self.db.tx() as conn:
            for user, upd in updates.items():
                item = upd.apply(self._load(conn, user, PROFILE_SK))
                assert item is not None  # a live update has no condition
                writes += self._save(conn, user, PROFILE_SK, item)
        if self.usage is not None:
            self.usage.add(dynamodb_write_units=writes, profile_updates=len(updates))
        return len(updates)

    def reconcile(self, bases: Mapping[str, Base], *, batch: int, cut: int, now: str) -> int:
        """A refresh's reconcile: per user, the challenge firsts it changed, then the profile item (read first:
        an eventually consistent GetItem on AWS, for the names of what to remove)."""
        writes, reads = 0, 0.0
        with self.db.tx() as conn:
            for user, base in bases.items():
                for challenge, first in base.firsts.items():
                    sk = CHALLENGE_SK + challenge
                    old = self._load(conn, user, sk)
                    if old is None or int(old.get("rb", 0)) <= batch:
                        writes += self._save(conn, user, sk, first_item(first, batch))
                existing = self._load(conn, user, PROFILE_SK)
                if self.usage is not None and existing is not None:
                    reads += dynamodb_read_units(item_size(dynamo_item(user, PROFILE_SK, existing)), consistent=False)
                upd = reconcile_update(base, existing, batch=batch, cut=cut, now=now)
                if not base.firsts and not needs_write(user, existing, upd):
                    continue
                item = upd.apply(existing)
                if item is not None:
                    writes += self._save(conn, user, PROFILE_SK, item)
                elif self.usage is not None and existing is not None:  # a failed condition is billed too
                    writes += dynamodb_write_units(item_size(dynamo_item(user, PROFILE_SK, existing)))
        if self.usage is not None:
            self.usage.add(dynamodb_write_units=writes, dynamodb_read_units=reads, profile_reconciles=len(bases))
        return len(bases)

    def get(self, user_id: str) -> Profile | None:
        conn = self.db.conn()
        conn.execute("BEGIN")
        try:
            item = self._load(conn, user_id, PROFILE_SK)
            firsts: dict[str, tuple[str, str, str, int]] = {}
            read_bytes = 0 if item is None else item_size(dynamo_item(user_id, PROFILE_SK, item))
            for challenge in pending_challenges(item or {}):
                first = self._load(conn, user_id, CHALLENGE_SK + challenge)
                if first is not None:
                    read_bytes += item_size(dynamo_item(user_id, CHALLENGE_SK + challenge, first))
                    ts, event_id, category, points = first["first"]
                    firsts[challenge] = (ts, event_id, category, int(points))
        finally:
            conn.execute("COMMIT")
        if self.usage is not None:  # an eventually consistent GetItem, and a BatchGetItem of the firsts it needs
            self.usage.add(dynamodb_read_units=dynamodb_read_units(read_bytes, consistent=False))
        return None if item is None else resolve(user_id, item, firsts)


_APPS = """
CREATE TABLE IF NOT EXISTS apps (
  app_id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL
);
"""
_APP_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class LocalAppRegistry:
    def __init__(self, path: Path, usage: Usage | None = None) -> None:
        self.db = SqliteDB(path, _APPS)
        self.usage = usage

    def _bill(self, writes: int = 0, reads: float = 0.0) -> None:
        if self.usage is not None:
            self.usage.add(dynamodb_write_units=writes, dynamodb_read_units=reads)

    @staticmethod
    def _items(row: Sequence[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """An app's DynamoDB items from its row (app_id, role, key_hash, created_at)."""
        return app_items(row[0], row[1], row[2], row[3])

    def create(self, name: str, role: str = "app", key: str | None = None) -> tuple[App, str]:
        """Create an app and return it with its key (shown once). With ``key``, (re)provision that key."""
        if not _APP_ID.match(name):
            raise BadRequest(f"app name {name!r} must match [a-z0-9][a-z0-9_-]{{0,63}}")
        if role not in ("app", "admin"):
            raise BadRequest(f"role must be 'app' or 'admin', not {role!r}")
        provision = key is not None
        key = key or new_key()
        now = dt.datetime.now(dt.UTC).isoformat()
        with self.db.tx() as conn:
            exists = conn.execute("SELECT app_id, role, key_hash, created_at FROM apps WHERE app_id=?",
                                  (name,)).fetchone()
            # the aws registry: a consistent GetItem of the app's item, then a transaction of its two items
            # (and the delete of the key it replaces)
            self._bill(reads=dynamodb_read_units(item_size(self._items(exists)[0]) if exists else 0))
            if exists and not provision:
                raise BadRequest(f"an app named {name!r} exists already")
            written = [*app_items(name, role, hash_key(key), now)]
            if exists and exists[2] != hash_key(key):
                written.append(self._items(exists)[1])
            self._bill(writes=sum(dynamodb_write_units(item_size(i), transactional=True) for i in written))
            conn.execute("DELETE FROM apps WHERE key_hash=? AND app_id<>?", (hash_key(key), name))
            conn.execute(
                "INSERT INTO apps VALUES (?, ?, ?, ?, ?) ON CONFLICT(app_id) DO UPDATE SET "
                "key_hash=excluded.key_hash, role=excluded.role",
                (name, name, role, hash_key(key), now),
            )
        return App(name, name, role), key

    def authenticate(self, key: str) -> App | None:
        row = self.db.conn().execute(
            "SELECT app_id, name, role FROM apps WHERE key_hash=?", (hash_key(key),)
        ).fetchone()
        # an eventually consistent GetItem of the key's item
        self._bill(reads=dynamodb_read_units(0 if row is None else item_size(app_items(row[0], row[2], hash_key(key),
                                                                                       "")[1]), consistent=False))
        return None if row is None else App(*row)

    def list(self) -> list[App]:
        rows = self.db.conn().execute("SELECT app_id, role, key_hash, created_at FROM apps ORDER BY app_id").fetchall()
        # an eventually consistent Scan of every item
        self._bill(reads=dynamodb_read_units(sum(item_size(i) for r in rows for i in self._items(r)), consistent=False))
        return [App(r[0], r[0], r[1]) for r in rows]
