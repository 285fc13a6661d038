"""Leaderboard query and writer Lambdas, and the pure logic between Athena rows and board snapshots.

The refresh is incremental (streamboard.refresh): a batch of SQL statements over the new partitions and
compact state.
query:  on the hourly schedule, after each crawl, and on demand, plans a batch (or resumes an unfinished
        one) and starts its first statement.
writer: on the Athena "Query State Change" event of each statement: records it, starts the next; after
        the board snapshot, replaces every board atomically with its rows; after the rank statement, writes
        every changed user's ranks (streamboard.ranks), all boards' in one new version.
Locally the same batch runs statement after statement (:func:`refresh_now`).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from streamboard.backend import Backend
from streamboard.errors import StreamboardError
from streamboard.ports import Board, BoardEntry
from streamboard.profiles import bases_from_rows
from streamboard.ranks import user_scores
from streamboard.refresh import (
    RANKS_STEP,
    SNAPSHOT_STEP,
    IncrementalRefresh,
    Plan,
    gc_paused,
    is_profiles_step,
    run_on,
    sql_ts,
    tag,
    untag,
)
from streamboard.registry import format_ts, utc_iso
from streamboard.sql import SQL_DIR

log = logging.getLogger("streamboard.leaderboards")

WINDOWS = ("all", "30d", "365d")
# The boards recomputed from the whole lake through the analyst views: what the incremental refresh's
# boards must equal (tests, and `streamboard sql` for an analyst who wants to check).
FULL_SNAPSHOT_QUERY = SQL_DIR / "queries" / "leaderboard_snapshot.sql"


def full_snapshot_sql(path: Path = FULL_SNAPSHOT_QUERY) -> str:
    return path.read_text().strip().rstrip(";")


def boards_from_rows(rows: list[dict[str, Any]], refreshed_at: str) -> list[Board]:
    """Group the snapshot query's rows into boards; a row with no user_id marks an empty board."""
    grouped: dict[tuple[str, str], list[BoardEntry]] = defaultdict(list)
    as_of: dict[tuple[str, str], Any] = {}
    for row in rows:
        key = (row["scope"], row["time_window"])
        as_of[key] = row["as_of"]  # formatted once per board below
        if row["user_id"] is not None:
            grouped[key].append(
                BoardEntry(int(row["board_rank"]), row["user_id"], row["user_name"], int(row["score"]))
            )
    return [
        Board(scope, window, utc_iso(as_of[(scope, window)]), refreshed_at,
              tuple(sorted(grouped[(scope, window)], key=lambda e: (e.rank, e.user_id))))
        for scope, window in sorted(as_of)
    ]


def write_boards(backend: Backend, rows: list[dict[str, Any]]) -> list[Board]:
    """Replace every board with a snapshot's rows (each board atomically)."""
    boards = boards_from_rows(rows, format_ts(dt.datetime.now(dt.UTC)))
    backend.boards.replace_boards(boards)
    return boards


def reconcile_profiles(backend: Backend, plan: Plan, rows: list[dict[str, Any]]) -> int:
    """Set every profile a batch covered to what the lake holds (``streamboard.profiles``); returns how many.
    A full build reconciles every player (:func:`gc_paused`)."""
    with gc_paused():
        return backend.profiles.reconcile(bases_from_rows(rows), batch=plan.batch, cut=plan.profile_cut,
                                          now=format_ts(dt.datetime.now(dt.UTC)))


# The local refresh's reconcile processes: a full build's parts are written two at a time (with the refresh's own
# queries and the ranks' write, three streams on two cores); an incremental batch's one part needs one.
RECONCILE_PROCESSES = 2


def reconcile_worker(backend: Backend, processes: int = 1) -> Any:
    """Worker processes for this backend's profiles (:mod:`streamboard.runtime.reconcile_worker`): the local
    store's only (None for any other)."""
    from streamboard.adapters.local.stores import LocalProfileStore
    from streamboard.runtime.reconcile_worker import ReconcileWorker
    from streamboard.usage import Usage

    if not isinstance(backend.profiles, LocalProfileStore):
        return None
    usage = backend.usage.db.path if isinstance(backend.usage, Usage) else None
    return ReconcileWorker(backend.profiles.db.path, usage, processes)


def write_ranks(backend: Backend, plan: Plan, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Write a batch's ranks from its rank statement's rows (``streamboard.ranks``): the users it changed,
    stepped onto the store's ranks of the batch before, or every user, built again (the cycle collector
    paused: :func:`gc_paused`)."""
    # a batch that changed many users read every user's rows (the statement's ``everyone``): a build then
    everyone = bool(rows) and str(rows[0].get("everyone")).lower() == "true"
    rebuild = plan.ranks_rebuild or everyone
    with gc_paused():  # every node read and written is acyclic: the collector would only rescan them
        users = user_scores(rows)
        written = backend.ranks.write(users, batch=plan.batch, plan=f"{plan.batch}@{sql_ts(plan.started_at)}",
                                      rebuild=rebuild, base_batch=plan.ranks_from,
                                      as_of=utc_iso(plan.as_of), refreshed_at=format_ts(dt.datetime.now(dt.UTC)))
    if backend.usage is not None:  # billed by the table as it wrote them: here said whose they were
        backend.usage.add(dynamodb_write_units_ranks=written.get("write_units", 0))
    return {"users": len(users), "rebuild": rebuild, **written}


def refresher(backend: Backend, *, create_state: bool = True, **options: Any) -> IncrementalRefresh:
    """The incremental refresh over the backend's refresh engine and the score table's partitions."""
    engine = backend.refresh_query or backend.query
    s = backend.settings
    options.setdefault("reconcile", lambda plan, rows: reconcile_profiles(backend, plan, rows))
    options.setdefault("ranks", lambda plan, rows: write_ranks(backend, plan, rows))
    options.setdefault("ranks_base", backend.ranks.built_batch)
    return IncrementalRefresh(run_on(engine), lambda: backend.catalog.partitions("score"),
                              horizon_days=s.dedupe_horizon_days, max_arrival_delay_days=s.max_arrival_delay_days,
                              create_state=create_state,
                              reconcile_parts=(s.profile_reconcile_parts, s.profile_reconcile_parts_full), **options)


def refresh_now(backend: Backend, *, full: bool = False, **options: Any) -> dict[str, Any]:
    """Run (or resume) a refresh batch to its end; its boards are written as soon as its snapshot ran (before
    the per-player writes, as the writer does on AWS): the local runtime's refresh. The summary says when
    (``boards_published_s``, seconds from the start)."""
    begun = time.monotonic()
    read_before = _bytes_read()
    engine = backend.refresh_query or backend.query
    billed_before = getattr(engine, "billed_bytes", 0)
    ranks: dict[str, Any] = {}
    profiles = {"players": 0, "parts": 0, "seconds": 0.0}

    def rank_write(plan: Plan, rows: list[dict[str, Any]]) -> None:
        started = time.monotonic()
        ranks.update(write_ranks(backend, plan, rows), seconds=round(time.monotonic() - started, 3))

    worker: list[Any] = []  # made with the first batch large enough to want it

    def counted(players: int, seconds: float) -> int:
        profiles["players"] += players
        profiles["parts"] += 1
        profiles["seconds"] = round(profiles["seconds"] + seconds, 3)
        return players

    def profile_write(plan: Plan, rows: list[dict[str, Any]]) -> Any:
        if len(rows) >= backend.settings.profile_reconcile_worker_rows and not worker:
            worker.append(reconcile_worker(backend, RECONCILE_PROCESSES))
        if worker and worker[0] is not None:  # it waits while each of its processes has a part
            return _Counted(worker[0].submit(rows, plan.batch, plan.profile_cut))
        started = time.monotonic()
        counted(reconcile_profiles(backend, plan, rows), time.monotonic() - started)
        return None

    class _Counted:  # the worker's part: counted in the summary when the refresh waits for it
        def __init__(self, future: Any) -> None:
            self.future, self.counted = future, False

        def result(self) -> int:
            players, seconds, peak_kb = self.future.result()
            if not self.counted:
                self.counted = True
                counted(players, seconds)
                profiles["worker_peak_rss_mb"] = max(profiles.get("worker_peak_rss_mb", 0), round(peak_kb / 1024, 1))
            return int(players)

    published: dict[str, Any] = {}

    def publish(plan: Plan, rows: list[dict[str, Any]]) -> None:  # every batch runs its snapshot, a rerun too
        published.update(boards=write_boards(backend, rows), at=round(time.monotonic() - begun, 3))

    options.setdefault("ranks", rank_write)
    options.setdefault("reconcile", profile_write)
    try:
        result = refresher(backend, boards=publish, **options).refresh(full=full)
    finally:
        if worker and worker[0] is not None:
            worker[0].close()
    boards = published["boards"]
    shown = ("users", "rebuild", "nodes", "write_units", "delta_rows", "folded", "seconds")
    # what the per-player writes took (the steps' times are the queries' only): the profiles' reconcile writes
    # and the ranks' write, each after its query
    summary = {**result.summary(), "boards": len(boards), "boards_published_s": published["at"],
               **({"profiles": profiles} if profiles["parts"] else {}),
               **({"ranks": {k: ranks[k] for k in shown if k in ranks}} if ranks else {})}
    if backend.usage is not None:
        # on AWS: the query Lambda starts the first statement, the writer runs on each one's state change
        backend.usage.finish_refresh(getattr(engine, "billed_bytes", 0) - billed_before, 1 + len(result.steps))
    if read_before is not None:  # what the local engine read from the lake and its state (Athena bills bytes)
        summary["bytes_read"] = (_bytes_read() or 0) - read_before
    return summary


def _bytes_read() -> int | None:
    """Bytes this process has read from files so far (Linux), or None where the kernel does not say."""
    try:
        with open("/proc/self/io") as io:
            return next(int(line.split()[1]) for line in io if line.startswith("rchar:"))
    except (OSError, StopIteration, ValueError):
        return None


# --- on AWS: a chain of Athena queries, each started when the one before it succeeded ------------------------


def start_chain(backend: Backend, *, full: bool = False, now: dt.datetime | None = None) -> str:
    """Plan (or resume) a batch and start its first unfinished statement; return the query id. Every later
    statement is started by :func:`advance_chain` on the state-change event of the one before."""
    chain = refresher(backend, create_state=False)
    plan, finished, resumed = chain.plan(full=full, now=now)
    todo = [st for st in chain.sequence(plan) if st.name not in finished]
    query_id = backend.query.start_query(tag(plan, todo[0].name, todo[0].sql))
    log.info("refresh batch %d %s at %s: %s", plan.batch, "resumed" if resumed else "started", todo[0].name, query_id)
    return query_id


def advance_chain(backend: Backend, query_id: str) -> dict[str, Any]:
    """After a statement of a refresh succeeded: record it, write the boards after the snapshot, and start
    the next statement. Returns what happened."""
    status = backend.query.status(query_id)
    tagged = untag(status.sql)
    if tagged is None:
        return {"query_id": query_id, "state": status.state, "refresh": None}
    plan, name = tagged
    chain = refresher(backend, create_state=False)
    sequence = chain.sequence(plan)
    names = [st.name for st in sequence]
    done = {"query_id": query_id, "state": status.state, "batch": plan.batch, "step": name}
    if name == SNAPSHOT_STEP:
        done["boards"] = len(write_boards(backend, backend.query.results(query_id)))
    if is_profiles_step(name):
        done["profiles"] = reconcile_profiles(backend, plan, backend.query.results(query_id))
    if name == RANKS_STEP:
        done["ranks"] = write_ranks(backend, plan, backend.query.results(query_id))
    if name == "done":
        return done
    current = sequence[names.index(name)]
    if current.marks:  # recorded on AWS too, so that a batch that failed half way resumes where it stopped
        chain.run(chain.record_sql(plan, name))
    following = sequence[names.index(name) + 1]
    done["next_query_id"] = backend.query.start_query(tag(plan, following.name, following.sql))
    return done


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


def query_handle(event: dict[str, Any], backend: Backend) -> dict[str, Any]:
    """The hourly schedule, the crawl's end, or an admin: start (or resume) a refresh batch, as of the
    event's time (EventBridge stamps it) or now."""
    stamp = event.get("time")
    now = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")) if isinstance(stamp, str) else None
    return {"query_ids": [start_chain(backend, full=bool(event.get("full")), now=now)]}


def writer_handle(event: dict[str, Any], backend: Backend) -> dict[str, Any]:
    """Athena's state-change event of a refresh statement: on success the chain goes on; on failure the
    boards keep their last snapshot and the next refresh resumes the batch."""
    detail = event.get("detail", {})
    query_id, state = detail.get("queryExecutionId"), detail.get("currentState")
    if state != "SUCCEEDED":
        try:
            reason = backend.query.status(query_id).reason if query_id else None
        except StreamboardError:  # the engine no longer knows the query: the event is all we have
            reason = None
        log.error("refresh query %s ended %s: %s; boards keep their last snapshot, the next refresh resumes",
                  query_id, state, reason)
        return {"query_id": query_id, "state": state, "boards": 0, "reason": reason}
    return advance_chain(backend, query_id)


def query_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from processors.deployed import backend

    return query_handle(event, backend())


def writer_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from processors.deployed import backend

    return writer_handle(event, backend())
