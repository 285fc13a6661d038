"""Local query engine: Athena's role played by DuckDB.

Each catalog table becomes a DuckDB view over the Parquet files of its
*cataloged* partitions (as in Athena, data the crawl has not yet seen is not
visible); the Trino views of ``athena_sql/`` are transpiled with sqlglot and
created on top. Queries run in a fresh in-memory database, so any number of
processes (``streamboard sql`` beside a running stack) can query the lake.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from streamboard.adapters.local.catalog import LocalCatalog
from streamboard.errors import NotFound, QueryFailed
from streamboard.ports import QueryStatus
from streamboard.registry import DUCKDB_TYPES, GLUE_TYPES, PARTITION_KEYS
from streamboard.sql import (
    DEFAULT_HORIZON_DAYS,
    SQL_DIR,
    TranspileCache,
    default_cache_path,
    load_views,
    scans,
    to_duckdb,
    touches,
)
from streamboard.usage import Usage, athena_billed_bytes

log = logging.getLogger("streamboard.query")
_DUCK_FROM_GLUE = {GLUE_TYPES[k]: v for k, v in DUCKDB_TYPES.items()}


def _untagged(sql: str) -> str:
    """The statement without its leading comment lines (a refresh statement's tag)."""
    return re.sub(r"^(\s*--[^\n]*\n)*", "", sql)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# Athena bills nothing for DDL (a table's definition, not a CREATE TABLE AS) nor for a failed query.
_DDL = re.compile(r"^\s*(DROP|ALTER|MSCK|SHOW|DESCRIBE|CREATE\s+(OR\s+REPLACE\s+)?(TABLE|VIEW|SCHEMA|DATABASE)\b"
                  r"(?![\s\S]*\bAS\s*\(?\s*(SELECT|WITH)\b))", re.IGNORECASE)
_FIXED_WIDTH = {"BOOLEAN": 1, "TINYINT": 1, "SMALLINT": 2, "INTEGER": 4, "FLOAT": 4, "DATE": 4}  # else 8
# The state database is checkpointed when a refresh batch ends (and the checkpoint leaves the file alone
# complete), not whenever its write-ahead log passes DuckDB's 16 MB: a larger batch passed that several
# times, each checkpoint writing the same tables' last row groups again.
# Its strings are stored uncompressed: DuckDB's string compression (DICT_FSST) spent most of the time of
# writing the state (4M event ids: 2.3 s compressed, 0.5 s not), a third of a full build, for a file about
# 1.75 times smaller.
KEPT_ROWS = 100_000  # query results kept beyond the latest one's rows (LocalQueryEngine.start_query)
PER_PLAYER_MEMORY_MB = 1024  # DuckDB's limit while the refresh writes profiles and ranks (LocalQueryEngine)
_STATE_SETTINGS = ("SET checkpoint_threshold='4GB'", "SET disabled_compression_methods='dict_fsst'")


@functools.lru_cache(maxsize=65536)
def _column_chunk_bytes(path: str, size: int, mtime_ns: int) -> dict[str, int]:
    """The compressed size of each column's chunks in a Parquet file, from its footer (cached per version)."""
    meta = pq.ParquetFile(path).metadata
    out: dict[str, int] = {}
    for rg in range(meta.num_row_groups):
        group = meta.row_group(rg)
        for c in range(group.num_columns):
            chunk = group.column(c)
            name = chunk.path_in_schema.split(".")[0]
            out[name] = out.get(name, 0) + chunk.total_compressed_size
    return out


class LocalQueryEngine:
    def __init__(
        self,
        lake_root: Path,
        catalog: LocalCatalog,
        sql_dir: Path = SQL_DIR,
        view_overrides: dict[str, str] | None = None,
        *,
        state_path: Path | None = None,
        memory_limit_mb: int = 3072,
        horizon_days: int = DEFAULT_HORIZON_DAYS,
        usage: Usage | None = None,
    ) -> None:
        self.lake_root = Path(lake_root)
        self.catalog = catalog
        self.sql_dir = sql_dir
        # With a state database (the refresh's state tables), queries run in it, with a memory limit and
        # spilling to disk beside it, and without the analyst views (the refresh reads the tables only).
        self.state_path = Path(state_path) if state_path is not None else None
        self.memory_limit_mb = memory_limit_mb
        self.horizon_days = horizon_days
        # Trino SQL that replaces a view's file (tests pin board_clock to a fixed as_of this way).
        self.view_overrides = dict(view_overrides or {})
        self._results: dict[str, tuple[QueryStatus, list[dict[str, Any]]]] = {}
        self._kept_rows = 0
        self._lock = threading.Lock()
        self._state_con: duckdb.DuckDBPyConnection | None = None
        self._state_lock = threading.Lock()
        # The profiles' reconcile parts and the ranks' query read little (a share of the players each) while
        # Python writes profiles and ranks from their rows: DuckDB's cache is cut to this for them, so that the
        # two never hold the whole budget each (the statement after them, a pruning step, restores the limit).
        self.per_player_memory_mb = min(memory_limit_mb, PER_PLAYER_MEMORY_MB)
        self._limit_mb = memory_limit_mb
        # Athena's bill: each successful query's bytes scanned is counted in ``usage``, and summed here too
        # (the refresh takes the difference over its statements).
        self.usage = usage
        self.billed_bytes = 0
        # per state table: its row count when its columns were last measured, and each column's bytes a row
        # (kept beside the state, for the next process: measuring a large table costs a tenth of a second)
        self._state_widths: dict[str, tuple[int, dict[str, float]]] | None = None
        self._widths_path = self.state_path.parent / "column-widths.json" if self.state_path else None
        # statements rendered from templates (the refresh's), transpiled once per template and kept for the
        # next process
        self.transpiled = TranspileCache(default_cache_path())

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A database with every catalog table and view defined: in memory, or the state database."""
        if self.state_path is None:
            con = duckdb.connect(":memory:")
        else:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            con = duckdb.connect(str(self.state_path))
            spill = self.state_path.parent / "duckdb-tmp"
            con.execute(f"SET memory_limit='{self.memory_limit_mb}MB'")
            con.execute(f"SET temp_directory={_lit(str(spill))}")
            con.execute("SET preserve_insertion_order=false")  # lets large inserts stream instead of buffering
            for setting in _STATE_SETTINGS:
                con.execute(setting)
        con.execute("SET TimeZone='UTC'")
        if self.state_path is not None:  # each statement defines the lake tables it reads (_run_in_state)
            return con
        available = set(self.catalog.table_names())
        for table in available:
            con.execute(self._table_view(table))
        for view in load_views(self.sql_dir, self.horizon_days):
            if not view.depends_on <= available:
                continue  # a table it reads is not in the catalog (yet): the view cannot exist either
            available.add(view.name)
            sql = self.view_overrides.get(view.name, view.sql)
            try:
                con.execute(f"CREATE OR REPLACE TEMP VIEW {_quote(view.name)} AS {to_duckdb(sql)}")
            except duckdb.Error as exc:
                raise QueryFailed(f"view {view.name} ({self.sql_dir / (view.name + '.sql')}): {exc}") from exc
        return con

    def _table_view(self, table: str, only: Collection[tuple[str, ...]] | None = None) -> str:
        """The view of a lake table over its files (``only``: those of these partitions' values)."""
        columns = self.catalog.columns(table)
        files = []
        for part in self.catalog.partitions(table):
            if only is not None and tuple(part.values) not in only:
                continue
            folder = self.lake_root / part.location
            files.extend(sorted(str(p) for p in folder.glob("*.parquet")))
        typed = [f"CAST({_quote(c['Name'])} AS {_DUCK_FROM_GLUE[c['Type']]}) AS {_quote(c['Name'])}" for c in columns]
        if not files:
            empty = [f"CAST(NULL AS {_DUCK_FROM_GLUE[c['Type']]}) AS {_quote(c['Name'])}" for c in columns]
            empty += [f"CAST(NULL AS VARCHAR) AS {k}" for k in PARTITION_KEYS]
            return f"CREATE OR REPLACE TEMP VIEW {_quote(table)} AS SELECT {', '.join(empty)} WHERE false"
        hive_types = "{" + ", ".join(f"'{k}': VARCHAR" for k in PARTITION_KEYS) + "}"
        file_list = "[" + ", ".join(_lit(f) for f in files) + "]"
        return (
            f"CREATE OR REPLACE TEMP VIEW {_quote(table)} AS SELECT {', '.join(typed)}, {', '.join(PARTITION_KEYS)} "
            f"FROM read_parquet({file_list}, hive_partitioning=true, hive_types={hive_types}, union_by_name=true)"
        )

    def run(self, trino_sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one Trino statement; return column names and rows."""
        try:
            duck_sql = self.transpiled.to_duckdb(trino_sql)
        except Exception as exc:  # sqlglot raises several error types for bad SQL
            raise QueryFailed(f"could not parse the SQL as Trino: {exc}") from exc
        if self.state_path is not None:
            from streamboard.refresh import untag

            tagged = untag(trino_sql)  # the step, read once (the tag carries the batch's whole plan)
            step = None if tagged is None else tagged[1]
            # An incremental batch's statements read the lake only through its input (every lake read in
            # athena_sql/refresh/ is filtered by ${input}): its lake tables are defined over those partitions'
            # files alone. Over every file, each definition and each statement binding it read every file's
            # footer (union_by_name): 41-61 and 42-67 ms on 804 files against 2-3 ms each on a batch's 6,
            # growing with the hours the lake holds.
            only = None if tagged is None or tagged[0].full else {tuple(p) for p in tagged[0].partitions}
            result = self._run_in_state(duck_sql, self._memory_for(step), only)
            if tagged is not None and step == "done":
                self._after_batch(tagged[0].batch)
        else:
            con = self.connect()
            try:
                cur = con.execute(duck_sql)
                names = [d[0] for d in cur.description] if cur.description else []
                result = names, cur.fetchall()
            except duckdb.Error as exc:
                raise QueryFailed(str(exc).splitlines()[0]) from exc
            finally:
                con.close()
        if self.usage is not None and not _DDL.match(_untagged(trino_sql)):
            billed = athena_billed_bytes(self.scanned_bytes(trino_sql))
            with self._lock:
                self.billed_bytes += billed
            self.usage.add(athena_bytes_scanned=billed)
        return result

    def scanned_bytes(self, trino_sql: str) -> int:
        """What Athena would scan for a statement, by this rule: for each scan of a lake table (through the
        views too; Trino reads a table once for every reference, a named query's wherever it is referenced:
        :func:`streamboard.sql.scans`), the compressed size of the column chunks of the columns the statement
        names (every column for a ``*``) in the Parquet files of the partitions it reads: a refresh
        statement's input partitions (its plan, in its first line), every cataloged partition otherwise
        (partition predicates of other queries are not analysed: an upper bound); for each scan of a state
        table a refresh statement names, the uncompressed size of the columns it names (DuckDB's storage
        statistics; Athena reads them from compressed Parquet in Iceberg: an upper bound)."""
        from streamboard.refresh import untag

        _, columns, star = self.transpiled.touches(trino_sql)
        reads = collections.Counter(self.transpiled.scans(trino_sql))
        views = {v.name: v.sql for v in load_views(self.sql_dir, self.horizon_days)} if self.state_path is None \
            else {}
        pending = [(t, n) for t, n in reads.items() if t in views]
        while pending:  # a view reads what its SQL reads, each time it is read (views form no cycle)
            view, times = pending.pop()
            view_sql = self.view_overrides.get(view, views[view])
            _, v_columns, v_star = touches(view_sql)
            columns, star = columns | v_columns, star or v_star
            for t, n in scans(view_sql).items():
                reads[t] += times * n
                if t in views:
                    pending.append((t, times * n))
        tagged = untag(trino_sql)
        total = 0
        for table in set(self.catalog.table_names()) & reads.keys():
            names = {c["Name"] for c in self.catalog.columns(table)}
            wanted = names if star else names & columns
            partitions = self.catalog.partitions(table)
            if tagged is not None and not tagged[0].full:
                chosen = set(tagged[0].partitions)
                partitions = [p for p in partitions if tuple(p.values) in chosen]
            for part in partitions:
                for f in (self.lake_root / part.location).glob("*.parquet"):
                    st = f.stat()
                    chunks = _column_chunk_bytes(str(f), st.st_size, st.st_mtime_ns)
                    total += reads[table] * sum(n for name, n in chunks.items() if name in wanted)
        if self.state_path is not None:
            total += self._state_bytes(reads, columns, star)
        return total

    def _state_bytes(self, reads: Mapping[str, int], columns: frozenset[str], star: bool) -> int:
        """The uncompressed size of the named columns of the state tables a statement reads, times the scans
        of each (``reads``): each column's bytes a row (DuckDB's storage statistics) times the table's rows.
        The statistics list every segment, which costs a tenth of a second on a table of 20M rows, so they
        are taken again only when a table's row count has moved by a tenth since they were."""
        with self._state_lock:
            if self._state_con is None:
                return 0
            rows_of = {name: int(n) for name, n in self._state_con.execute(
                "SELECT table_name, estimated_size FROM duckdb_tables()").fetchall()}
            if self._state_widths is None:
                self._state_widths = self._load_widths()
            total, measured_now = 0.0, False
            for table in sorted(reads.keys() & rows_of.keys()):
                rows = rows_of[table]
                measured = self._state_widths.get(table)
                if measured is None or abs(rows - measured[0]) > measured[0] / 10:
                    measured = (rows, self._column_widths(table))
                    self._state_widths[table] = measured
                    measured_now = True
                total += reads[table] * rows * sum(w for name, w in measured[1].items() if star or name in columns)
            if measured_now and self._widths_path is not None:
                tmp = self._widths_path.with_name(f".{self._widths_path.name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(self._state_widths))
                os.replace(tmp, self._widths_path)
            return int(total)

    def _load_widths(self) -> dict[str, tuple[int, dict[str, float]]]:
        try:
            assert self._widths_path is not None
            return {table: (int(rows), dict(widths)) for table, (rows, widths) in
                    json.loads(self._widths_path.read_text()).items()}
        except (OSError, ValueError, TypeError, AssertionError):
            return {}  # none kept yet (or unreadable): measured again

    def _column_widths(self, table: str) -> dict[str, float]:
        """Each column's average uncompressed bytes a row (strings by their length, the rest by type)."""
        assert self._state_con is not None
        sizes: dict[str, list[int]] = {}  # column -> [bytes, rows]
        for name, kind, count, strings in self._state_con.execute(
                "SELECT column_name, segment_type, sum(count), sum(try_cast(stats.total_string_length AS BIGINT)) "
                f"FROM pragma_storage_info({_lit(table)}) WHERE segment_type <> 'VALIDITY' GROUP BY ALL").fetchall():
            size = sizes.setdefault(name, [0, 0])
            size[0] += int(strings or 0) if kind == "VARCHAR" else int(count) * _FIXED_WIDTH.get(kind, 8)
            size[1] += int(count)
        return {name: n / max(rows, 1) for name, (n, rows) in sizes.items()}

    def lake_tables_in(self, sql: str) -> list[str]:
        """The catalog's tables a statement names (most refresh statements read only state tables)."""
        return [t for t in self.catalog.table_names() if re.search(rf"\b{re.escape(t)}\b", sql)]

    def _memory_for(self, step: str | None) -> int:
        """The memory limit a refresh step (None: any other statement) runs under: the per-player one for the
        profiles' reconcile and the ranks' query, whose rows Python writes after them."""
        from streamboard.refresh import RANKS_STEP, is_profiles_step

        if step is not None and (is_profiles_step(step) or step == RANKS_STEP):
            return self.per_player_memory_mb
        return self.memory_limit_mb

    def _run_in_state(self, duck_sql: str, limit_mb: int | None = None,
                      only: Collection[tuple[str, ...]] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """On the state database's one connection, kept open (opening it costs a checkpoint each time). A lake
        table the statement reads is defined first, as files arrive (listing every partition's folder costs
        milliseconds; most statements read only state); ``only``: over those partitions' files alone."""
        with self._state_lock:
            if self._state_con is None:
                self._state_con = self.connect()
                self._limit_mb = self.memory_limit_mb
            for table in self.lake_tables_in(duck_sql):
                self._state_con.execute(self._table_view(table, only))
            try:
                if limit_mb is not None and limit_mb != self._limit_mb:
                    self._state_con.execute(f"SET memory_limit='{limit_mb}MB'")  # evicts cached blocks to fit
                    self._limit_mb = limit_mb
                cur = self._state_con.execute(duck_sql)
                names = [d[0] for d in cur.description] if cur.description else []
                return names, cur.fetchall()
            except duckdb.Error as exc:
                raise QueryFailed(str(exc).splitlines()[0]) from exc

    def _after_batch(self, batch: int) -> None:
        """After the statement that ends a refresh batch: checkpoint the state database."""
        with self._state_lock:
            if self._state_con is None:
                return
            try:
                self._state_con.execute("CHECKPOINT")
            except duckdb.Error as exc:  # the batch is committed (in the log): DuckDB checkpoints it later
                log.warning("checkpoint of the refresh state after batch %d failed: %s", batch, exc)

    def close(self) -> None:
        """Close the state database's connection (it opens again on the next query)."""
        with self._state_lock:
            if self._state_con is not None:
                self._state_con.close()
                self._state_con = None

    # --- the QueryEngine port (Athena's asynchronous API; locally the query runs at once) -------
    def start_query(self, sql: str) -> str:
        query_id = str(uuid.uuid4())
        try:
            names, rows = self.run(sql)
            entry = (QueryStatus(query_id, "SUCCEEDED", sql=sql), [dict(zip(names, r, strict=True)) for r in rows])
        except QueryFailed as exc:
            entry = (QueryStatus(query_id, "FAILED", str(exc), sql), [])
        with self._lock:
            self._results[query_id] = entry
            self._kept_rows += len(entry[1])
            # keep the latest results only, like a results bucket lifecycle: 64 queries, and no more rows than
            # KEPT_ROWS beyond the latest one's (a full build's reconcile reads every player, part by part)
            while len(self._results) > 64 or (len(self._results) > 1 and self._kept_rows > KEPT_ROWS):
                self._kept_rows -= len(self._results.pop(next(iter(self._results)))[1])
        return query_id

    def _entry(self, query_id: str) -> tuple[QueryStatus, list[dict[str, Any]]]:
        with self._lock:
            try:
                return self._results[query_id]
            except KeyError:
                raise NotFound(f"unknown query id {query_id}") from None

    def status(self, query_id: str) -> QueryStatus:
        return self._entry(query_id)[0]

    def results(self, query_id: str) -> list[dict[str, Any]]:
        status, rows = self._entry(query_id)
        if status.state != "SUCCEEDED":
            raise QueryFailed(f"query {query_id} {status.state}: {status.reason}")
        return rows
