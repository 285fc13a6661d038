"""Local query engine: Athena's role played by DuckDB.

Each catalog table becomes a DuckDB view over the Parquet files of its
*cataloged* partitions (as in Athena, data the crawl has not yet seen is not
visible); the Trino views of ``athena_sql/`` are transpiled with sqlglot and
created on top. Queries run in a fresh in-memory database, so any number of
processes (``streamboard sql`` beside a running stack) can query the lake.
"""

from __future__ import annotations

import re
import threading
import uuid
from pathlib import Path
from typing import Any

import duckdb

from streamboard.adapters.local.catalog import LocalCatalog
from streamboard.errors import NotFound, QueryFailed
from streamboard.ports import QueryStatus
from streamboard.registry import DUCKDB_TYPES, GLUE_TYPES, PARTITION_KEYS
from streamboard.sql import DEFAULT_HORIZON_DAYS, SQL_DIR, load_views, to_duckdb

_DUCK_FROM_GLUE = {GLUE_TYPES[k]: v for k, v in DUCKDB_TYPES.items()}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


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
        self._lock = threading.Lock()
        self._state_con: duckdb.DuckDBPyConnection | None = None
        self._state_lock = threading.Lock()

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
        con.execute("SET TimeZone='UTC'")
        available = set(self.catalog.table_names())
        for table in available:
            con.execute(self._table_view(table))
        if self.state_path is not None:
            return con
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

    def _table_view(self, table: str) -> str:
        columns = self.catalog.columns(table)
        files = []
        for part in self.catalog.partitions(table):
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
            duck_sql = to_duckdb(trino_sql)
        except Exception as exc:  # sqlglot raises several error types for bad SQL
            raise QueryFailed(f"could not parse the SQL as Trino: {exc}") from exc
        if self.state_path is not None:
            return self._run_in_state(duck_sql)
        con = self.connect()
        try:
            cur = con.execute(duck_sql)
            names = [d[0] for d in cur.description] if cur.description else []
            return names, cur.fetchall()
        except duckdb.Error as exc:
            raise QueryFailed(str(exc).splitlines()[0]) from exc
        finally:
            con.close()

    def lake_tables_in(self, sql: str) -> list[str]:
        """The catalog's tables a statement names (most refresh statements read only state tables)."""
        return [t for t in self.catalog.table_names() if re.search(rf"\b{re.escape(t)}\b", sql)]

    def _run_in_state(self, duck_sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """On the state database's one connection, kept open (opening it costs a checkpoint each time). A lake
        table the statement reads is defined again first, as files arrive (listing every partition's folder
        costs milliseconds; most statements read only state)."""
        with self._state_lock:
            if self._state_con is None:
                self._state_con = self.connect()
            else:
                for table in self.lake_tables_in(duck_sql):
                    self._state_con.execute(self._table_view(table))
            try:
                cur = self._state_con.execute(duck_sql)
                names = [d[0] for d in cur.description] if cur.description else []
                return names, cur.fetchall()
            except duckdb.Error as exc:
                raise QueryFailed(str(exc).splitlines()[0]) from exc

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
            while len(self._results) > 64:  # keep the latest results only, like a results bucket lifecycle
                self._results.pop(next(iter(self._results)))
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
