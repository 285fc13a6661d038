"""Local stores in SQLite: leaderboard snapshots, user profiles, apps and their hashed keys.

Each store stands for the DynamoDB table of its aws adapter (``streamboard.adapters.aws.stores``), and counts
in ``usage`` the units that adapter's calls would be billed for the same work: the same items
(``streamboard.adapters.aws.items``), sized by DynamoDB's rule. Approximations: an update is billed by the
item's size after it (DynamoDB takes the larger of before and after, which is after here but when an update
removes attributes); a transaction cancelled by a condition is billed for all its items, as if written.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import re
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from streamboard.adapters.aws.items import Item, Key, app_items
from streamboard.adapters.local.sqlite import SqliteDB
from streamboard.boards import PagedBoards, no_operation
from streamboard.errors import BadRequest
from streamboard.keys import hash_key, new_key
from streamboard.ports import App, Board, BoardEntry, Profile
from streamboard.profiles import (
    CHALLENGE_SK,
    PROFILE_SK,
    Base,
    first_item,
    item_bytes,
    item_bytes_at_most,
    live_updates,
    needs_write,
    pending_challenges,
    reconcile_update,
    resolve,
)
from streamboard.usage import Usage, dynamodb_read_units, dynamodb_write_units, item_size

_BOARD_ITEMS = """
CREATE TABLE IF NOT EXISTS board_table (
  pk TEXT NOT NULL, sk TEXT NOT NULL, item TEXT NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY (pk, sk)
);
"""
# The tables of the layout before paged items (a snapshot's rows per board): a data dir that has them is moved
# to the items once, when a store opens it.
_OLD_BOARDS = ("boards", "snapshots", "entries", "board_items")


def _encode(item: Item) -> str:
    """An item as JSON text (binary attributes in base64)."""
    return msgspec.json.encode({k: {"B": base64.b64encode(v["B"]).decode()} if "B" in v else v
                                for k, v in item.items()}).decode()


def _decode(text: str) -> Item:
    return {k: {"B": base64.b64decode(v["B"])} if "B" in v else v for k, v in msgspec.json.decode(text).items()}


class SqliteItems:
    """The boards' DynamoDB table as a SQLite table of its items, each call billed (``usage``) as DynamoDB
    bills it: a GetItem by its item (the minimum when there is none), a BatchGetItem item by item, a Query by
    the items it read together, a PutItem by the larger of the item it replaces and the new one, a delete by
    the item it deletes (1 unit when there is none)."""

    def __init__(self, path: Path, usage: Usage | None = None) -> None:
        self.db = SqliteDB(path, _BOARD_ITEMS)
        self.usage = usage

    def operation(self, name: str, write: bool = False) -> contextlib.AbstractContextManager[None]:
        return no_operation()

    def _bill(self, *, reads: float = 0.0, writes: int = 0) -> None:
        if self.usage is not None:
            self.usage.add(dynamodb_read_units=reads, dynamodb_write_units=writes)

    def get(self, key: Key, *, consistent: bool) -> Item | None:
        row = self.db.conn().execute("SELECT item, bytes FROM board_table WHERE pk=? AND sk=?", key).fetchone()
        self._bill(reads=dynamodb_read_units(row[1] if row else 0, consistent=consistent))
        return None if row is None else _decode(row[0])

    def get_many(self, keys: Sequence[Key], *, consistent: bool) -> dict[Key, Item]:
        found: dict[Key, Item] = {}
        sizes: dict[Key, int] = {}
        wanted = {(k[0], k[1]) for k in keys}
        pks = sorted({k[0] for k in keys})
        conn = self.db.conn()
        conn.execute("BEGIN")  # one snapshot for the whole call
        try:
            for i in range(0, len(pks), 500):
                chunk = pks[i:i + 500]
                for pk, sk, text, size in conn.execute(f"SELECT pk, sk, item, bytes FROM board_table WHERE pk IN "
                                                       f"({', '.join('?' * len(chunk))})", chunk):
                    if (pk, sk) in wanted:
                        found[(pk, sk)], sizes[(pk, sk)] = _decode(text), size
        finally:
            conn.execute("COMMIT")
        # item by item, as BatchGetItem bills (a key not found costs the minimum)
        self._bill(reads=sum(dynamodb_read_units(sizes.get((k[0], k[1]), 0), consistent=consistent) for k in keys))
        return found

    def query(self, pk: str, *, consistent: bool) -> list[Item]:
        rows = self.db.conn().execute("SELECT item, bytes FROM board_table WHERE pk=? ORDER BY sk", (pk,)).fetchall()
        self._bill(reads=dynamodb_read_units(sum(r[1] for r in rows), consistent=consistent))
        return [_decode(r[0]) for r in rows]

    def put(self, item: Item) -> None:
        self.write_many([item], [])

    def put_if(self, item: Item, version: str | None) -> bool:
        key = (item["pk"]["S"], item["sk"]["S"])
        with self.db.tx() as conn:
            old = conn.execute("SELECT item, bytes FROM board_table WHERE pk=? AND sk=?", key).fetchone()
            stored = _decode(old[0]).get("version", {}).get("S") if old else None
            # billed like the put, whether its condition holds or not
            self._bill(writes=dynamodb_write_units(max(item_size(item), old[1] if old else 0)))
            if stored != version:
                return False
            conn.execute("INSERT INTO board_table VALUES (?, ?, ?, ?) ON CONFLICT(pk, sk) DO UPDATE SET "
                         "item=excluded.item, bytes=excluded.bytes", (*key, _encode(item), item_size(item)))
        return True

    def write_many(self, puts: Sequence[Item], deletes: Sequence[Key]) -> None:
        writes = 0
        rows = [(item["pk"]["S"], item["sk"]["S"], _encode(item), item_size(item)) for item in puts]
        with self.db.tx() as conn:
            if rows:
                old = self._sizes(conn, [(r[0], r[1]) for r in rows])
                writes += sum(dynamodb_write_units(max(r[3], old.get((r[0], r[1]), 0))) for r in rows)
                conn.executemany("INSERT INTO board_table VALUES (?, ?, ?, ?) ON CONFLICT(pk, sk) DO UPDATE SET "
                                 "item=excluded.item, bytes=excluded.bytes", rows)
            if deletes:
                old = self._sizes(conn, deletes)
                writes += sum(dynamodb_write_units(old.get((k[0], k[1]), 0)) for k in deletes)
                conn.executemany("DELETE FROM board_table WHERE pk=? AND sk=?", deletes)
        self._bill(writes=writes)

    @staticmethod
    def _sizes(conn: sqlite3.Connection, keys: Sequence[Key]) -> dict[Key, int]:
        """The stored sizes of those of ``keys`` that exist (what a put or a delete of them is billed by)."""
        found: dict[Key, int] = {}
        wanted = set(keys)
        pks = sorted({k[0] for k in keys})
        for i in range(0, len(pks), 500):
            chunk = pks[i:i + 500]
            for pk, sk, size in conn.execute(f"SELECT pk, sk, bytes FROM board_table WHERE pk IN "
                                             f"({', '.join('?' * len(chunk))})", chunk):
                if (pk, sk) in wanted:
                    found[(pk, sk)] = size
        return found


class LocalBoardStore(PagedBoards):
    """The paged boards (``streamboard.boards``) over a SQLite table of the items the aws store writes, each
    call billed as DynamoDB would bill it: the same layout, the same reads and writes, the same units."""

    def __init__(self, path: Path, usage: Usage | None = None, *, copies: int = 2, cache_seconds: float = 1.0,
                 **options: Any) -> None:
        super().__init__(SqliteItems(path, usage), copies=copies, cache_seconds=cache_seconds, **options)
        self._move_old_boards(path)

    def _move_old_boards(self, path: Path) -> None:
        """Write the boards of a data dir made before paged items as items, unbilled, and drop the old tables."""
        conn = sqlite3.connect(path, timeout=30)
        try:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "boards" not in names or "snapshots" not in names or "entries" not in names:
                return
            boards = []
            for snapshot_id, scope, window, as_of, refreshed_at in conn.execute(
                    "SELECT s.snapshot_id, b.scope, b.win, s.as_of, s.refreshed_at FROM boards b JOIN snapshots s "
                    "ON s.snapshot_id=b.snapshot_id ORDER BY b.scope, b.win").fetchall():
                rows = conn.execute("SELECT rank, user_id, user_name, score FROM entries WHERE snapshot_id=? "
                                    "ORDER BY rank, user_id", (snapshot_id,)).fetchall()
                boards.append(Board(scope, window, as_of, refreshed_at, tuple(BoardEntry(*r) for r in rows)))
        finally:
            conn.close()
        table = self.table
        assert isinstance(table, SqliteItems)
        usage, table.usage = table.usage, None
        try:
            self.replace_boards(boards)
        finally:
            table.usage = usage
        with table.db.tx() as tx:
            for name in _OLD_BOARDS:
                tx.execute(f"DROP TABLE IF EXISTS {name}")


_profile_json = msgspec.json.Encoder().encode
_profile_item = msgspec.json.Decoder(dict[str, Any]).decode

_PROFILES = """
CREATE TABLE IF NOT EXISTS profile_items (
  user_id TEXT NOT NULL, sk TEXT NOT NULL, item TEXT NOT NULL, PRIMARY KEY (user_id, sk)
);
"""


_UPSERT = ("INSERT INTO profile_items VALUES (?, ?, ?) "
           "ON CONFLICT(user_id, sk) DO UPDATE SET item=excluded.item")
# the aws store's condition on a challenge first (rb <= batch): a late or resumed batch never overwrites a later one
_UPSERT_UNLESS_LATER = (_UPSERT + " WHERE json_extract(profile_items.item, '$.rb') <= ?4")


class LocalProfileStore:
    """The profile items of :mod:`streamboard.profiles` in SQLite, one row per DynamoDB item (its attributes as
    JSON), updated as the aws store's ``UpdateItem`` calls would update them and billed by their sizes."""

    def __init__(self, path: Path, usage: Usage | None = None) -> None:
        self.db = SqliteDB(path, _PROFILES)
        self.usage = usage

    @staticmethod
    def _load(conn: sqlite3.Connection, user_id: str, sk: str) -> dict[str, Any] | None:
        row = conn.execute("SELECT item FROM profile_items WHERE user_id=? AND sk=?", (user_id, sk)).fetchone()
        return None if row is None else _profile_item(row[0])

    @staticmethod
    def _profile_texts(conn: sqlite3.Connection, users: Sequence[str]) -> dict[str, bytes]:
        """The profile items of many users as stored (their JSON), a few hundred a query."""
        out: dict[str, bytes] = {}
        for i in range(0, len(users), 500):
            chunk = users[i:i + 500]
            out.update(conn.execute(f"SELECT user_id, CAST(item AS BLOB) FROM profile_items WHERE sk=? "
                                    f"AND user_id IN ({','.join('?' * len(chunk))})", (PROFILE_SK, *chunk)))
        return out

    @classmethod
    def _load_profiles(cls, conn: sqlite3.Connection, users: Sequence[str]) -> dict[str, tuple[dict[str, Any], int]]:
        """The profile items of many users, with the length of each one's JSON."""
        return {u: (_profile_item(text), len(text)) for u, text in cls._profile_texts(conn, users).items()}

    def _row(self, user_id: str, sk: str, item: dict[str, Any]) -> tuple[tuple[str, str, str], int]:
        """An item's row, and the write units DynamoDB bills for writing it (by its size after)."""
        encoded = _profile_json(item)
        units = 0
        if self.usage is not None:
            units = (1 if item_bytes_at_most(user_id, sk, len(encoded)) <= 1024
                     else dynamodb_write_units(item_bytes(user_id, sk, item)))
        return (user_id, sk, encoded.decode()), units

    def apply(self, events: Sequence[dict[str, Any]], now: str) -> int:
        """The router's batch: one update per user with score events (the aws store's one UpdateItem each)."""
        updates = live_updates(events, now)
        writes = 0
        with self.db.tx() as conn:
            items = self._load_profiles(conn, list(updates))
            rows = []
            for user, upd in updates.items():
                item = upd.apply(items[user][0] if user in items else None)
                assert item is not None  # a live update has no condition
                row, units = self._row(user, PROFILE_SK, item)
                rows.append(row)
                writes += units
            conn.executemany(_UPSERT, rows)
        if self.usage is not None:
            self.usage.add(dynamodb_write_units=writes, profile_updates=len(updates))
        return len(updates)

    def _reconciled(self, user: str, base: Base, text: bytes | None, *, batch: int, cut: int, now: str
                    ) -> tuple[tuple[str, str, str] | None, int, float]:
        """One user's profile row after the reconcile (None: nothing to write), from the item as stored (its JSON,
        None: no item), and the write and read units it bills."""
        existing = None if text is None else _profile_item(text)
        json_bytes = 0 if text is None else len(text)
        reads = 0.0
        if self.usage is not None and existing is not None:
            bound = item_bytes_at_most(user, PROFILE_SK, json_bytes)
            reads = dynamodb_read_units(bound if bound <= 4096 else item_bytes(user, PROFILE_SK, existing),
                                        consistent=False)
        upd = reconcile_update(base, existing, batch=batch, cut=cut, now=now)
        if not base.firsts and not needs_write(user, existing, upd, json_bytes=json_bytes):
            return None, 0, reads
        item = upd.apply(existing)
        if item is not None:
            row, units = self._row(user, PROFILE_SK, item)
            return row, units, reads
        # a later batch wrote the item: the conditional write fails, and is billed too
        return None, (dynamodb_write_units(item_bytes(user, PROFILE_SK, existing))
                      if self.usage is not None and existing is not None else 0), reads

    def reconcile(self, bases: Mapping[str, Base], *, batch: int, cut: int, now: str) -> int:
        """A refresh's reconcile: per user, the challenge firsts it changed (unless a later batch wrote them),
        then the profile item (read first: an eventually consistent GetItem on AWS, for the names of what to
        remove). Written in bulk: a full build reconciles every player of the lake.

        Optimistic, as the aws store's conditional writes: the items are read and the updates computed without
        the database's write lock (two reconciles of a batch's parts compute side by side, and the router's
        live updates are not held up meanwhile); then, under the lock, each item is read again, and one that a
        live update changed since is reconciled again from what it holds now, before all are written."""
        users = sorted(bases)  # key order: SQLite's index takes sorted rows about twice as fast
        firsts: list[tuple[str, str, str, int]] = []
        writes, reads = 0, 0.0
        for user in users:
            base = bases[user]
            for challenge in sorted(base.firsts):  # in key order too, without sorting every first of a build at once
                first, units = self._row(user, CHALLENGE_SK + challenge, first_item(base.firsts[challenge], batch))
                firsts.append((*first, batch))
                writes += units  # billed whether its condition holds or not (the same size either way)
        seen = self._profile_texts(self.db.conn(), users)
        planned = {user: self._reconciled(user, bases[user], seen.get(user), batch=batch, cut=cut, now=now)
                   for user in users}
        with self.db.tx() as conn:
            now_texts = self._profile_texts(conn, users)
            rows: list[tuple[str, str, str]] = []
            for user in users:
                text = now_texts.get(user)
                row, units, read = planned[user] if text == seen.get(user) else \
                    self._reconciled(user, bases[user], text, batch=batch, cut=cut, now=now)
                if row is not None:
                    rows.append(row)
                writes += units
                reads += read
            conn.executemany(_UPSERT_UNLESS_LATER, firsts)
            conn.executemany(_UPSERT, rows)
        if self.usage is not None:
            self.usage.add(dynamodb_write_units=writes, dynamodb_read_units=reads, profile_reconciles=len(bases))
        return len(bases)

    def get(self, user_id: str) -> Profile | None:
        conn = self.db.conn()
        conn.execute("BEGIN")
        try:
            item = self._load(conn, user_id, PROFILE_SK)
            firsts: dict[str, tuple[str, str, str, int]] = {}
            read_bytes = 0 if item is None else item_bytes(user_id, PROFILE_SK, item)
            for challenge in pending_challenges(item or {}):
                first = self._load(conn, user_id, CHALLENGE_SK + challenge)
                if first is not None:
                    read_bytes += item_bytes(user_id, CHALLENGE_SK + challenge, first)
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
