"""What Athena reads for a statement (streamboard.sql.reads): Trino plans a named query inline wherever it is
referenced, so every reference reads its tables again and is billed again. The refresh's statements are held
to one whole read of each table, but for the two named below."""

from __future__ import annotations

import datetime as dt

from streamboard.refresh import IncrementalRefresh, Plan, hourly_batch
from streamboard.sql import reads, scans


def test_a_named_query_read_twice_reads_its_tables_twice() -> None:
    sql = """WITH a AS (SELECT user_id FROM state_user_names),
                  b AS (SELECT user_id FROM a UNION ALL SELECT user_id FROM a)
             SELECT * FROM b JOIN a ON a.user_id = b.user_id JOIN state_scopes AS s ON true"""
    assert scans(sql) == {"state_user_names": 3, "state_scopes": 1}
    # a named query nobody reads reads nothing
    assert scans("WITH unused AS (SELECT * FROM state_user_names) SELECT 1 FROM state_scopes") == {
        "state_scopes": 1}


def test_an_insert_reads_its_target_only_where_its_query_names_it() -> None:
    sql = """INSERT INTO stage_status SELECT * FROM state_deliveries AS d
             WHERE NOT EXISTS (SELECT 1 FROM stage_status WHERE batch = 3)"""
    assert reads(sql) == {"state_deliveries": (1, False), "stage_status": (0, True)}
    assert reads("INSERT INTO stage_status SELECT * FROM state_deliveries") == {"state_deliveries": (1, False)}


def test_reads_narrowed_by_batch_or_time_count_once_together_and_others_each() -> None:
    sql = """SELECT * FROM state_contributions WHERE ts > TIMESTAMP '2026-01-01 00:00:00'
             UNION ALL SELECT * FROM state_contributions WHERE batch = 4
             UNION ALL SELECT * FROM state_contributions WHERE points > 3"""
    assert reads(sql) == {"state_contributions": (1, True)}
    assert scans(sql) == {"state_contributions": 2}
    # a predicate on another table's column, or inside a subquery, narrows nothing
    joined = """SELECT * FROM stage_status AS s JOIN state_deliveries AS d ON d.id_key = s.id_key
                WHERE s.batch = 3"""
    assert reads(joined) == {"stage_status": (0, True), "state_deliveries": (1, False)}
    sub = "SELECT * FROM state_user_names WHERE user_id IN (SELECT user_id FROM stage_status WHERE batch = 3)"
    assert reads(sub) == {"state_user_names": (1, False), "stage_status": (0, True)}
    # a lake table is read by its partitions: its columns narrow nothing
    assert reads("SELECT * FROM score WHERE ts > TIMESTAMP '2026-01-01 00:00:00'") == {"score": (1, False)}
    # a DELETE narrowed by time drops old files whole
    assert reads("DELETE FROM state_profile_rows WHERE routed_at < TIMESTAMP '2026-01-01 00:00:00'") == {
        "state_profile_rows": (0, True)}
    assert reads("DELETE FROM state_window_totals WHERE score_all = 0") == {"state_window_totals": (1, False)}


def test_no_statement_of_a_refresh_reads_a_table_whole_twice_but_two() -> None:
    """The batch's statements as the refresh runs them (steps, board snapshot, reconcile, ranks, pruning)."""
    twice = {}
    for statement in hourly_batch():
        for table, (whole, _) in reads(statement.sql).items():
            if whole > 1:
                twice[(statement.name, table)] = whole
    # the input's ids hashed for the state's filter as well as read; the cutoffs' narrow columns, then the
    # candidates at or above them
    assert twice == {("01_stage_keys", "score"): 2, ("board_snapshot", "state_window_totals"): 2}


def test_an_analyst_query_over_the_boards_reads_the_lake_twice() -> None:
    """The analyst view of every board, through the views it reads: the counted scores once, the names once
    (each view inlined where it is referenced, as Trino plans it)."""
    import collections

    from streamboard.sql import load_views

    views = {v.name: v.sql for v in load_views()}

    def lake_reads(sql: str, times: int = 1, out: collections.Counter[str] | None = None) -> collections.Counter[str]:
        out = collections.Counter() if out is None else out
        for table, n in scans(sql).items():
            if table in views:
                lake_reads(views[table], times * n, out)
            else:
                out[table] += times * n
        return out

    assert lake_reads("SELECT * FROM leaderboards") == {"score": 2}
    assert lake_reads("SELECT * FROM user_totals") == {"score": 1}


def test_the_board_snapshot_waits_for_no_step_only_the_per_player_writes_read() -> None:
    """An hourly batch and a full build both publish the boards before the profile rows' step (which only the
    profiles' reconcile reads), then reconcile, write the ranks, prune: the boards are served as soon as their
    own state is stepped."""
    as_of = dt.datetime(2026, 12, 1, 12)
    full = Plan(2, as_of, 1, as_of - dt.timedelta(hours=1), (), as_of, full=True)
    chain = IncrementalRefresh(lambda sql: [], lambda: [], create_state=False)
    for statements in (hourly_batch(), chain.sequence(full)):
        names = [s.name for s in statements]
        snapshot = names.index("board_snapshot")
        rows = next(i for i, n in enumerate(names) if n.endswith("_profile_rows"))
        reconcile = next(i for i, n in enumerate(names) if n.startswith("profile_reconcile"))
        assert snapshot < rows < reconcile < names.index("rank_scores") < names.index("done") == len(names) - 1
        assert all("prune" not in n for n in names[:snapshot])
