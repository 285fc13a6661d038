"""The local engine transpiles each refresh template to DuckDB once and keeps it beside the state
(``streamboard.sql.TranspileCache``): what it runs must be what transpiling each filled statement gives, and a
changed template (or a value that goes in differently) must never run an old transpilation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlglot

from streamboard.adapters.local.catalog import LocalCatalog
from streamboard.adapters.local.query import LocalQueryEngine
from streamboard.refresh import REBUILD_DIR, SNAPSHOT, IncrementalRefresh, Plan, load_steps, state_tables, tag
from streamboard.sql import TranspileCache, render, to_duckdb, touches


def _plan(batch: int, hours: list[tuple[str, str, str, str]], full: bool = False) -> Plan:
    as_of = dt.datetime(2026, 12, 1, 16, 0, 5) + dt.timedelta(days=batch)
    return Plan(batch, as_of, batch - 1, as_of - dt.timedelta(hours=1, seconds=7), tuple(hours), as_of, None, full)


PLANS = [
    _plan(3, [("2026", "12", "01", "14")]),
    _plan(12, [("2026", "11", "30", "23"), ("2026", "12", "01", "00"), ("2026", "12", "01", "01")]),
    _plan(1, [], full=True),
]


def _statements(plan: Plan) -> list[str]:
    """Every statement a batch runs, as the refresh renders them (tagged as the refresh sends them)."""
    refresh = IncrementalRefresh(lambda sql: [], lambda: [])
    params = plan.params(30, 45)
    steps = [*load_steps(), *load_steps(REBUILD_DIR)]
    out = [tag(plan, s.name, render(s.template, params)) for s in steps]
    out.append(tag(plan, "board_snapshot", render(SNAPSHOT.read_text(), params)))
    out += [render(ddl, {}) for ddl in state_tables().values()]
    out += [refresh.record_sql(plan, "plan"), refresh.record_sql(plan, "02_contributions")]
    return out


def _same(a: str, b: str) -> bool:
    return a == b or sqlglot.parse_one(a, read="duckdb") == sqlglot.parse_one(b, read="duckdb")


def test_every_refresh_statement_runs_as_its_own_transpilation_from_a_template_transpiled_once(
        tmp_path: Path) -> None:
    cache_file = tmp_path / "duckdb-sql.json"
    for plan in PLANS:  # the first plan makes the entries; the later ones use them (read from the file)
        cache = TranspileCache(cache_file)
        for sql in _statements(plan):
            assert _same(cache.to_duckdb(sql), to_duckdb(sql)), sql[:200]
            tables, columns, star = cache.touches(sql)
            direct = touches(sql)
            assert (tables, star) == (direct[0], direct[2])
            assert direct[1] <= columns  # what the bill counts: every column the statement names
    assert cache_file.exists()


def test_a_changed_template_is_transpiled_again(tmp_path: Path) -> None:
    cache_file = tmp_path / "duckdb-sql.json"
    before = "SELECT user_id FROM state_contributions WHERE batch = ${batch}"
    after = "SELECT user_id, points FROM state_contributions WHERE batch = ${batch} AND points > 0"
    assert "points" not in TranspileCache(cache_file).to_duckdb(render(before, {"batch": 4}))
    entries = cache_file.read_text()
    for cache in (TranspileCache(cache_file), TranspileCache(cache_file)):  # a new process reads the file
        duck = cache.to_duckdb(render(after, {"batch": 5}))
        assert "points > 0" in duck and "batch = 5" in duck
        assert cache.touches(render(after, {"batch": 5}))[1] >= {"user_id", "points", "batch"}
    assert cache_file.read_text() != entries


def test_values_that_go_in_differently_get_their_own_transpilation(tmp_path: Path) -> None:
    """The refresh log's input is a quoted plan for the plan row and NULL for the others; a timestamp's
    precision shows in the DuckDB cast."""
    template = ("INSERT INTO state_refreshes (batch, step, input, recorded_at) "
                "VALUES (${batch}, 'x', ${input}, TIMESTAMP '${at}')")
    cache = TranspileCache(tmp_path / "duckdb-sql.json")
    for values in ({"batch": 1, "input": "'{\"full\":true}'", "at": "2026-12-01 10:00:00.123"},
                   {"batch": 2, "input": "NULL", "at": "2026-12-01 10:00:00"},
                   {"batch": 3, "input": "'it''s'", "at": "2026-12-01 10:00:00.5"}):
        sql = render(template, values)
        assert _same(cache.to_duckdb(sql), to_duckdb(sql))


def test_a_value_that_is_not_plain_sql_in_both_dialects_is_transpiled_with_its_statement(tmp_path: Path) -> None:
    cache = TranspileCache(tmp_path / "duckdb-sql.json")
    template = "SELECT scope FROM state_scopes WHERE ${condition}"
    plain = render(template, {"condition": "(scope = 'chess' OR scope IN ('go', 'x'))"})
    assert cache.to_duckdb(plain) == to_duckdb(plain)  # the template's entry is made here
    trino_only = render(template, {"condition": "from_big_endian_64(xxhash64(to_utf8(scope))) > 0"})
    assert cache.to_duckdb(trino_only) == to_duckdb(trino_only)
    assert "xxhash64" not in cache.to_duckdb(trino_only)


def test_a_template_whose_values_are_not_sql_values_is_transpiled_whole(tmp_path: Path) -> None:
    cache = TranspileCache(tmp_path / "duckdb-sql.json")
    for table in ("state_scopes", "stage_status"):
        sql = render("SELECT count(*) AS n FROM ${table}", {"table": table})
        assert cache.to_duckdb(sql) == to_duckdb(sql)


def test_a_statement_not_rendered_from_a_template_is_transpiled_as_it_is(tmp_path: Path) -> None:
    sql = "SELECT max_by(user_id, ts) FROM state_user_names WHERE ts > TIMESTAMP '2026-01-01 00:00:00.000'"
    assert TranspileCache(tmp_path / "duckdb-sql.json").to_duckdb(sql) == to_duckdb(sql)
    assert not (tmp_path / "duckdb-sql.json").exists()


def test_the_local_engine_keeps_what_it_transpiled_in_the_cache_dir(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMBOARD_CACHE_DIR", str(tmp_path / "cache"))
    engine = LocalQueryEngine(tmp_path / "lake", LocalCatalog(tmp_path / "catalog.db"),
                              state_path=tmp_path / "state" / "state.duckdb")
    try:
        engine.run(render(state_tables()["state_refreshes"], {}))
        names, rows = engine.run(render("SELECT count(*) AS n FROM state_refreshes WHERE batch >= ${batch}",
                                        {"batch": 1}))
    finally:
        engine.close()
    assert rows == [(0,)]
    assert (tmp_path / "cache" / "duckdb-sql.json").exists()
