"""The local refresh's DuckDB state on disk: each batch ends checkpointed, so that the state file alone (say, a
copy taken while the stack still runs, without DuckDB's write-ahead log) holds every batch that finished."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import duckdb

from streamboard.adapters.local.query import LocalQueryEngine
from streamboard.refresh import IncrementalRefresh, run_on, untag
from tests.functional.test_refresh import START, SimLake, as_rows, event_ids


def test_the_state_file_alone_holds_each_finished_batch(tmp_path: Path) -> None:
    sim = SimLake(tmp_path)
    state = tmp_path / "state" / "state.duckdb"
    engine = LocalQueryEngine(sim.lake.root, sim.catalog, state_path=state)  # kept open, as the stack does
    refresher = IncrementalRefresh(run_on(engine, poll_seconds=0), sim.partitions)
    for batch in range(1, 4):
        now = START + dt.timedelta(hours=batch)
        sim.arrive([{"event_id": f"{event_ids[batch]}", "user_id": "ann", "category": "chess", "points": batch,
                     "challenge_id": None, "user_name": None, "ts": now, "received_at": now}],
                   now.replace(minute=0, second=0, microsecond=0), now)
        result = refresher.refresh(now=now.replace(tzinfo=dt.UTC))
        assert ("overall", "all", 1, "ann", None, batch * (batch + 1) // 2) in as_rows(result.rows)
        copy = tmp_path / f"copy-{batch}.duckdb"
        shutil.copyfile(state, copy)  # the file only, not its .wal
        con = duckdb.connect(str(copy))
        try:
            assert con.execute("SELECT max(batch) FROM state_refreshes WHERE step = 'done'").fetchone() == (batch,)
            assert con.execute("SELECT score_all FROM state_window_totals WHERE scope = 'overall'").fetchone() == \
                (batch * (batch + 1) // 2,)
        finally:
            con.close()
    engine.close()


def test_a_refresh_holds_less_memory_while_it_writes_profiles_and_ranks(tmp_path: Path) -> None:
    """From the snapshot on, a batch's statements read a share of the players each while Python writes their
    rows: DuckDB runs them under a smaller memory limit (it evicts its cache to fit), the next batch gets the
    whole limit back, and the engine keeps no more rows of past results than KEPT_ROWS beyond the latest."""
    from streamboard.adapters.local import query

    sim = SimLake(tmp_path)
    engine = LocalQueryEngine(sim.lake.root, sim.catalog, state_path=tmp_path / "state" / "state.duckdb",
                              memory_limit_mb=2048)
    limits: dict[str, str] = {}
    real_run = run_on(engine, poll_seconds=0)

    def run(sql: str) -> list[dict[str, object]]:
        rows = real_run(sql)
        step = sql.split(" step=", 1)[1].split(" ", 1)[0] if sql.startswith("-- streamboard refresh") else None
        if step is not None:  # asked as the same step (its first-line tag) would run
            probe = sql.split("\n", 1)[0] + "\nSELECT current_setting('memory_limit') AS m"
            limits[step] = str(real_run(probe)[0]["m"])
        return rows

    refresher = IncrementalRefresh(run, sim.partitions, reconcile_parts=(2, 2))
    now = START + dt.timedelta(hours=1)
    sim.arrive([{"event_id": f"{event_ids[1]}", "user_id": "ann", "category": "chess", "points": 1,
                 "challenge_id": None, "user_name": None, "ts": now, "received_at": now}],
               now.replace(minute=0, second=0, microsecond=0), now)
    refresher.refresh(now=now.replace(tzinfo=dt.UTC))
    full, small = limits["board_snapshot"], limits["profile_reconcile_1of2"]
    assert limits["profile_reconcile_2of2"] == limits["rank_scores"] == small != full
    assert limits["11_prune_deliveries"] == limits["done"] == full  # the rest of the batch: the whole limit again
    engine.close()

    engine = LocalQueryEngine(sim.lake.root, sim.catalog)
    for n in (60_000, 60_000, 10):
        engine.start_query(f"SELECT * FROM range({n})")
    assert sum(len(rows) for _, rows in engine._results.values()) <= query.KEPT_ROWS + 10
    assert len(engine.results(engine.start_query("SELECT * FROM range(150000)"))) == 150_000  # the latest, whole


def test_an_incremental_batch_reads_the_files_of_its_input_partitions_only(tmp_path: Path) -> None:
    """The lake tables an incremental batch's statements read are defined over its input partitions' files
    alone (its lake reads are all filtered by its input): defining them over every file read every file's
    footer, once per statement, a cost that grew with the hours the lake holds. A full batch, and any statement
    that is not a refresh's, still sees the whole lake."""
    sim = SimLake(tmp_path)
    engine = LocalQueryEngine(sim.lake.root, sim.catalog, state_path=tmp_path / "state" / "state.duckdb")
    seen: dict[str, list[str]] = {}
    inputs: list[tuple[tuple[str, ...], ...]] = []
    real_run = run_on(engine, poll_seconds=0)

    def run(sql: str) -> list[dict[str, object]]:
        rows = real_run(sql)
        if sql.startswith("-- streamboard refresh") and " step=01_" in sql.split("\n", 1)[0]:
            # the view of score as the step saw it (asked as the same step, its first-line tag)
            probe = sql.split("\n", 1)[0] + "\nSELECT sql AS v FROM duckdb_views() WHERE view_name = 'score'"
            view = str(real_run(probe)[0]["v"])
            seen[sql.split(" step=", 1)[1].split(" ", 1)[0]] = sorted(re.findall(r"'([^']+[.]parquet)'", view))
            tagged = untag(sql)
            assert tagged is not None
            inputs.append(tagged[0].partitions)
        return rows

    refresher = IncrementalRefresh(run, sim.partitions)
    for batch in range(1, 4):  # a full batch over two hours, then one new hour each
        for hour in ([0, 1] if batch == 1 else [batch]):
            at = START + dt.timedelta(hours=hour)
            sim.arrive([{"event_id": f"00000000-0000-4000-8000-{100 + 10 * batch + hour:012d}", "user_id": "ann",
                         "category": "chess", "points": 1, "challenge_id": None, "user_name": None, "ts": at,
                         "received_at": at}],
                       at.replace(minute=0, second=0, microsecond=0), at)
        refresher.refresh(now=(START + dt.timedelta(hours=batch, minutes=30)).replace(tzinfo=dt.UTC))
    files = sorted(str(p) for p in (sim.lake.root / "score").rglob("*.parquet"))
    assert len(files) == 4
    assert seen["01_deliveries"] == files[:2]  # the full batch: every file then
    # the last batch: the files of its input partitions, and not the others
    last = {f"year={y}/month={m}/day={d}/hour={h}" for y, m, d, h in inputs[-1]}
    assert seen["01_stage_keys"] == [f for f in files if any(f"/{p}/" in f for p in last)]
    assert 0 < len(seen["01_stage_keys"]) < len(files)
    names, rows = engine.run("SELECT count(*) FROM score")  # not a refresh statement: the whole lake
    assert rows == [(4,)]
    engine.close()
