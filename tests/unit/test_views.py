"""Given rows / expected rows for every Athena view in ``athena_sql/``.

The rows go the way production data goes: Parquet files (the Firehose conversion's schema) under the
lake's ``score/year=/month=/day=/hour=`` keys, a crawl into the catalog, then the Trino views run on
DuckDB by the local query engine. ``board_clock`` is pinned so that as_of is fixed.
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import Any

import pytest

from processors.leaderboards import boards_from_rows, full_snapshot_sql
from streamboard.adapters.local.catalog import LocalCatalog
from streamboard.adapters.local.lake import LocalLake
from streamboard.adapters.local.query import LocalQueryEngine
from streamboard.ports import Board, BoardEntry
from streamboard.registry import REGISTRY
from streamboard.runtime.crawler import crawl, ensure_tables
from streamboard.runtime.firehose import to_parquet

AS_OF = dt.datetime(2026, 6, 1, 12, 0, 0)
PINNED_CLOCK = "SELECT TIMESTAMP '2026-06-01 12:00:00.000' AS as_of"
MS = dt.timedelta(milliseconds=1)
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
RECENT = AS_OF - HOUR  # inside every window
WINDOWS = ("30d", "365d", "all")  # the order ORDER BY time_window gives

_serial = itertools.count(1)


def eid(n: int) -> str:
    """A UUID-shaped event_id whose order follows n."""
    return f"00000000-0000-4000-8000-{n:012d}"


def score(
    user_id: str = "u1",
    points: int = 10,
    *,
    category: str = "chess",
    ts: dt.datetime = RECENT,
    event_id: str | None = None,
    challenge_id: str | None = None,
    user_name: str | None = None,
    received_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """One score row as the Firehose conversion writes it (naive UTC datetimes); defaults for the rest."""
    return {
        "event_id": event_id or eid(1_000_000 + next(_serial)),
        "event_type": "score",
        "user_id": user_id,
        "ts": ts,
        "app_id": "test-app",
        "received_at": received_at or ts + dt.timedelta(seconds=2),
        "category": category,
        "points": points,
        "challenge_id": challenge_id,
        "user_name": user_name,
    }


class Lakehouse:
    """A lake directory, its catalog and a query engine over them, in a temporary directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "lake"
        self.lake = LocalLake(self.root)
        self.catalog = LocalCatalog(tmp_path / "catalog.db")
        ensure_tables(self.catalog, REGISTRY)
        self._files = itertools.count()

    def write(self, rows: list[dict[str, Any]], hour: dt.datetime | None = None, name: str | None = None) -> str:
        """Write rows as one Parquet file in the partition of ``hour`` (default: the first row's received_at)."""
        when = hour or rows[0]["received_at"]
        name = name or f"streamboard-score-{next(self._files):04d}"
        key = f"score/year={when:%Y}/month={when:%m}/day={when:%d}/hour={when:%H}/{name}.parquet"
        self.lake.put_object(key, to_parquet(REGISTRY.get("score"), rows))
        return key

    def engine(self, clock: str | None = PINNED_CLOCK) -> LocalQueryEngine:
        crawl(self.lake, self.catalog, REGISTRY)
        overrides = {"board_clock": clock} if clock else None
        return LocalQueryEngine(self.root, self.catalog, view_overrides=overrides)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.engine().run(sql)[1]


@pytest.fixture
def lh(tmp_path: Path) -> Lakehouse:
    return Lakehouse(tmp_path)


BOARD_SQL = (
    "SELECT scope, time_window, board_rank, user_id, user_name, score FROM leaderboards "
    "ORDER BY scope, time_window, board_rank, user_id"
)


# --- score_events -------------------------------------------------------------------------------


def test_score_events_keeps_each_event_once_first_received_wins(lh: Lakehouse) -> None:
    t = dt.datetime(2026, 5, 31, 9, 0, 0)
    # 1: a client retry (same event, new received_at), the later copy in a file listed first.
    first = score("u1", 10, ts=t, event_id=eid(1), received_at=t + dt.timedelta(seconds=1))
    retry = dict(first, received_at=t + dt.timedelta(seconds=5))
    lh.write([retry], name="a")
    lh.write([first], name="b")
    # 2: a Firehose redelivery (identical row) in the next hour's partition.
    redelivered = score("u2", 20, ts=t, event_id=eid(2), received_at=t + dt.timedelta(minutes=59))
    lh.write([redelivered])
    lh.write([redelivered], hour=t + HOUR)
    # 3: the copy received first reached the lake late, in a later partition than the retry's.
    early = score("u3", 30, ts=t, event_id=eid(3), received_at=t + dt.timedelta(minutes=20))
    late = dict(early, received_at=t + dt.timedelta(minutes=30))
    lh.write([late], hour=t)
    lh.write([early], hour=t + 2 * HOUR)
    # 4: delivered once.
    lh.write([score("u1", 40, ts=t, event_id=eid(4), received_at=t)])

    assert lh.rows("SELECT event_id, user_id, points, received_at FROM score_events ORDER BY event_id") == [
        (eid(1), "u1", 10, t + dt.timedelta(seconds=1)),
        (eid(2), "u2", 20, t + dt.timedelta(minutes=59)),
        (eid(3), "u3", 30, t + dt.timedelta(minutes=20)),
        (eid(4), "u1", 40, t),
    ]


# --- counted_scores -----------------------------------------------------------------------------


def test_counted_scores_challenge_counts_once_per_user(lh: Lakehouse) -> None:
    t = RECENT
    lh.write([
        # c1 twice for u1: the earlier ts counts, though its event_id is larger.
        score("u1", 50, challenge_id="c1", ts=t, event_id=eid(2)),
        score("u1", 40, challenge_id="c1", ts=t - HOUR, event_id=eid(3)),
        # c2 twice for u1 at the same ts: the smallest event_id counts.
        score("u1", 5, challenge_id="c2", ts=t, event_id=eid(5)),
        score("u1", 6, challenge_id="c2", ts=t, event_id=eid(4)),
        # no challenge: every event counts, even identical-looking ones.
        score("u1", 7, ts=t, event_id=eid(6)),
        score("u1", 7, ts=t, event_id=eid(7)),
        # c1 by another user counts for that user too.
        score("u2", 50, challenge_id="c1", ts=t, event_id=eid(8)),
    ])

    assert lh.rows("SELECT event_id, user_id, challenge_id, points FROM counted_scores ORDER BY event_id") == [
        (eid(3), "u1", "c1", 40),
        (eid(4), "u1", "c2", 6),
        (eid(6), "u1", None, 7),
        (eid(7), "u1", None, 7),
        (eid(8), "u2", "c1", 50),
    ]


# --- latest_user_names --------------------------------------------------------------------------


def test_latest_user_names(lh: Lakehouse) -> None:
    t = RECENT
    lh.write([
        # u1: the latest ts wins, whatever the event_id; a later event without a name changes nothing.
        score("u1", ts=t - HOUR, user_name="New", event_id=eid(1)),
        score("u1", ts=t - 2 * HOUR, user_name="Old", event_id=eid(9)),
        score("u1", ts=t, user_name=None, event_id=eid(10)),
        # u2: same ts, the largest event_id wins.
        score("u2", ts=t, user_name="Beta", event_id=eid(3)),
        score("u2", ts=t, user_name="Alpha", event_id=eid(2)),
        # u3 never sent a name.
        score("u3", ts=t, event_id=eid(4)),
    ])

    assert lh.rows("SELECT user_id, user_name FROM latest_user_names ORDER BY user_id") == [
        ("u1", "New"),
        ("u2", "Beta"),
    ]


# --- leaderboards -------------------------------------------------------------------------------


def test_leaderboards_overall_and_category_boards_with_competition_ranking(lh: Lakehouse) -> None:
    lh.write([
        score("alice", 60, category="chess", user_name="Alice"),
        score("carol", 50, category="go", user_name="Carol"),
        score("bob", 30, category="chess"),
        score("bob", 20, category="go", user_name="Bob"),
        score("erin", 5, category="go"),
        score("dave", 10, category="chess", user_name="Dave"),
        score("dave", 20, category="go"),
    ])
    boards = {
        "chess": [(1, "alice", "Alice", 60), (2, "bob", "Bob", 30), (3, "dave", "Dave", 10)],
        # carol 50; bob and dave tie at 20 (rank 2, listed by user_id); erin is 4th, not 3rd.
        "go": [(1, "carol", "Carol", 50), (2, "bob", "Bob", 20), (2, "dave", "Dave", 20), (4, "erin", None, 5)],
        # bob (30 + 20) ties with carol; dave 30 is 4th.
        "overall": [
            (1, "alice", "Alice", 60), (2, "bob", "Bob", 50), (2, "carol", "Carol", 50),
            (4, "dave", "Dave", 30), (5, "erin", None, 5),
        ],
    }
    expected = [(scope, w, *entry) for scope, entries in boards.items() for w in WINDOWS for entry in entries]

    assert lh.rows(BOARD_SQL) == expected


def test_leaderboards_window_edges(lh: Lakehouse) -> None:
    lh.write([
        score("at_as_of", 1, ts=AS_OF),
        score("future", 1000, ts=AS_OF + MS),
        score("edge30", 20, ts=AS_OF - 30 * DAY),
        score("in30", 30, ts=AS_OF - 30 * DAY + MS),
        score("edge365", 300, ts=AS_OF - 365 * DAY),
        score("in365", 400, ts=AS_OF - 365 * DAY + MS),
    ])
    by_window = {
        "30d": [(1, "in30", 30), (2, "at_as_of", 1)],
        "365d": [(1, "in365", 400), (2, "in30", 30), (3, "edge30", 20), (4, "at_as_of", 1)],
        "all": [(1, "in365", 400), (2, "edge365", 300), (3, "in30", 30), (4, "edge30", 20), (5, "at_as_of", 1)],
    }
    expected = [
        (scope, w, rank, user, score_)
        for scope in ("chess", "overall")
        for w, entries in by_window.items()
        for rank, user, score_ in entries
    ]

    rows = lh.rows(
        "SELECT scope, time_window, board_rank, user_id, score FROM leaderboards "
        "ORDER BY scope, time_window, board_rank, user_id"
    )
    assert rows == expected


def test_leaderboards_score_is_a_bigint_sum(lh: Lakehouse) -> None:
    # 2,200 events of the largest allowed points: 2.2e9 > 2^31 - 1.
    lh.write([score("whale", 1_000_000) for _ in range(2_200)] + [score("minnow", 1)])

    rows = lh.rows(
        "SELECT time_window, user_id, score, typeof(score), typeof(board_rank) FROM leaderboards "
        "WHERE scope = 'overall' ORDER BY time_window, board_rank"
    )
    assert [(w, u, s, t1.lower(), t2.lower()) for w, u, s, t1, t2 in rows] == [
        (w, u, s, "bigint", "bigint") for w in WINDOWS for u, s in (("whale", 2_200_000_000), ("minnow", 1))
    ]


def test_leaderboards_empty_board_marker(lh: Lakehouse) -> None:
    # chess has events, but none in the last 30 days: its 30d board is empty, and so is overall's.
    lh.write([score("u1", 10, category="chess", ts=AS_OF - 40 * DAY, user_name="One")])

    assert lh.rows(BOARD_SQL) == [
        ("chess", "30d", None, None, None, None),
        ("chess", "365d", 1, "u1", "One", 10),
        ("chess", "all", 1, "u1", "One", 10),
        ("overall", "30d", None, None, None, None),
        ("overall", "365d", 1, "u1", "One", 10),
        ("overall", "all", 1, "u1", "One", 10),
    ]


def test_leaderboards_empty_lake_still_has_the_overall_boards(lh: Lakehouse) -> None:
    assert lh.rows(
        "SELECT scope, time_window, as_of, board_rank, user_id, user_name, score FROM leaderboards "
        "ORDER BY scope, time_window"
    ) == [("overall", w, AS_OF, None, None, None, None) for w in WINDOWS]


def test_leaderboards_as_of_is_the_clock(lh: Lakehouse) -> None:
    lh.write([score("u1", 1, category="chess"), score("u2", 2, category="go", ts=AS_OF - 100 * DAY)])

    assert lh.rows("SELECT scope, time_window, as_of, user_id FROM leaderboards ORDER BY 1, 2, 4") == [
        ("chess", "30d", AS_OF, "u1"),
        ("chess", "365d", AS_OF, "u1"),
        ("chess", "all", AS_OF, "u1"),
        ("go", "30d", AS_OF, None),
        ("go", "365d", AS_OF, "u2"),
        ("go", "all", AS_OF, "u2"),
        ("overall", "30d", AS_OF, "u1"),
        ("overall", "365d", AS_OF, "u1"),
        ("overall", "365d", AS_OF, "u2"),
        ("overall", "all", AS_OF, "u1"),
        ("overall", "all", AS_OF, "u2"),
    ]


def test_leaderboards_keep_ranks_up_to_1000(lh: Lakehouse) -> None:
    # 999 distinct scores (ranks 1..999), three users tied at rank 1000, then one at rank 1003.
    rows = [score(f"u{i:04d}", 10_000 - i) for i in range(999)]
    rows += [score(u, 5) for u in ("tie_a", "tie_b", "tie_c")]
    rows.append(score("last", 1))
    lh.write(rows)

    result = lh.rows(
        "SELECT board_rank, user_id FROM leaderboards WHERE scope = 'overall' AND time_window = 'all' "
        "ORDER BY board_rank, user_id"
    )
    assert len(result) == 1002
    assert result[:2] == [(1, "u0000"), (2, "u0001")]
    assert result[-4:] == [(999, "u0998"), (1000, "tie_a"), (1000, "tie_b"), (1000, "tie_c")]
    assert lh.rows("SELECT count(*) FROM leaderboards WHERE user_id = 'last'") == [(0,)]


# --- user_totals --------------------------------------------------------------------------------


def test_user_totals_after_dedupe_and_challenge_rules(lh: Lakehouse) -> None:
    twice = score("u1", 20, category="chess")
    lh.write([
        score("u1", 10, category="chess"),
        twice,
        score("u1", 5, category="go", challenge_id="c1", ts=RECENT - HOUR),
        score("u1", 7, category="go", challenge_id="c1", ts=RECENT),  # a repeat: does not count
        score("u1", 1, category="go"),
        score("u2", 3, category="chess", ts=AS_OF - 400 * DAY),  # all time: old events count
    ])
    lh.write([twice], hour=twice["received_at"] + HOUR)  # redelivered

    assert lh.rows("SELECT user_id, category, points, total FROM user_totals ORDER BY user_id, category") == [
        ("u1", "chess", 30, 36),
        ("u1", "go", 6, 36),
        ("u2", "chess", 3, 3),
    ]


# --- board_clock --------------------------------------------------------------------------------


def test_board_clock_real_file_runs_on_duckdb(lh: Lakehouse) -> None:
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    rows = lh.engine(clock=None).run("SELECT as_of FROM board_clock")[1]
    after = dt.datetime.now(dt.UTC).replace(tzinfo=None)

    assert len(rows) == 1
    (as_of,) = rows[0]
    assert isinstance(as_of, dt.datetime) and as_of.tzinfo is None
    assert as_of.microsecond == 0
    assert before <= as_of <= after


# --- the snapshot query and the boards built from it --------------------------------------------


def test_snapshot_query_to_boards(lh: Lakehouse) -> None:
    lh.write([
        score("zed", 10, category="chess", user_name="Zed"),
        score("amy", 10, category="chess"),
        score("kim", 30, category="chess", user_name="Kim"),
        score("amy", 4, category="go", ts=AS_OF - 60 * DAY, user_name="Amy"),  # go: nothing in 30d
    ])
    names, rows = lh.engine().run(full_snapshot_sql())
    assert names == ["scope", "time_window", "as_of", "board_rank", "user_id", "user_name", "score"]
    # display order: scope, window, rank, then user_id for ties; an empty board is one row without a user
    top3 = [(1, "kim"), (2, "amy"), (2, "zed")]
    assert [(r[0], r[1], r[3], r[4]) for r in rows] == (
        [("chess", w, *e) for w in WINDOWS for e in top3]
        + [("go", "30d", None, None), ("go", "365d", 1, "amy"), ("go", "all", 1, "amy")]
        + [("overall", "30d", *e) for e in top3]
        + [("overall", w, *e) for w in ("365d", "all") for e in [(1, "kim"), (2, "amy"), (3, "zed")]]
    )

    refreshed = "2026-06-01T12:00:05.000Z"
    boards = boards_from_rows([dict(zip(names, r, strict=True)) for r in rows], refreshed)

    as_of = "2026-06-01T12:00:00Z"
    chess = (BoardEntry(1, "kim", "Kim", 30), BoardEntry(2, "amy", "Amy", 10), BoardEntry(2, "zed", "Zed", 10))
    go = (BoardEntry(1, "amy", "Amy", 4),)
    overall_recent = chess
    overall_old = (BoardEntry(1, "kim", "Kim", 30), BoardEntry(2, "amy", "Amy", 14), BoardEntry(3, "zed", "Zed", 10))
    assert boards == [
        Board("chess", "30d", as_of, refreshed, chess),
        Board("chess", "365d", as_of, refreshed, chess),
        Board("chess", "all", as_of, refreshed, chess),
        Board("go", "30d", as_of, refreshed, ()),
        Board("go", "365d", as_of, refreshed, go),
        Board("go", "all", as_of, refreshed, go),
        Board("overall", "30d", as_of, refreshed, overall_recent),
        Board("overall", "365d", as_of, refreshed, overall_old),
        Board("overall", "all", as_of, refreshed, overall_old),
    ]
