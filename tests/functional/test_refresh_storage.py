"""The local refresh's DuckDB state on disk: each batch ends checkpointed, so that the state file alone (say, a
copy taken while the stack still runs, without DuckDB's write-ahead log) holds every batch that finished."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb

from streamboard.adapters.local.query import LocalQueryEngine
from streamboard.refresh import IncrementalRefresh, run_on
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
