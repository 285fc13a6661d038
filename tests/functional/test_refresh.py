"""The incremental refresh (streamboard.refresh) against a recomputation from the whole lake and a plain-
Python oracle: after every refresh of any sequence of arrivals (duplicates inside and beyond the dedupe
horizon, late events, late partitions, a challenge completed again with an earlier ts arriving later, name
changes, events exactly on window boundaries), the boards are the same three ways. A refresh stopped
after any statement and run again gives the same boards.

Rows go the way production data goes: Parquet files in the lake's arrival partitions, registered in the
catalog, read by the SQL steps on DuckDB.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from processors import leaderboards
from processors.leaderboards import full_snapshot_sql
from streamboard.adapters.local.catalog import LocalCatalog
from streamboard.adapters.local.lake import LocalLake
from streamboard.adapters.local.query import LocalQueryEngine
from streamboard.adapters.local.stores import SqliteItems
from streamboard.backend import Backend, build_local_backend
from streamboard.ports import Partition
from streamboard.ranks import RankTrees, user_scores
from streamboard.refresh import IncrementalRefresh, Plan, RefreshResult, run_on, sql_ts, state_tables
from streamboard.registry import REGISTRY
from streamboard.runtime.crawler import ensure_tables
from streamboard.runtime.firehose import to_parquet
from streamboard.settings import Settings
from tests import rank_oracle

HORIZON = dt.timedelta(days=30)
MS = dt.timedelta(milliseconds=1)
START = dt.datetime(2026, 3, 1, 0, 30)
USERS = ("ann", "bob", "cy", "dee")
CATEGORIES = ("chess", "go")
WINDOW_DAYS = {"all": None, "30d": 30, "365d": 365}

Row = tuple[Any, ...]


# --- the oracle: DESIGN section 5 in plain Python ------------------------------------------------------------


def oracle(deliveries: list[dict[str, Any]], as_of: dt.datetime) -> set[Row]:
    """Every board's rows (scope, window, rank, user_id, user_name, score; an empty board one row of Nones)."""
    totals, names = oracle_totals(deliveries, as_of)
    rows: set[Row] = set()
    for (scope, window), board in totals.items():
        ordered = sorted(board.items(), key=lambda kv: (-kv[1], kv[0]))
        if not ordered:
            rows.add((scope, window, None, None, None, None))
        for user, points in ordered:
            rank = 1 + sum(1 for _, p in ordered if p > points)
            if rank <= 1000:
                rows.add((scope, window, rank, user, names.get(user), points))
    return rows


def oracle_totals(deliveries: list[dict[str, Any]], as_of: dt.datetime
                  ) -> tuple[dict[tuple[str, str], dict[str, int]], dict[str, str]]:
    """Every board's scores (scope, window) -> user -> points, and each user's latest name."""
    by_id: dict[str, dict[dt.datetime, dict[str, Any]]] = defaultdict(dict)
    for d in deliveries:
        by_id[d["event_id"]].setdefault(d["received_at"], d)  # copies of one delivery are one
    counted: list[dict[str, Any]] = []
    for copies in by_id.values():
        previous = None
        for received in sorted(copies):
            if previous is None or received - previous > HORIZON:
                counted.append(copies[received])
            previous = received
    firsts: dict[tuple[str, str], dict[str, Any]] = {}
    for e in counted:
        if e["challenge_id"] is not None:
            key = (e["user_id"], e["challenge_id"])
            if key not in firsts or (e["ts"], e["event_id"]) < (firsts[key]["ts"], firsts[key]["event_id"]):
                firsts[key] = e
    scoring = [e for e in counted if e["challenge_id"] is None] + list(firsts.values())
    names: dict[str, tuple[dt.datetime, str, str]] = {}
    for e in by_id.values():
        for d in e.values():
            if d["user_name"] is not None:
                names[d["user_id"]] = max(names.get(d["user_id"], (dt.datetime.min, "", "")),
                                          (d["ts"], d["event_id"], d["user_name"]))
    boards: dict[tuple[str, str], dict[str, int]] = {}
    for scope in {"overall"} | {e["category"] for e in scoring}:
        for window, days in WINDOW_DAYS.items():
            totals: dict[str, int] = defaultdict(int)
            for e in scoring:
                in_scope = scope == "overall" or e["category"] == scope
                in_window = e["ts"] <= as_of and (days is None or e["ts"] > as_of - dt.timedelta(days=days))
                if in_scope and in_window:
                    totals[e["user_id"]] += e["points"]
            boards[(scope, window)] = dict(totals)
    return boards, {user: name for user, (_, _, name) in names.items()}


def oracle_ranks(deliveries: list[dict[str, Any]], as_of: dt.datetime) -> dict[str, list[dict[str, Any]]]:
    """What GET /v1/users lists as ranks, per user."""
    boards, names = oracle_totals(deliveries, as_of)
    scores: dict[str, dict[tuple[str, str], int]] = defaultdict(dict)
    for board, totals in boards.items():
        for user, points in totals.items():
            scores[user][board] = points
    return rank_oracle.ranks(rank_oracle.boards(scores, names))


def rank_store(path: Path) -> tuple[RankTrees, dict[str, Any]]:
    """A rank store in its own SQLite file, and the refresh's options that write it (the writer's part)."""
    store = RankTrees(SqliteItems(path), cache_seconds=0)

    def write(plan: Plan, rows: list[dict[str, Any]]) -> None:
        store.write(user_scores(rows), batch=plan.batch, plan=f"{plan.batch}@{plan.started_at}",
                    rebuild=plan.ranks_rebuild, base_batch=plan.ranks_from, as_of=None, refreshed_at=None)

    return store, {"ranks": write, "ranks_base": store.built_batch}


def store_ranks(store: RankTrees) -> dict[str, list[dict[str, Any]]]:
    return {u: got for u in USERS if (got := store.ranks_for(u))}


def as_rows(snapshot: list[dict[str, Any]]) -> set[Row]:
    return {(r["scope"], r["time_window"], r["board_rank"], r["user_id"], r["user_name"], r["score"])
            for r in snapshot}


# --- a lake with a simulated clock ---------------------------------------------------------------------------


@dataclass
class SimLake:
    """A lake whose partitions the test writes and registers at simulated times; the refresh runs on it."""

    root: Path
    lake: LocalLake = field(init=False)
    catalog: LocalCatalog = field(init=False)
    registered: dict[tuple[str, ...], float] = field(default_factory=dict)  # partition -> simulated time
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    files: int = 0

    def __post_init__(self) -> None:
        self.lake = LocalLake(self.root / "lake")
        self.catalog = LocalCatalog(self.root / "catalog.db")
        ensure_tables(self.catalog, REGISTRY)

    def arrive(self, rows: list[dict[str, Any]], hour: dt.datetime, now: dt.datetime) -> None:
        values = (f"{hour:%Y}", f"{hour:%m}", f"{hour:%d}", f"{hour:%H}")
        prefix = f"score/year={values[0]}/month={values[1]}/day={values[2]}/hour={values[3]}"
        self.files += 1
        self.lake.put_object(f"{prefix}/part-{self.files:05d}.parquet",
                             to_parquet(REGISTRY.get("score"), [{**r, "event_type": "score", "app_id": "t"}
                                                                for r in rows]))
        if values not in self.registered:
            self.catalog.add_partitions("score", [Partition(values, prefix)])
            self.registered[values] = now.replace(tzinfo=dt.UTC).timestamp()
        self.deliveries.extend(rows)

    def partitions(self) -> list[Partition]:
        return [Partition(p.values, p.location, self.registered[p.values]) for p in self.catalog.partitions("score")]

    def refresher(self, state: Path, **options: Any) -> IncrementalRefresh:
        engine = LocalQueryEngine(self.lake.root, self.catalog, state_path=state)
        return IncrementalRefresh(run_on(engine, poll_seconds=0), self.partitions, **options)

    def full_view(self, as_of: dt.datetime) -> set[Row]:
        """The boards the analyst views compute from the whole lake."""
        engine = LocalQueryEngine(self.lake.root, self.catalog,
                                  view_overrides={"board_clock": f"SELECT TIMESTAMP '{sql_ts(as_of)}' AS as_of"})
        names, rows = engine.run(full_snapshot_sql())
        return as_rows([dict(zip(names, r, strict=True)) for r in rows])


# --- generated histories -------------------------------------------------------------------------------------

event_ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(12)]


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[dt.timedelta, list[dict[str, Any]]]]:
    """Rounds of (how far the clock moves, then the deliveries that arrive); a refresh ends each round.
    A delivery says which event (an id and its content, fixed by the id), how long before its arrival it
    was received, where its ts lies (near the coming refresh's window edges, or late, or a little ahead)
    and which partition it lands in (this hour, the last, or a late-crawled old one)."""
    contents = {}
    rounds = []
    for _ in range(draw(st.integers(1, 5))):
        step = draw(st.sampled_from([dt.timedelta(minutes=20), dt.timedelta(hours=2), dt.timedelta(days=1),
                                     dt.timedelta(days=29, hours=23), dt.timedelta(days=31),
                                     dt.timedelta(days=365)]))
        deliveries = []
        for _ in range(draw(st.integers(0, 8))):
            ident = draw(st.sampled_from(event_ids))
            if ident not in contents:
                contents[ident] = {
                    "user_id": draw(st.sampled_from(USERS)),
                    "category": draw(st.sampled_from(CATEGORIES)),
                    "points": draw(st.integers(1, 5)),
                    "challenge_id": draw(st.sampled_from([None, None, "c1", "c2"])),
                    "user_name": draw(st.sampled_from([None, "A", "B"])),
                    # ts relative to the coming refresh's as_of: on a window edge (exactly, or a ms either
                    # side), just before it, days to a year late, or a little in the future.
                    "ts_back": draw(st.sampled_from([dt.timedelta(days=30), dt.timedelta(days=365),
                                                     dt.timedelta(minutes=5), dt.timedelta(days=3),
                                                     dt.timedelta(days=200), dt.timedelta(days=400),
                                                     -dt.timedelta(minutes=10)]))
                                 + draw(st.sampled_from([dt.timedelta(0), MS, -MS])),
                }
            deliveries.append({"event_id": ident, "content": contents[ident],
                               "lag": draw(st.sampled_from([dt.timedelta(0), dt.timedelta(seconds=3),
                                                            dt.timedelta(hours=5), dt.timedelta(days=13)])),
                               "partition": draw(st.sampled_from(["now", "now", "last-hour", "late-crawl"]))})
        rounds.append((step, deliveries))
    return rounds


def play(sim: SimLake, rounds: list[tuple[dt.timedelta, list[dict[str, Any]]]],
         refresh: Any) -> Iterator[tuple[dt.datetime, list[dict[str, Any]]]]:
    """Write each round's deliveries at the simulated clock, refresh, and yield (as_of, snapshot rows)."""
    clock = START
    ts_of: dict[str, dt.datetime] = {}
    for i, (step, deliveries) in enumerate(rounds):
        clock += step
        as_of = clock.replace(microsecond=0) + dt.timedelta(minutes=1)
        by_hour: dict[dt.datetime, list[dict[str, Any]]] = defaultdict(list)
        for d in deliveries:
            c = d["content"]
            arrival = {"now": clock, "last-hour": clock - dt.timedelta(hours=1),
                       "late-crawl": clock - dt.timedelta(hours=6 + i)}[d["partition"]]
            hour = arrival.replace(minute=0, second=0, microsecond=0)
            if d["partition"] == "late-crawl" and tuple(f"{hour:%Y %m %d %H}".split()) in sim.registered:
                hour = clock.replace(minute=0, second=0, microsecond=0)  # a late partition is a new one
            received = min(arrival, clock) - d["lag"]
            # ts is the client's: one per event, at most 15 minutes ahead of its first receipt
            ts = ts_of.setdefault(d["event_id"], min(as_of - c["ts_back"], received + dt.timedelta(minutes=15)))
            by_hour[hour].append({"event_id": d["event_id"], "user_id": c["user_id"], "category": c["category"],
                                  "points": c["points"], "challenge_id": c["challenge_id"],
                                  "user_name": c["user_name"], "ts": ts,
                                  "received_at": received})
        for hour, rows in sorted(by_hour.items()):
            sim.arrive(rows, hour, clock)
        yield as_of, refresh(as_of)


# --- tests -------------------------------------------------------------------------------------------------


def _late_earlier_delivery() -> list[tuple[dt.timedelta, list[dict[str, Any]]]]:
    """A delivery that arrives two days after another of its event but was received 13 days before it: the
    known one, whose partition the batch does not read again (a batch ran between them), stops counting."""
    content = {"user_id": "ann", "category": "chess", "points": 4, "challenge_id": None, "user_name": None,
               "ts_back": dt.timedelta(days=3)}

    def d(lag: dt.timedelta) -> dict[str, Any]:
        return {"event_id": event_ids[0], "content": content, "lag": lag, "partition": "now"}

    return [(dt.timedelta(hours=1), [d(dt.timedelta(0))]), (dt.timedelta(days=1), []),
            (dt.timedelta(days=1), [d(dt.timedelta(days=13))])]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=histories(), rebuilds=st.lists(st.booleans(), min_size=5, max_size=5))
@example(rounds=_late_earlier_delivery(), rebuilds=[False] * 5)
def test_incremental_boards_equal_the_full_recomputation_and_the_oracle(
    tmp_path_factory: pytest.TempPathFactory, rounds: list[tuple[dt.timedelta, list[dict[str, Any]]]],
    rebuilds: list[bool],
) -> None:
    root = tmp_path_factory.mktemp("refresh")
    sim = SimLake(root)
    ranks, writes_ranks = rank_store(root / "ranks.db")
    incremental = sim.refresher(root / "state" / "state.duckdb", **writes_ranks)
    modes = iter(rebuilds)

    batches: list[int] = []

    def refresh(as_of: dt.datetime) -> list[dict[str, Any]]:
        # an admin's full rebuild now and then: the batches after it step the state it built
        rebuild = next(modes)
        result = incremental.refresh(now=as_of.replace(tzinfo=dt.UTC), full=rebuild)
        assert result.full == (rebuild or not batches)  # the first batch builds the state too
        batches.append(result.plan.batch)  # numbered on through rebuilds
        return result.rows

    for as_of, rows in play(sim, rounds, refresh):
        expected = oracle(sim.deliveries, as_of)
        assert sim.full_view(as_of) == expected  # the analyst views keep the same rules
        assert as_rows(rows) == expected
        # every user's ranks, stepped by the users each batch changed (or built again by a full one)
        assert store_ranks(ranks) == oracle_ranks(sim.deliveries, as_of)
    assert batches == list(range(1, len(batches) + 1))
    full = sim.refresher(root / "state-full" / "state.duckdb").refresh(full=True, now=as_of.replace(tzinfo=dt.UTC))
    assert as_rows(full.rows) == expected


def scenario() -> list[tuple[dt.timedelta, list[dict[str, Any]]]]:
    """A fixed history that touches every step: duplicates in and beyond the horizon, a challenge first
    replaced by an earlier completion arriving later, late events, a name change, a window edge."""
    def ev(n: int, user: str, points: int, back: dt.timedelta, **more: Any) -> dict[str, Any]:
        return {"user_id": user, "category": more.get("category", "chess"), "points": points,
                "challenge_id": more.get("challenge"), "user_name": more.get("name"), "ts_back": back}

    e = [ev(0, "ann", 3, dt.timedelta(minutes=5), name="Ann"), ev(1, "bob", 4, dt.timedelta(days=30)),
         ev(2, "ann", 5, dt.timedelta(days=2), challenge="c1"), ev(3, "ann", 7, dt.timedelta(days=9), challenge="c1"),
         ev(4, "cy", 2, dt.timedelta(days=200), category="go", name="Cy"), ev(5, "ann", 1, dt.timedelta(0), name="A2")]

    def d(i: int, lag: dt.timedelta = dt.timedelta(0), partition: str = "now") -> dict[str, Any]:
        return {"event_id": event_ids[i], "content": e[i], "lag": lag, "partition": partition}

    return [
        (dt.timedelta(hours=1), [d(0), d(1), d(2), d(4)]),
        (dt.timedelta(hours=2), [d(0), d(3, partition="late-crawl"), d(1, dt.timedelta(days=13))]),
        (dt.timedelta(days=31), [d(0), d(5), d(2)]),
        (dt.timedelta(days=1), [d(4, partition="last-hour")]),
    ]


def test_a_refresh_stopped_after_any_statement_and_run_again_gives_the_same_boards(tmp_path: Path) -> None:
    rounds = scenario()
    reference_root = tmp_path / "reference"
    sim = SimLake(reference_root)
    reference_ranks, writes_ranks = rank_store(reference_root / "ranks.db")
    reference = sim.refresher(reference_root / "state" / "state.duckdb", **writes_ranks)

    def reference_refresh(as_of: dt.datetime) -> tuple[set[Row], dict[str, Any]]:
        rows = reference.refresh(now=as_of.replace(tzinfo=dt.UTC)).rows
        return as_rows(rows), store_ranks(reference_ranks)

    expected = [got for _, got in play(sim, rounds, reference_refresh)]
    plan = reference.plan()[0]
    assert not plan.full
    # the first batch builds the state (the rebuild's steps), the later ones step it
    statements = list(dict.fromkeys(s.name for p in (replace(plan, full=True), plan)
                                    for s in reference.sequence(p) if s.name != "done"))
    assert len(statements) >= 20

    class Stop(Exception):
        pass

    for stop_at in statements:
        root = tmp_path / f"stop-{stop_at}"
        sim = SimLake(root)
        stops = {"armed": True}

        def stop(name: str, at: str = stop_at, flags: dict[str, bool] = stops) -> None:
            if name == at and flags["armed"]:
                flags["armed"] = False
                raise Stop(name)

        ranks, writes_ranks = rank_store(root / "ranks.db")
        interrupted = sim.refresher(root / "state" / "state.duckdb", after_step=stop, **writes_ranks)
        rerun = sim.refresher(root / "state" / "state.duckdb", **writes_ranks)

        def refresh(as_of: dt.datetime, first: IncrementalRefresh = interrupted, second: IncrementalRefresh = rerun,
                    store: RankTrees = ranks) -> tuple[set[Row], dict[str, Any]]:
            now = as_of.replace(tzinfo=dt.UTC)
            try:
                rows = first.refresh(now=now).rows
            except Stop:
                result = second.refresh(now=now + dt.timedelta(minutes=7))  # later: the batch resumes
                assert result.resumed
                rows = result.rows
            return as_rows(rows), store_ranks(store)

        got = [got for _, got in play(sim, rounds, refresh)]
        assert got == expected, f"stopped after {stop_at}"
        shutil.rmtree(root)


def test_the_refresh_reads_only_new_partitions_and_a_full_rebuild_reads_all(tmp_path: Path) -> None:
    sim = SimLake(tmp_path)
    refresher = sim.refresher(tmp_path / "state" / "state.duckdb")
    rounds = [(dt.timedelta(hours=h), [{"event_id": event_ids[h % 12], "lag": dt.timedelta(0), "partition": "now",
                                        "content": {"user_id": "ann", "category": "chess", "points": 1,
                                                    "challenge_id": None, "user_name": None,
                                                    "ts_back": dt.timedelta(minutes=5)}}])
              for h in (1, 3, 3, 3)]
    inputs: list[RefreshResult] = []

    def refresh(as_of: dt.datetime) -> list[dict[str, Any]]:
        inputs.append(refresher.refresh(now=as_of.replace(tzinfo=dt.UTC)))
        return inputs[-1].rows

    list(play(sim, rounds, refresh))
    assert inputs[0].plan.full  # the first batch builds the state from the whole table
    assert [len(r.plan.partitions) for r in inputs[1:]] == [2, 2, 2]  # this hour and the last, not history
    assert len(sim.registered) == 4
    full = refresher.refresh(full=True, now=(START + dt.timedelta(hours=11)).replace(tzinfo=dt.UTC))
    assert full.plan.full and full.plan.batch == inputs[-1].plan.batch + 1  # the numbering goes on
    assert full.plan.params(30, 45)["input"] == "true"  # the whole table, however many partitions it has
    assert not any(r.plan.full for r in inputs[1:])


# --- on AWS: the same statements as a chain of queries, one started per state-change event ----------------


def as_athena(backend: Backend) -> None:
    """The local state engine in Athena's place, with the state tables created (the CDK app's job on AWS)."""
    assert backend.refresh_query is not None
    backend.query = backend.refresh_query
    for ddl in state_tables().values():
        run_on(backend.query)(ddl)


def test_the_aws_chain_of_queries_gives_the_boards_of_the_local_refresh(tmp_path: Path) -> None:
    """The query Lambda starts a batch; each query's state-change event makes the writer Lambda start the
    next; the writer writes the boards after the snapshot. Here the local engine stands in for Athena."""
    backend = build_local_backend(Settings(data_dir=tmp_path / "chain"))
    sim = SimLake(tmp_path / "chain")
    backend.catalog = sim.catalog
    as_athena(backend)
    as_of = [a for a, _ in play(sim, scenario(), lambda a: [])][-1]
    reference_ranks, writes_ranks = rank_store(tmp_path / "reference-ranks.db")
    reference = sim.refresher(tmp_path / "reference.duckdb", **writes_ranks).refresh(now=as_of.replace(tzinfo=dt.UTC))
    started = leaderboards.query_handle({"time": as_of.isoformat() + "Z"}, backend)["query_ids"][0]
    query_id, steps = started, 0
    while query_id is not None and steps < 40:
        result = leaderboards.writer_handle(leaderboards.state_change_event(query_id, "SUCCEEDED"), backend)
        query_id, steps = result.get("next_query_id"), steps + 1
    assert result["step"] == "done"
    boards = {(b.scope, b.window): b for b in (backend.boards.get_board(s, w, 1000)
                                               for s in backend.boards.scopes() for w in WINDOW_DAYS) if b}
    expected = leaderboards.boards_from_rows(reference.rows, "x")
    assert {(b.scope, b.window): b.entries for b in expected} == {k: b.entries for k, b in boards.items()}
    # the writer wrote the ranks on the rank statement's state change
    assert store_ranks(backend.ranks) == store_ranks(reference_ranks) == oracle_ranks(sim.deliveries, as_of)  # type: ignore[arg-type]


def test_a_failed_chain_query_keeps_the_boards_and_the_next_refresh_resumes(tmp_path: Path) -> None:
    backend: Backend = build_local_backend(Settings(data_dir=tmp_path / "d"))
    as_athena(backend)
    first = leaderboards.query_handle({}, backend)["query_ids"][0]
    failed = leaderboards.writer_handle(leaderboards.state_change_event(first, "FAILED"), backend)
    assert failed["boards"] == 0 and failed["state"] == "FAILED"
    again = leaderboards.query_handle({}, backend)["query_ids"][0]
    assert backend.query.status(again).sql is not None
    assert "batch=1 " in str(backend.query.status(again).sql)  # the same batch, resumed
