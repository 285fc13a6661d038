"""The incremental leaderboard refresh: a chain of SQL steps (``athena_sql/refresh/``, one statement a
file, Trino dialect) that reads the partitions that arrived since the previous refresh plus compact state
(``athena_sql/state/``), and gives exactly the boards that a recomputation from the whole lake gives.

A refresh is a *batch*: its plan (number, as_of, input partitions) is written first, each step records
that it finished, and ``done`` ends it. A batch that stopped half way is resumed with its own plan; every
step is idempotent on its own (a step that ran, or half ran, and runs again changes nothing twice), so a
refresh killed at any point and run again gives the same boards. ``full`` forgets the state and builds it
again from the whole lake (recovery, and the check that incremental equals full).

The same plan and steps drive Athena on AWS (one query a step, continued on each query's state-change
event) and DuckDB locally (one statement after the other).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gc
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from streamboard.errors import QueryFailed
from streamboard.ports import Partition, QueryEngine, wait_for_query
from streamboard.profiles import SLOT_SECONDS, cut_slot, slot_start
from streamboard.ranks import REBUILD_EVERY
from streamboard.sql import DEFAULT_HORIZON_DAYS, SQL_DIR, render

log = logging.getLogger("streamboard.refresh")

REFRESH_DIR = SQL_DIR / "refresh"
REBUILD_DIR = SQL_DIR / "rebuild"  # the first build, and a full rebuild: the state from the whole lake at once
STATE_DIR = SQL_DIR / "state"
SNAPSHOT = SQL_DIR / "queries" / "board_snapshot.sql"
SNAPSHOT_STEP = "board_snapshot"
PROFILES = SQL_DIR / "queries" / "profile_reconcile.sql"
PROFILES_STEP = "profile_reconcile"  # what the profiles' reconcile writes (streamboard.profiles)
RANKS = SQL_DIR / "queries" / "rank_scores.sql"
RANKS_STEP = "rank_scores"  # the changed users' scores, what the rank store writes (streamboard.ranks)
PRUNE_FROM = 11  # steps numbered from here prune; the boards are read before them
# Steps (by the end of their name) that only the per-player writes read: they run after the board snapshot, so
# that the boards are published without waiting for them (then the profiles' reconcile, the ranks, the pruning).
PER_PLAYER_STEPS = ("_profile_rows",)
# Firehose writes a file into the partition of its records' arrival hour up to its buffer interval (at most
# 15 minutes) after that hour: a refresh reads the hours since the previous one started, and one more.
OVERLAP = dt.timedelta(hours=1)
_TS_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


@dataclass(frozen=True)
class Step:
    name: str  # the file's stem, e.g. 01_stage_keys
    template: str  # Trino SQL with ${...} placeholders


@functools.cache
def load_steps(folder: Path = REFRESH_DIR) -> tuple[Step, ...]:
    """The refresh's steps, in file-name order."""
    return tuple(Step(p.stem, p.read_text().strip().rstrip(";")) for p in sorted(folder.glob("*.sql")))


@functools.cache
def state_tables(folder: Path = STATE_DIR) -> dict[str, str]:
    """Every state and staging table: name -> its ``CREATE TABLE IF NOT EXISTS`` (Trino)."""
    return {p.stem: p.read_text().strip().rstrip(";") for p in sorted(folder.glob("*.sql"))}


def state_columns(folder: Path = STATE_DIR) -> dict[str, list[tuple[str, str]]]:
    """The columns (name, Trino type) of every state table, read from its DDL (what the CDK app creates)."""
    import sqlglot
    from sqlglot import exp

    out = {}
    for name, ddl in state_tables(folder).items():
        tree = sqlglot.parse_one(ddl, read="trino")
        out[name] = [(c.name, c.args["kind"].sql(dialect="trino").lower()) for c in tree.find_all(exp.ColumnDef)]
    return out


STATE_PREFIX = "state"  # the state tables' data, under the lake's prefix (Iceberg on AWS)
_ATHENA_TYPES = {"varchar": "string", "timestamp(3)": "timestamp"}


def athena_state_ddl(lake_location: str) -> list[tuple[str, str]]:
    """Athena DDL for every state table, from the same files the local engine creates them from: Iceberg
    tables (MERGE and DELETE need a transactional format), unpartitioned (Athena writes at most 100
    partitions a statement, and a first build of an old lake would pass that by event day); reads by time
    range are pruned by the Parquet min/max statistics, the ledger being written in ts order."""
    out = []
    for name, columns in state_columns().items():
        cols = ", ".join(f"{col} {_ATHENA_TYPES.get(kind, kind)}" for col, kind in columns)
        out.append((name, f"CREATE TABLE IF NOT EXISTS {name} ({cols}) "
                          f"LOCATION '{lake_location.rstrip('/')}/{STATE_PREFIX}/{name}/' "
                          "TBLPROPERTIES ('table_type'='ICEBERG', 'format'='parquet', 'write_compression'='zstd')"))
    return out


def sql_ts(value: dt.datetime) -> str:
    """A timestamp for a ``TIMESTAMP '...'`` literal: naive UTC, milliseconds."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.strftime(_TS_FORMAT)[:-3]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def input_predicate(partitions: Iterable[Sequence[str]]) -> str:
    """A predicate on the partition keys that selects exactly these (year, month, day, hour) partitions, in a
    form both Athena and DuckDB prune by (files of other partitions are never opened)."""
    by_day: dict[tuple[str, str, str], list[str]] = {}
    for year, month, day, hour in sorted({tuple(p) for p in partitions}):
        by_day.setdefault((year, month, day), []).append(hour)
    if not by_day:
        return "false"
    terms = [f"(year = {_quote(y)} AND month = {_quote(m)} AND day = {_quote(d)} "
             f"AND hour IN ({', '.join(_quote(h) for h in hours)}))" for (y, m, d), hours in by_day.items()]
    return "(" + "\n    OR ".join(terms) + ")"


def partition_hour(values: Sequence[str]) -> dt.datetime:
    year, month, day, hour = (int(v) for v in values)
    return dt.datetime(year, month, day, hour, tzinfo=dt.UTC)


def choose_input(partitions: Sequence[Partition], previous_start: dt.datetime | None,
                 registered_until: float | None) -> list[Partition]:
    """The partitions a refresh reads: all of them for the first; then those of the hours since the previous
    refresh started (and one more), and any the catalog registered after the previous refresh listed it (a
    crawl that came late), by the catalog's own clock."""
    if previous_start is None:
        return list(partitions)
    from_hour = previous_start.replace(minute=0, second=0, microsecond=0) - OVERLAP
    return [p for p in partitions
            if partition_hour(p.values) >= from_hour
            or (p.created_at is not None and (registered_until is None or p.created_at > registered_until))]


@dataclass(frozen=True)
class Plan:
    """What one batch reads and computes; written before its first step, so that a resumed batch is the same."""

    batch: int
    as_of: dt.datetime  # naive UTC, whole seconds
    prev_batch: int  # 0 before the first batch
    prev_as_of: dt.datetime
    partitions: tuple[tuple[str, ...], ...]  # the input partitions (none listed for a full batch: all of them)
    started_at: dt.datetime
    registered_until: float | None = None  # the latest registration time among the partitions it listed
    full: bool = False  # builds the state from the whole lake (the rebuild steps) instead of stepping it
    # The batch whose ranks the rank store held when the batch was planned, if it is the batch before (its
    # rank rows are then the users the batch changed); 0: the rows of every user, and the store built again.
    ranks_from: int = 0

    @property
    def ranks_rebuild(self) -> bool:
        """Whether the batch's rank rows are every user's (the rank store is built from them, not stepped)."""
        return self.full or self.ranks_from == 0

    def _input(self) -> dict[str, Any]:
        return {"partitions": [list(p) for p in self.partitions], "registered_until": self.registered_until,
                "full": self.full, "ranks_from": self.ranks_from}

    def input_json(self) -> str:
        return json.dumps(self._input(), separators=(",", ":"))

    def to_json(self) -> str:
        return json.dumps([self.batch, sql_ts(self.as_of), self.prev_batch, sql_ts(self.prev_as_of),
                           self._input(), sql_ts(self.started_at)], separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        batch, as_of, prev_batch, prev_as_of, given, started = json.loads(text)
        return cls(batch, _naive(as_of), prev_batch, _naive(prev_as_of),
                   tuple(tuple(p) for p in given["partitions"]), _naive(started), given["registered_until"],
                   bool(given.get("full", False)), int(given.get("ranks_from", 0)))

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Plan:
        """The plan as the refresh log recorded it."""
        given = json.loads(row["input"])
        return cls(int(row["batch"]), _naive(row["as_of"]), int(row["prev_batch"]), _naive(row["prev_as_of"]),
                   tuple(tuple(p) for p in given["partitions"]), _naive(row["recorded_at"]),
                   given["registered_until"], bool(given.get("full", False)), int(given.get("ranks_from", 0)))

    @property
    def profile_cut(self) -> int:
        """The first routing slot whose live points the profiles keep after this batch."""
        return cut_slot(self.as_of)

    def params(self, horizon_days: int, retention_days: int) -> dict[str, object]:
        touched = (f"SELECT user_id FROM stage_status WHERE batch = {self.batch} "
                   f"UNION SELECT user_id FROM state_profile_rows WHERE batch = {self.batch}")
        return {"batch": self.batch, "prev_batch": self.prev_batch, "as_of": sql_ts(self.as_of),
                "prev_as_of": sql_ts(self.prev_as_of),
                "input": "true" if self.full else input_predicate(self.partitions),
                "dedupe_horizon_days": horizon_days, "retention_days": retention_days,
                "slot_seconds": SLOT_SECONDS, "profile_cut": self.profile_cut,
                "profile_cut_ts": sql_ts(slot_start(self.profile_cut)),
                # the profiles a batch reconciles: those of the users it touched (all of them in a full build),
                # and of their challenges, those it touched
                "profile_users": "true" if self.full else f"user_id IN ({touched})",
                "profile_challenges": "true" if self.full else (
                    f"EXISTS (SELECT 1 FROM stage_status AS s WHERE s.batch = {self.batch} "
                    "AND s.user_id = f.user_id AND s.challenge_id = f.challenge_id)"),
                # the users whose ranks the batch writes: those whose rows changed since the store's ranks (the
                # rows a batch changes carry its number), or all of them
                "rank_users": "true" if self.ranks_rebuild else f"batch > {self.ranks_from}",
                "ranks_from": self.ranks_from, "rank_rebuild_every": REBUILD_EVERY}


def hourly_batch() -> list[Statement]:
    """The statements of an hourly incremental batch (a sample plan: one input hour, the ranks stepped from the
    batch before), as :meth:`IncrementalRefresh.sequence` lays them out: what the planner prices and the
    tests hold to their reads (``streamboard.sql.reads``)."""
    as_of = dt.datetime(2026, 12, 1, 12)
    plan = Plan(2, as_of, 1, as_of - dt.timedelta(hours=1), (("2026", "12", "01", "11"),), as_of, ranks_from=1)
    return IncrementalRefresh(lambda sql: [], lambda: [], create_state=False).sequence(plan)


def profiles_step(part: int, parts: int) -> str:
    """The name of a part of the profiles' reconcile: ``profile_reconcile``, or ``profile_reconcile_3of8``."""
    return PROFILES_STEP if parts == 1 else f"{PROFILES_STEP}_{part + 1}of{parts}"


def is_profiles_step(name: str) -> bool:
    return name == PROFILES_STEP or re.fullmatch(rf"{PROFILES_STEP}_\d+of\d+", name) is not None


def part_predicate(part: int, parts: int) -> str:
    """The users of one part: a 64-bit hash of user_id modulo the parts (Trino's mod keeps the dividend's
    sign, so a negative hash lands on part - parts; locally the hash is DuckDB's own, see streamboard.sql)."""
    if parts == 1:
        return "true"
    return f"mod(from_big_endian_64(xxhash64(to_utf8(user_id))), {parts}) IN ({part}, {part - parts})"


class SqlRunner(Protocol):
    """Runs one Trino statement to its end and returns its rows (the local engine; a poller on Athena)."""

    def __call__(self, sql: str) -> list[dict[str, Any]]: ...


def run_on(engine: QueryEngine, poll_seconds: float = 0.5, timeout: float = 3600) -> SqlRunner:
    """A :class:`SqlRunner` over the QueryEngine port: start, wait for the end, return the rows."""
    def run(sql: str) -> list[dict[str, Any]]:
        query_id = engine.start_query(sql)
        try:
            wait_for_query(engine, query_id, poll_seconds=poll_seconds, timeout=timeout)
        except QueryFailed as exc:
            raise QueryFailed(f"{sql.strip().splitlines()[0][:100]}: {exc}") from None
        return engine.results(query_id)
    return run


@dataclass
class RefreshResult:
    plan: Plan
    rows: list[dict[str, Any]]  # the board snapshot: what the leaderboard writer turns into boards
    resumed: bool
    full: bool
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds (the steps this run ran)
    profile_rows: int = 0  # the rows the profiles' reconcile read (in all its parts)
    rank_rows: list[dict[str, Any]] = field(default_factory=list)  # what the rank store writes
    per_player_s: float | None = None  # wall seconds from the first per-player statement to the writes' end

    def summary(self) -> dict[str, Any]:
        return {"batch": self.plan.batch, "mode": "full" if self.full else "incremental", "resumed": self.resumed,
                "as_of": sql_ts(self.plan.as_of),
                "input_partitions": "all" if self.plan.full else len(self.plan.partitions),
                "steps": {k: round(v, 3) for k, v in self.steps.items()},
                **({} if self.per_player_s is None else {"per_player_s": round(self.per_player_s, 3)})}


@dataclass(frozen=True)
class Statement:
    """One statement of a batch's sequence: a step, the board snapshot, or the record that ends the batch."""

    name: str
    sql: str
    marks: bool  # a step whose end is recorded (the snapshot, the reconcile and the ranks only read)


_TAG = re.compile(r"^-- streamboard refresh batch=(\d+) step=(\S+) plan=(.*)\n")


def tag(plan: Plan, name: str, sql: str) -> str:
    """The statement with a first-line comment that says which batch and step it is, and the batch's plan:
    on AWS the next step is started from a query's state-change event, with nothing else to go by."""
    return f"-- streamboard refresh batch={plan.batch} step={name} plan={plan.to_json()}\n{sql}"


def untag(sql: str | None) -> tuple[Plan, str] | None:
    """The plan and step of a tagged statement, or None for any other query."""
    m = _TAG.match(sql or "")
    return (Plan.from_json(m.group(3)), m.group(2)) if m else None


class IncrementalRefresh:
    """Plans refresh batches and lays out their statements; :meth:`refresh` runs one to its end through a
    :class:`SqlRunner` (locally), resuming a batch that stopped half way."""

    def __init__(self, run: SqlRunner, partitions: Callable[[], Sequence[Partition]], *,
                 horizon_days: int = DEFAULT_HORIZON_DAYS, max_arrival_delay_days: int = 14,
                 create_state: bool = True, after_step: Callable[[str], None] | None = None,
                 boards: Callable[[Plan, list[dict[str, Any]]], object] | None = None,
                 reconcile: Callable[[Plan, list[dict[str, Any]]], Any] | None = None,
                 ranks: Callable[[Plan, list[dict[str, Any]]], object] | None = None,
                 ranks_base: Callable[[], int | None] | None = None,
                 reconcile_parts: tuple[int, int] = (1, 8)) -> None:
        self.run = run
        self.partitions = partitions  # the score table's cataloged partitions
        self.horizon_days = horizon_days
        # A delivery can reach the lake this long after it was received (the DLQ's retention): deliveries
        # are remembered for the horizon plus this, and a day to spare.
        self.retention_days = horizon_days + max_arrival_delay_days + 1
        self.create_state = create_state  # on AWS the CDK app creates the state tables (Iceberg)
        # Called after each statement, before its end is recorded: tests stop a refresh there, to show that a
        # rerun (which runs that statement again) gives the same boards.
        self.after_step = after_step
        # Publishes the boards from the snapshot's rows as soon as it ran, before the per-player writes (the
        # profiles' reconcile, the ranks), as the writer does on AWS on the snapshot's state change: the
        # boards are fresh once their own path ran. A rerun of a stopped batch runs the snapshot (which marks
        # nothing) and publishes again.
        self.boards = boards
        # Writes the profiles' reconcile from its rows, before the pruning clears the batch's staging (on AWS
        # the writer does, on the reconcile query's state change).
        self.reconcile = reconcile
        # Writes the ranks from the rank statement's rows, before the pruning (on AWS the writer does, on its
        # state change); ranks_base says which batch's ranks the store holds (None: none), when a batch is
        # planned: rows of the changed users step them only from the batch before.
        self.ranks, self.ranks_base = ranks, ranks_base
        # the statements the profiles' reconcile of a batch runs as (incremental, full): a share of the players each
        if min(reconcile_parts) < 1:
            raise ValueError(f"reconcile parts must be at least 1, not {reconcile_parts}")
        self.reconcile_parts = reconcile_parts

    def reset(self) -> None:
        """Forget every state table's rows (the next batch builds the state from the whole lake)."""
        for name in state_tables():
            self.run(render(f"DELETE FROM {name}", {}))

    def plan(self, *, full: bool = False, now: dt.datetime | None = None) -> tuple[Plan, set[str], bool]:
        """The batch to run: the unfinished one (its plan and finished steps), or a new one, whose plan is
        recorded here. Returns (plan, finished steps, resumed)."""
        # (every statement goes through render(), even with nothing to fill: the local engine transpiles a
        # rendered template once)
        if self.create_state:
            for ddl in state_tables().values():
                self.run(render(ddl, {}))
        numbered = 0
        if full:
            # a rebuild goes on numbering the batches: the profiles' reconcile never lets a batch overwrite a
            # later one's
            numbered = int(self.run(render("SELECT coalesce(max(batch), 0) AS n FROM state_refreshes", {}))[0]["n"])
            self.reset()
        log_rows = self.run(render("SELECT batch, step, as_of, prev_batch, prev_as_of, input, recorded_at "
                                   "FROM state_refreshes WHERE batch >= (SELECT max(batch) - 1 FROM state_refreshes)",
                                   {}))
        latest = max((int(r["batch"]) for r in log_rows), default=numbered)
        finished = {r["step"] for r in log_rows if int(r["batch"]) == latest}
        plan_row = next((r for r in log_rows if int(r["batch"]) == latest and r["step"] == "plan"), None)
        if plan_row is not None and "done" not in finished:
            return Plan.from_row(plan_row), finished, True
        # the first batch (an empty log) builds the state from the whole lake, as a full rebuild does
        plan = self._new_plan(latest + 1, plan_row, now or dt.datetime.now(dt.UTC), full or plan_row is None)
        self.run(self.record_sql(plan, "plan"))
        return plan, set(), False

    def sequence(self, plan: Plan) -> list[Statement]:
        """Every statement of a batch, in order: the steps (the rebuild's for a full batch) the boards read,
        the board snapshot, the steps only the per-player writes read (:data:`PER_PLAYER_STEPS`), the profiles'
        reconcile and the ranks, the pruning, and the record that ends the batch."""
        params = plan.params(self.horizon_days, self.retention_days)
        steps = load_steps(REBUILD_DIR) if plan.full else [s for s in load_steps() if _number(s) < PRUNE_FROM]
        later = [step for step in steps if step.name.endswith(PER_PLAYER_STEPS)]
        out = [Statement(step.name, render(step.template, params), True) for step in steps if step not in later]
        out.append(Statement(SNAPSHOT_STEP, render(SNAPSHOT.read_text(), params), False))
        out += [Statement(step.name, render(step.template, params), True) for step in later]
        parts = self.reconcile_parts[1] if plan.full else self.reconcile_parts[0]
        for part in range(parts):
            out.append(Statement(profiles_step(part, parts),
                                 render(PROFILES.read_text(), {**params, "profile_part": part_predicate(part, parts)}),
                                 False))
        out.append(Statement(RANKS_STEP, render(RANKS.read_text(), params), False))
        out += [Statement(step.name, render(step.template, params), True)
                for step in load_steps() if _number(step) >= PRUNE_FROM]
        out.append(Statement("done", self.record_sql(plan, "done"), False))
        return out

    def refresh(self, *, full: bool = False, now: dt.datetime | None = None) -> RefreshResult:
        """Run (or resume) a batch to its end. A ``reconcile`` that returns something (a future: its writes go
        on elsewhere) is waited for at the end of the ranks' statement (every batch runs it, before the pruning
        and the record that ends the batch), and, when a statement fails or a stop comes meanwhile, before the
        error leaves here (no writes of a batch left running behind it)."""
        plan, finished, resumed = self.plan(full=full, now=now)
        result = RefreshResult(plan, [], resumed, plan.full)
        pending: list[Any] = []
        try:
            self._run_batch(plan, finished, result, pending)
        finally:
            for future in pending:  # only after an error: the batch's end waited for them already
                with contextlib.suppress(Exception):
                    future.result()
        return result

    def _run_batch(self, plan: Plan, finished: set[str], result: RefreshResult, pending: list[Any]) -> None:
        per_player_from: float | None = None
        for statement in self.sequence(plan):
            if statement.name in finished:
                continue
            started = time.monotonic()
            if per_player_from is None and (is_profiles_step(statement.name) or statement.name == RANKS_STEP
                                            or statement.name.endswith(PER_PLAYER_STEPS)):
                per_player_from = started
            # the snapshot's and the reconcile's rows: a row per board entry, and per player (a full build)
            with gc_paused() if is_profiles_step(statement.name) or statement.name == SNAPSHOT_STEP \
                    else contextlib.nullcontext():
                rows = self.run(tag(plan, statement.name, statement.sql))
            result.steps[statement.name] = time.monotonic() - started
            log.info("refresh batch %d: %s took %.2f s", plan.batch, statement.name, result.steps[statement.name])
            if statement.name == SNAPSHOT_STEP:
                result.rows = rows
                if self.boards is not None:
                    self.boards(plan, rows)
            if is_profiles_step(statement.name):
                result.profile_rows += len(rows)
                if self.reconcile is not None:  # a future: it bounds the parts it has in flight itself
                    waiting = self.reconcile(plan, rows)
                    if waiting is not None:
                        pending.append(waiting)
                rows = []  # handed over: not held while the next statement runs
            if statement.name == RANKS_STEP:
                result.rank_rows = rows
                if self.ranks is not None:
                    self.ranks(plan, rows)
                _drain(pending)  # the profiles, written meanwhile on another process
                if per_player_from is not None:
                    result.per_player_s = time.monotonic() - per_player_from
            if self.after_step is not None and statement.name != "done":  # a stop here makes the rerun run it again
                self.after_step(statement.name)
            if statement.marks:
                self.run(self.record_sql(plan, statement.name))

    def _new_plan(self, batch: int, previous: dict[str, Any] | None, now: dt.datetime, full: bool) -> Plan:
        now = now.astimezone(dt.UTC).replace(tzinfo=None, microsecond=0)
        previous_start, registered_until = None, None
        prev_batch, prev_as_of = 0, now
        if previous is not None:
            before = Plan.from_row(previous)
            prev_batch, prev_as_of = before.batch, before.as_of
            previous_start, registered_until = before.started_at.replace(tzinfo=dt.UTC), before.registered_until
        listed = self.partitions()
        # a full batch reads the whole table (a plan that listed a year of hourly partitions would pass
        # Athena's limit on a query's length); a partition that comes meanwhile is read again by the next
        # batch, which knows its deliveries already
        chosen = [] if full else choose_input(listed, previous_start, registered_until)
        seen = [p.created_at for p in listed if p.created_at is not None]
        # the rank store steps from the batch before only when it holds that batch's ranks (a store that is
        # empty, behind or ahead of the state is built again from every user's rows)
        ranks_from = prev_batch if self.ranks_base is None or self.ranks_base() == prev_batch else 0
        return Plan(batch, max(now, prev_as_of), prev_batch, prev_as_of,
                    tuple(sorted(tuple(p.values) for p in chosen)), now,
                    max(seen, default=registered_until), full, ranks_from)

    @staticmethod
    def record_sql(plan: Plan, step: str) -> str:
        recorded = plan.started_at if step == "plan" else dt.datetime.now(dt.UTC)
        partitions = _quote(plan.input_json()) if step == "plan" else "NULL"
        return render(_RECORD, {"batch": plan.batch, "step": _quote(step), "as_of": sql_ts(plan.as_of),
                                "prev_batch": plan.prev_batch, "prev_as_of": sql_ts(plan.prev_as_of),
                                "input": partitions, "recorded_at": sql_ts(recorded)})


# one template for every record (the local engine transpiles a template once)
_RECORD = ("INSERT INTO state_refreshes (batch, step, as_of, prev_batch, prev_as_of, input, recorded_at) "
           "VALUES (${batch}, ${step}, TIMESTAMP '${as_of}', ${prev_batch}, TIMESTAMP '${prev_as_of}', ${input}, "
           "TIMESTAMP '${recorded_at}')")


def _drain(pending: list[Any]) -> None:
    """Wait for each pending write in turn (its error raised here)."""
    while pending:
        pending[0].result()
        pending.pop(0)


def _number(step: Step) -> int:
    return int(step.name.split("_", 1)[0])


def _naive(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value  # type: ignore[no-any-return]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cycle collector off while a bulk of acyclic objects is made (a full build reads and reconciles
    every player: millions of rows, dicts and strings that the collector would scan again and again, a third
    of the reconcile's time), and on again after, if it was."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
