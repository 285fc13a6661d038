"""Local stores in SQLite: leaderboard snapshots, user profiles, apps and their hashed keys.

Each store stands for the DynamoDB table of its aws adapter (``streamboard.adapters.aws.stores``), and counts
in ``usage`` the units that adapter's calls would be billed for the same work: the same items
(``streamboard.adapters.aws.items``), sized by DynamoDB's rule. Approximations: an update is billed by the
item's size after it (DynamoDB takes the larger of before and after, which is after here but for a total
going down); a transaction cancelled by a condition is billed for all its items, as if written; dedupe
markers are sized with a 10-digit expiry.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamboard.adapters.aws.items import (
    app_items,
    board_item,
    category_item,
    challenge_item,
    profile_item,
    seen_item,
)
from streamboard.adapters.local.sqlite import SqliteDB
from streamboard.errors import BadRequest
from streamboard.keys import hash_key, new_key
from streamboard.ports import App, Board, BoardEntry, Profile
from streamboard.usage import Usage, dynamodb_read_units, dynamodb_write_units, item_size

PLAIN_PER_TRANSACTION = 40  # as the aws profile store groups events without a challenge

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
CREATE TABLE IF NOT EXISTS seen_events (event_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS profiles (
  user_id TEXT PRIMARY KEY, total INTEGER NOT NULL, updated_at TEXT,
  user_name TEXT, name_ts TEXT, name_event_id TEXT
);
CREATE TABLE IF NOT EXISTS profile_categories (
  user_id TEXT NOT NULL, category TEXT NOT NULL, points INTEGER NOT NULL, PRIMARY KEY (user_id, category)
);
CREATE TABLE IF NOT EXISTS challenges (
  user_id TEXT NOT NULL, challenge_id TEXT NOT NULL, ts TEXT NOT NULL, event_id TEXT NOT NULL,
  category TEXT NOT NULL, points INTEGER NOT NULL, PRIMARY KEY (user_id, challenge_id)
);
"""


@dataclass
class _UserCalls:
    """One user's events of a batch as the aws profile store turns them into calls (to bill them)."""

    plain: list[tuple[str, str, bool]] = field(default_factory=list)  # (event_id, category, not seen before)
    # one transaction per challenged event: its marker's event_id, a challenge item's size (0: none), categories
    challenged: list[tuple[str, int, tuple[str, ...]]] = field(default_factory=list)
    read_bytes: list[int] = field(default_factory=list)  # a consistent GetItem of a challenge item each
    named: bool = False
    ids: set[str] = field(default_factory=set)


class LocalProfileStore:
    """Near-real-time totals with the leaderboards' semantics: an event_id counts once, a challenge counts
    only its first completion (earliest ts, then smallest event_id), even when events arrive out of order."""

    def __init__(self, path: Path, usage: Usage | None = None) -> None:
        self.db = SqliteDB(path, _PROFILES)
        self.usage = usage

    def apply(self, events: Sequence[dict[str, Any]], now: str) -> int:
        applied = 0
        calls: dict[str, _UserCalls] = {}
        with self.db.tx() as conn:
            for ev in events:
                if ev.get("event_type") != "score":
                    continue
                user, cat, pts = ev["user_id"], ev["category"], int(ev["points"])
                challenge = ev.get("challenge_id")
                prev = None if challenge is None else conn.execute(
                    "SELECT ts, event_id, category, points FROM challenges WHERE user_id=? AND challenge_id=?",
                    (user, challenge),
                ).fetchone()
                cur = conn.execute("INSERT OR IGNORE INTO seen_events VALUES (?)", (ev["event_id"],))
                self._note(calls.setdefault(user, _UserCalls()), ev, prev, fresh=cur.rowcount > 0)
                if cur.rowcount == 0:
                    continue  # delivered before
                applied += 1
                self._ensure_profile(conn, user, now)
                if challenge is not None:
                    key = (ev["ts"], ev["event_id"])
                    if prev is not None and (prev[0], prev[1]) <= key:
                        self._name(conn, ev)
                        continue  # a later completion of a challenge already counted
                    if prev is not None:
                        self._add(conn, user, prev[2], -prev[3], now)
                    conn.execute(
                        "INSERT OR REPLACE INTO challenges VALUES (?, ?, ?, ?, ?, ?)",
                        (user, challenge, ev["ts"], ev["event_id"], cat, pts),
                    )
                self._add(conn, user, cat, pts, now)
                self._name(conn, ev)
            billed = self._bill(conn, calls) if self.usage is not None else None
        if self.usage is not None and billed is not None:
            self.usage.add(dynamodb_write_units=billed[0], dynamodb_read_units=billed[1])
        return applied

    @staticmethod
    def _note(calls: _UserCalls, ev: dict[str, Any], prev: Any, fresh: bool) -> None:
        """Note the calls the aws store makes for this event (it drops an event_id seen twice in one batch)."""
        if ev["event_id"] in calls.ids:
            return
        calls.ids.add(ev["event_id"])
        calls.named = calls.named or ev.get("user_name") is not None
        challenge = ev.get("challenge_id")
        if challenge is None:
            calls.plain.append((ev["event_id"], ev["category"], fresh))
            return
        item = challenge_item(ev["user_id"], challenge, f"{ev['ts']}#{ev['event_id']}", ev["category"],
                              int(ev["points"]))
        calls.read_bytes.append(0 if prev is None else item_size(challenge_item(
            ev["user_id"], challenge, f"{prev[0]}#{prev[1]}", prev[2], int(prev[3]))))
        if prev is not None and (prev[0], prev[1]) <= (ev["ts"], ev["event_id"]):
            calls.challenged.append((ev["event_id"], 0, ()))  # a later completion: only the marker
        else:
            cats = (ev["category"],) if prev is None or prev[2] == ev["category"] else (ev["category"], prev[2])
            calls.challenged.append((ev["event_id"], item_size(item), cats))

    @classmethod
    def _bill(cls, conn: sqlite3.Connection, calls: dict[str, _UserCalls]) -> tuple[int, float]:
        """The write and read units of the aws store's calls for a batch, with the items' sizes after it."""
        expires = str(int(time.time()) + 30 * 86400)
        writes, reads = 0, 0.0
        for user, c in calls.items():
            w, r = cls._bill_user(conn, user, c, expires)
            writes, reads = writes + w, reads + r
        return writes, reads

    @staticmethod
    def _bill_user(conn: sqlite3.Connection, user: str, c: _UserCalls, expires: str) -> tuple[int, float]:
        row = conn.execute("SELECT total, updated_at, user_name, name_ts, name_event_id FROM profiles "
                           "WHERE user_id=?", (user,)).fetchone()
        name_key = None if row is None or row[3] is None else f"{row[3]}#{row[4]}"
        profile = dynamodb_write_units(item_size(profile_item(user, 0, None) if row is None else
                                                 profile_item(user, row[0], row[1], row[2], name_key)),
                                       transactional=True)
        points = dict(conn.execute("SELECT category, points FROM profile_categories WHERE user_id=?", (user,)))

        def tx(markers: list[str], cats: set[str], extra: int = 0) -> int:
            """A transaction: the markers, and the total and category updates when points move."""
            marker_units = sum(dynamodb_write_units(item_size(seen_item(e, expires)), transactional=True)
                               for e in markers)
            cat_units = sum(dynamodb_write_units(item_size(category_item(user, k, points.get(k, 0))),
                                                 transactional=True) for k in cats)
            return marker_units + (profile + cat_units if cats else 0) + extra

        writes = 0
        for i in range(0, len(c.plain), PLAIN_PER_TRANSACTION):
            chunk = c.plain[i:i + PLAIN_PER_TRANSACTION]
            writes += tx([e for e, _, _ in chunk], {k for _, k, _ in chunk})
            fresh = [(e, k) for e, k, new in chunk if new]
            if fresh and len(fresh) < len(chunk):  # cancelled by the seen markers: again without them
                writes += tx([e for e, _ in fresh], {k for _, k in fresh})
        for event_id, challenge_bytes, cats in c.challenged:
            writes += tx([event_id], set(cats),
                         dynamodb_write_units(challenge_bytes, transactional=True) if challenge_bytes else 0)
        if c.named:
            writes += profile // 2  # one UpdateItem of the profile item, outside a transaction: half
        return writes, sum(dynamodb_read_units(n) for n in c.read_bytes)

    @staticmethod
    def _ensure_profile(conn: Any, user: str, now: str) -> None:
        conn.execute("INSERT OR IGNORE INTO profiles (user_id, total, updated_at) VALUES (?, 0, ?)", (user, now))

    @staticmethod
    def _add(conn: Any, user: str, category: str, points: int, now: str) -> None:
        conn.execute("UPDATE profiles SET total=total+?, updated_at=? WHERE user_id=?", (points, now, user))
        conn.execute(
            "INSERT INTO profile_categories VALUES (?, ?, ?) ON CONFLICT(user_id, category) "
            "DO UPDATE SET points=points+excluded.points",
            (user, category, points),
        )

    @staticmethod
    def _name(conn: Any, ev: dict[str, Any]) -> None:
        if ev.get("user_name") is None:
            return
        conn.execute(
            "UPDATE profiles SET user_name=?, name_ts=?, name_event_id=? WHERE user_id=? AND "
            "(name_ts IS NULL OR name_ts < ? OR (name_ts = ? AND name_event_id < ?))",
            (ev["user_name"], ev["ts"], ev["event_id"], ev["user_id"], ev["ts"], ev["ts"], ev["event_id"]),
        )

    def get(self, user_id: str) -> Profile | None:
        conn = self.db.conn()
        conn.execute("BEGIN")
        try:
            if self.usage is not None:  # a strongly consistent Query of the user's items
                self.usage.add(dynamodb_read_units=dynamodb_read_units(self._user_bytes(conn, user_id)))
            row = conn.execute(
                "SELECT total, updated_at, user_name FROM profiles WHERE user_id=?", (user_id,)
            ).fetchone()
            cats = conn.execute(
                "SELECT category, points FROM profile_categories WHERE user_id=? AND points<>0 ORDER BY category",
                (user_id,),
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        if row is None:
            return None
        return Profile(user_id, int(row[0]), {c: int(p) for c, p in cats}, row[1], row[2])

    @staticmethod
    def _user_bytes(conn: sqlite3.Connection, user_id: str) -> int:
        """The size of a user's items: the profile, one per category, one per challenge completed."""
        row = conn.execute("SELECT total, updated_at, user_name, name_ts, name_event_id FROM profiles "
                           "WHERE user_id=?", (user_id,)).fetchone()
        if row is None:
            return 0
        size = item_size(profile_item(user_id, row[0], row[1], row[2],
                                      None if row[3] is None else f"{row[3]}#{row[4]}"))
        for cat, pts in conn.execute("SELECT category, points FROM profile_categories WHERE user_id=?", (user_id,)):
            size += item_size(category_item(user_id, cat, pts))
        for ch, ts, eid, cat, pts in conn.execute(
                "SELECT challenge_id, ts, event_id, category, points FROM challenges WHERE user_id=?", (user_id,)):
            size += item_size(challenge_item(user_id, ch, f"{ts}#{eid}", cat, pts))
        return size


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
