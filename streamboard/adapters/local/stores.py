"""Local stores in SQLite: leaderboard snapshots, user profiles, apps and their hashed keys."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streamboard.adapters.local.sqlite import SqliteDB
from streamboard.errors import BadRequest
from streamboard.keys import hash_key, new_key
from streamboard.ports import App, Board, BoardEntry, Profile

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
"""


class LocalBoardStore:
    """Each board points at one snapshot; a replace writes the new snapshot and swaps the pointer in one
    transaction, so a reader sees the old snapshot or the new one, never a mix."""

    def __init__(self, path: Path) -> None:
        self.db = SqliteDB(path, _BOARDS)

    def replace_boards(self, boards: Sequence[Board]) -> None:
        with self.db.tx() as conn:
            for b in boards:
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

    def get_board(self, scope: str, window: str, limit: int) -> Board | None:
        conn = self.db.conn()
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
        return [r[0] for r in self.db.conn().execute("SELECT DISTINCT scope FROM boards ORDER BY scope")]

    def ranks_for(self, user_id: str) -> list[dict[str, Any]]:
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


class LocalProfileStore:
    """Near-real-time totals with the leaderboards' semantics: an event_id counts once, a challenge counts
    only its first completion (earliest ts, then smallest event_id), even when events arrive out of order."""

    def __init__(self, path: Path) -> None:
        self.db = SqliteDB(path, _PROFILES)

    def apply(self, events: Sequence[dict[str, Any]], now: str) -> int:
        applied = 0
        with self.db.tx() as conn:
            for ev in events:
                if ev.get("event_type") != "score":
                    continue
                cur = conn.execute("INSERT OR IGNORE INTO seen_events VALUES (?)", (ev["event_id"],))
                if cur.rowcount == 0:
                    continue  # delivered before
                applied += 1
                user, cat, pts = ev["user_id"], ev["category"], int(ev["points"])
                self._ensure_profile(conn, user, now)
                challenge = ev.get("challenge_id")
                if challenge is not None:
                    prev = conn.execute(
                        "SELECT ts, event_id, category, points FROM challenges WHERE user_id=? AND challenge_id=?",
                        (user, challenge),
                    ).fetchone()
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
        return applied

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


_APPS = """
CREATE TABLE IF NOT EXISTS apps (
  app_id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL
);
"""
_APP_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class LocalAppRegistry:
    def __init__(self, path: Path) -> None:
        self.db = SqliteDB(path, _APPS)

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
            exists = conn.execute("SELECT 1 FROM apps WHERE app_id=?", (name,)).fetchone()
            if exists and not provision:
                raise BadRequest(f"an app named {name!r} exists already")
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
        return None if row is None else App(*row)

    def list(self) -> list[App]:
        return [App(*r) for r in self.db.conn().execute("SELECT app_id, name, role FROM apps ORDER BY app_id")]
