"""Leaderboard query and writer Lambdas, and the pure logic between Athena rows and board snapshots.

query:  on the hourly schedule, after each crawl, and on demand, starts the snapshot query.
writer: on the Athena "Query State Change" event of that query (SUCCEEDED), reads the rows and
        replaces every board atomically.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

from streamboard.backend import Backend
from streamboard.errors import StreamboardError
from streamboard.ports import Board, BoardEntry
from streamboard.registry import format_ts, utc_iso
from streamboard.sql import SQL_DIR

log = logging.getLogger("streamboard.leaderboards")

WINDOWS = ("all", "30d", "365d")
SNAPSHOT_QUERY = SQL_DIR / "queries" / "leaderboard_snapshot.sql"


def snapshot_sql(path: Path = SNAPSHOT_QUERY) -> str:
    return path.read_text().strip().rstrip(";")


def boards_from_rows(rows: list[dict[str, Any]], refreshed_at: str) -> list[Board]:
    """Group the snapshot query's rows into boards; a row with no user_id marks an empty board."""
    grouped: dict[tuple[str, str], list[BoardEntry]] = defaultdict(list)
    as_of: dict[tuple[str, str], str | None] = {}
    for row in rows:
        key = (row["scope"], row["time_window"])
        as_of[key] = utc_iso(row["as_of"])
        if row["user_id"] is not None:
            grouped[key].append(
                BoardEntry(int(row["board_rank"]), row["user_id"], row["user_name"], int(row["score"]))
            )
    return [
        Board(scope, window, as_of[(scope, window)], refreshed_at,
              tuple(sorted(grouped[(scope, window)], key=lambda e: (e.rank, e.user_id))))
        for scope, window in sorted(as_of)
    ]


def start_refresh(backend: Backend) -> str:
    """Start the snapshot query; return its query id."""
    query_id = backend.query.start_query(snapshot_sql())
    log.info("leaderboard query started: %s", query_id)
    return query_id


def write_snapshot(backend: Backend, query_id: str) -> list[Board]:
    """Read a finished snapshot query and replace every board with it."""
    rows = backend.query.results(query_id)
    boards = boards_from_rows(rows, format_ts(dt.datetime.now(dt.UTC)))
    backend.boards.replace_boards(boards)
    return boards


def query_handle(event: dict[str, Any], backend: Backend) -> dict[str, Any]:
    return {"query_ids": [start_refresh(backend)]}


def state_change_event(query_id: str, state: str, workgroup: str = "streamboard") -> dict[str, Any]:
    """The EventBridge event Athena emits when a query changes state."""
    return {
        "version": "0",
        "id": query_id,
        "detail-type": "Athena Query State Change",
        "source": "aws.athena",
        "account": "000000000000",
        "time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "local",
        "resources": [],
        "detail": {
            "currentState": state,
            "previousState": "RUNNING",
            "queryExecutionId": query_id,
            "sequenceNumber": "3",
            "statementType": "DML",
            "versionId": "0",
            "workgroupName": workgroup,
        },
    }


def writer_handle(event: dict[str, Any], backend: Backend) -> dict[str, Any]:
    detail = event.get("detail", {})
    query_id, state = detail.get("queryExecutionId"), detail.get("currentState")
    if state != "SUCCEEDED":
        try:
            reason = backend.query.status(query_id).reason if query_id else None
        except StreamboardError:  # the engine no longer knows the query: the event is all we have
            reason = None
        log.error("leaderboard query %s ended %s: %s; boards keep their last snapshot", query_id, state, reason)
        return {"query_id": query_id, "state": state, "boards": 0, "reason": reason}
    boards = write_snapshot(backend, query_id)
    return {"query_id": query_id, "state": state, "boards": len(boards)}


def query_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from processors.deployed import backend

    return query_handle(event, backend())


def writer_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from processors.deployed import backend

    return writer_handle(event, backend())
