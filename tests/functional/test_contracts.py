"""One contract suite per port, run against both adapters: ``local`` and ``aws`` (boto3 on moto's mock_aws).

The two must behave alike where a caller can see it: ordering per partition key, per-record results,
batching limits, idempotent writes, atomic snapshot swaps, pagination, hashed keys.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sqlite3
import string
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from streamboard.adapters.aws.items import layout, page_entries, page_key
from streamboard.adapters.aws.stores import DynamoItems
from streamboard.adapters.local.stores import SqliteItems
from streamboard.backend import Backend, build_aws_backend, build_local_backend
from streamboard.boards import PagedBoards
from streamboard.errors import BadRequest, NotFound, SinkError
from streamboard.packing import MAX_RECORD_BYTES
from streamboard.ports import Board, BoardEntry, Partition, StreamRecord
from streamboard.ranks import RankTrees, UserScores, node_key, walk_nodes
from streamboard.registry import REGISTRY
from streamboard.settings import Settings
from tests import rank_oracle

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(params=["local", "aws"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def any_backend(kind: str, tmp_path: Path, fake_aws_credentials: None) -> Iterator[Backend]:
    settings = Settings(data_dir=tmp_path / "data", shards=2)
    if kind == "local":
        yield build_local_backend(settings)
        return
    with mock_aws():
        from streamboard.adapters.aws.provision import provision

        clients = provision(settings, REGISTRY)
        yield build_aws_backend(settings, REGISTRY, clients)


# --- event stream -------------------------------------------------------------------------------------

def test_stream_keeps_order_per_partition_key_and_returns_one_result_per_record(any_backend: Backend) -> None:
    stream = any_backend.stream
    records = [StreamRecord(f"user-{i % 5}", json.dumps({"n": i}).encode()) for i in range(60)]
    results = stream.put_records(records)
    assert len(results) == 60 and all(r.ok and r.sequence_number and r.shard_id for r in results)
    seen: dict[str, list[int]] = {}
    for shard in stream.shard_ids():
        for rec in stream.read(shard, None, 1000):
            seen.setdefault(rec.partition_key, []).append(json.loads(rec.data)["n"])
    assert sorted(n for ns in seen.values() for n in ns) == list(range(60))
    for key, ns in seen.items():
        assert ns == sorted(ns), f"records of {key} out of order"
        assert {n % 5 for n in ns} == {int(key.split("-")[1])}  # one partition key lives on one shard


def test_stream_reads_after_a_sequence_number_and_respects_the_limit(any_backend: Backend) -> None:
    stream = any_backend.stream
    stream.put_records([StreamRecord("same-key", str(i).encode()) for i in range(10)])
    shard = next(s for s in stream.shard_ids() if stream.read(s, None, 1))
    first = stream.read(shard, None, 4)
    assert [r.data for r in first] == [b"0", b"1", b"2", b"3"]
    rest = stream.read(shard, first[-1].sequence_number, 100)
    assert [r.data for r in rest] == [str(i).encode() for i in range(4, 10)]
    assert stream.latest(shard) == rest[-1].sequence_number
    assert all(r.arrival > 0 for r in rest)


def test_stream_splits_puts_over_500_records(any_backend: Backend) -> None:
    results = any_backend.stream.put_records([StreamRecord(f"k{i}", b"x") for i in range(1200)])
    assert len(results) == 1200 and all(r.ok for r in results)


# --- dead-letter queue --------------------------------------------------------------------------------

def test_queue_batches_receives_and_deletes(any_backend: Backend) -> None:
    q = any_backend.dlq
    bodies = [json.dumps({"i": i}).encode() for i in range(23)]
    q.send(bodies)
    assert q.depth() == 23
    got: list[bytes] = []
    for _ in range(10):
        msgs = q.receive(10)
        assert len(msgs) <= 10
        if not msgs:
            break
        got.extend(m.body for m in msgs)
        q.delete([m.receipt for m in msgs])
    assert sorted(got) == sorted(bodies)
    assert q.depth() == 0


def test_queue_message_not_deleted_stays_in_the_queue(any_backend: Backend) -> None:
    q = any_backend.dlq
    q.send([b'{"a":1}'])
    assert [m.body for m in q.receive(10)] == [b'{"a":1}']
    assert q.depth() == 1  # in flight, not gone


# --- delivery streams ---------------------------------------------------------------------------------

def test_delivery_accepts_batches_over_the_api_limit(any_backend: Backend) -> None:
    stream = REGISTRY.get("score").delivery_stream
    assert any_backend.delivery.put_record_batch(stream, [b'{"x":1}\n'] * 1100) == []


def _delivered(backend: Backend, kind: str, stream: str) -> bytes:
    """Every byte delivered to ``stream`` so far, in order (moto writes each call's records joined)."""
    if kind == "local":
        return b"".join(data for _, data, _ in backend.delivery.take(stream, 1 << 40, 1 << 20))  # type: ignore[attr-defined]
    return b"".join(backend.lake.get_object(k) for k in backend.lake.list_keys(f"firehose-raw/{stream}/"))


def test_delivery_takes_records_up_to_1000_kib_and_refuses_larger_ones_whole(any_backend: Backend, kind: str) -> None:
    stream = REGISTRY.get("score").delivery_stream
    line = b'{"x":1}\n'
    full = line * (MAX_RECORD_BYTES // len(line))
    assert len(full) == MAX_RECORD_BYTES
    with pytest.raises(ValueError, match="at most 1,024,000"):
        any_backend.delivery.put_record_batch(stream, [line, full + line])
    assert _delivered(any_backend, kind, stream) == b""  # nothing of the refused call
    records = [full] * 5 + [line]  # 5 MB: more than one call takes (4 MiB)
    assert any_backend.delivery.put_record_batch(stream, records) == []
    assert _delivered(any_backend, kind, stream) == b"".join(records)


# --- lake ---------------------------------------------------------------------------------------------

def test_lake_put_get_list(any_backend: Backend) -> None:
    lake = any_backend.lake
    lake.put_object("score/year=2026/month=01/day=02/hour=03/a.parquet", b"A")
    lake.put_object("score/year=2026/month=01/day=02/hour=04/b.parquet", b"B")
    lake.put_object("action/year=2026/month=01/day=02/hour=03/c.parquet", b"C")
    assert lake.get_object("score/year=2026/month=01/day=02/hour=04/b.parquet") == b"B"
    assert lake.list_keys("score/") == [
        "score/year=2026/month=01/day=02/hour=03/a.parquet",
        "score/year=2026/month=01/day=02/hour=04/b.parquet",
    ]
    with pytest.raises(NotFound):
        lake.get_object("score/missing.parquet")


def test_lake_lists_more_than_one_page(any_backend: Backend) -> None:
    for i in range(1005):
        any_backend.lake.put_object(f"many/{i:05d}.json", b"{}")
    assert len(any_backend.lake.list_keys("many/")) == 1005


# --- catalog ------------------------------------------------------------------------------------------

def test_catalog_tables_and_idempotent_partitions(any_backend: Backend) -> None:
    cat = any_backend.catalog
    t = REGISTRY.get("score")
    cat.ensure_table(t.name, t.glue_columns(), t.glue_partition_keys())
    cat.ensure_table(t.name, t.glue_columns(), t.glue_partition_keys())  # again: no error
    assert "score" in cat.table_names()
    parts = [Partition(("2026", "01", "02", f"{h:02d}"), f"score/year=2026/month=01/day=02/hour={h:02d}")
             for h in range(3)]
    assert cat.add_partitions("score", parts) == 3
    assert cat.add_partitions("score", parts[1:] + [Partition(("2026", "01", "02", "09"),
                                                              "score/year=2026/month=01/day=02/hour=09")]) == 1
    got = cat.partitions("score")
    assert [p.values for p in got] == [("2026", "01", "02", h) for h in ("00", "01", "02", "09")]
    assert got[0].location == "score/year=2026/month=01/day=02/hour=00"


# --- board store --------------------------------------------------------------------------------------

def _board(scope: str, window: str, n: int, as_of: str = "2026-01-01T00:00:00Z", tag: str = "") -> Board:
    entries = tuple(BoardEntry(i + 1, f"u{i:04d}", f"name{tag}{i}", 1000 - i) for i in range(n))
    return Board(scope, window, as_of, "2026-01-01T00:00:05.000Z", entries)


def test_board_snapshot_replace_get_limit_and_ranks(any_backend: Backend) -> None:
    store = any_backend.boards
    assert store.get_board("overall", "all", 10) is None
    store.replace_boards([_board("overall", "all", 1000), _board("arcade", "30d", 3)])
    got = store.get_board("overall", "all", 10)
    assert got is not None and len(got.entries) == 10 and got.entries[0] == BoardEntry(1, "u0000", "name0", 1000)
    assert got.as_of == "2026-01-01T00:00:00Z" and got.refreshed_at == "2026-01-01T00:00:05.000Z"
    assert len(store.get_board("overall", "all", 1000).entries) == 1000  # type: ignore[union-attr]
    assert store.scopes() == ["arcade", "overall"]
    assert store.ranks_for("u0002") == [
        {"scope": "arcade", "window": "30d", "rank": 3, "score": 998},
        {"scope": "overall", "window": "all", "rank": 3, "score": 998},
    ]
    store.replace_boards([_board("overall", "all", 2, as_of="2026-01-02T00:00:00Z", tag="v2")])
    again = store.get_board("overall", "all", 1000)
    assert again is not None and [e.user_name for e in again.entries] == ["namev20", "namev21"]
    assert again.as_of == "2026-01-02T00:00:00Z"
    store.replace_boards([_board("overall", "all", 2, as_of="2026-01-02T00:00:00Z", tag="v2")])  # idempotent
    assert store.get_board("overall", "all", 1000) == again
    store.replace_boards([Board("arcade", "30d", "2026-01-02T00:00:00Z", None, ())])  # emptied board
    assert store.get_board("arcade", "30d", 10).entries == ()  # type: ignore[union-attr]


# --- board store: paged snapshots (streamboard.boards) -------------------------------------------------

def _tied_board(ids: str, n: int = 1000, tag: str = "") -> Board:
    """Entries tie in threes (places 99-101 share rank 99, and ties straddle the page boundaries),
    in board order (score descending, then user_id) with competition ranks; ``ids`` short (the head holds
    exactly 100 entries) or long (uuid ids and 30-letter names: it holds fewer)."""
    rng = random.Random(7)
    users = [(f"p{i:04d}", f"{tag}{i}") if ids == "short" else
             (str(uuid.UUID(int=rng.getrandbits(128), version=4)),
              tag + "".join(rng.choice(string.ascii_letters) for _ in range(30))) for i in range(n)]
    ordered = sorted(((100_000 - ((i + 1) // 3) * 7, u, name) for i, (u, name) in enumerate(users)),
                     key=lambda p: (-p[0], p[1]))
    entries, rank = [], 0
    for i, (score, user, name) in enumerate(ordered):
        if i == 0 or score != ordered[i - 1][0]:
            rank = i + 1
        entries.append(BoardEntry(rank, user, name, score))
    return Board("overall", "all", "2026-01-01T00:00:00Z", "2026-01-01T00:00:05.000Z", tuple(entries))


@pytest.mark.parametrize("ids", ["short", "long"])
def test_board_pages_agree_with_the_whole_board(any_backend: Backend, ids: str) -> None:
    store = any_backend.boards
    board = _tied_board(ids)
    assert [e.rank for e in board.entries[98:102]] == [99, 99, 99, 102]  # places 100 and 101 tie
    store.replace_boards([board])
    top = layout(board.entries).top  # short: the head ends inside the tie of places 99-101; long: sooner
    assert top == 100 if ids == "short" else 10 < top < 100
    ends = range(top, 1000, layout(board.entries).per_page)  # where the head and each page end
    assert any(board.entries[i - 1].rank == board.entries[i].rank for i in ends)  # a tie across a boundary
    edges = {i + d for i in ends for d in (-1, 0, 1)}
    for limit in sorted({1, 10, 99, 100, 101, 102, 199, 200, 201, 202, 555, 999, 1000} | edges):
        got = store.get_board("overall", "all", limit)
        assert got is not None and got.entries == board.entries[:limit], limit
    assert store.get_board("overall", "all", 1000) == board
    for i in (0, 99, 100, 101, top, ends[1] if len(ends) > 1 else 500, 640, 999):  # head, its edges, pages
        e = board.entries[i]
        assert store.ranks_for(e.user_id) == [{"scope": "overall", "window": "all", "rank": e.rank, "score": e.score}]
    assert store.ranks_for("nobody") == []


def _paged(store: Any, **options: Any) -> PagedBoards:
    """Another process's board store over the same table (its own cache, its own copy count)."""
    options.setdefault("copies", store.copies)
    options.setdefault("cache_seconds", 0)
    return PagedBoards(store.table, **options)


def _page_items(table: Any) -> set[tuple[str, str]]:
    """The keys of every page stored in the table (a scan: pages of equal entries are shared by boards and
    keyed by their version alone)."""
    if hasattr(table, "db"):  # the local store's SQLite table
        return set(table.db.conn().execute("SELECT pk, sk FROM board_table WHERE pk LIKE 'page#%'").fetchall())
    pages = table.clients("dynamodb").get_paginator("scan").paginate(TableName=table.table)
    return {(i["pk"]["S"], i["sk"]["S"]) for page in pages for i in page["Items"] if i["pk"]["S"].startswith("page#")}


def _page_versions(table: Any) -> set[str]:
    """The versions of every page stored."""
    return {pk.removeprefix("page#") if pk.startswith("page#h") else sk.split("#")[0] for pk, sk in _page_items(table)}


def _head_versions(table: Any, scope: str = "overall", window: str = "all") -> set[str]:
    """The current version of a board's head and the previous one it names."""
    head = table.get(("board", f"{scope}#{window}"), consistent=True)
    return {head["version"]["S"], *([head["previous"]["S"]] if "previous" in head else [])}


@pytest.mark.parametrize("replaces", [1, 2])
def test_a_read_during_replaces_never_mixes_two_versions(any_backend: Backend, monkeypatch: pytest.MonkeyPatch,
                                                         replaces: int) -> None:
    """A reader gets a head; before it fetches that version's pages, another writer replaces the board once (the
    old version's pages are kept: the reader gets the old board whole) or twice (they are gone: it starts again
    from the newest head and gets that board whole)."""
    versions = [_tied_board("long", tag=f"v{i}-") for i in (1, 2, 3)]
    table = any_backend.boards.table  # type: ignore[attr-defined]
    writer = _paged(any_backend.boards)
    writer.replace_boards(versions[:1])
    pending = list(versions[1:1 + replaces])
    real_get = table.get

    def get(key: tuple[str, str], *, consistent: bool) -> Any:
        item = real_get(key, consistent=consistent)
        if pending and key[0].startswith("board") and not consistent:  # the reader's first head, not the writer's
            for board in pending:
                writer.replace_boards([board])
            pending.clear()
        return item

    monkeypatch.setattr(table, "get", get)
    got = _paged(any_backend.boards).get_board("overall", "all", 1000)
    monkeypatch.undo()
    assert got == versions[0 if replaces == 1 else replaces]
    # storage holds the pages of the current version and of the one before it, no more
    assert _page_versions(table) == _head_versions(table) and len(_page_versions(table)) == 2


def test_windows_with_the_same_entries_share_their_pages_and_none_are_left_behind(
        any_backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scope's windows with the same entries (every point that recent) write their pages once and all read
    them; a window whose entries differ gets pages of its own; the pages that no head names any more go (and
    only those: another board's head may still name them)."""
    table = any_backend.boards.table  # type: ignore[attr-defined]
    store = _paged(any_backend.boards)
    a, b, c, d = (_tied_board("long", tag=f"{t}-") for t in "abcd")
    written: list[str] = []
    real_write_many = table.write_many

    def write_many(puts: Any, deletes: Any) -> None:
        written.extend(i["pk"]["S"] for i in puts if i["pk"]["S"].startswith("page#"))
        real_write_many(puts, deletes)

    monkeypatch.setattr(table, "write_many", write_many)

    def snapshot(entries: dict[str, Board]) -> int:
        """Replace the three windows; every board reads whole; returns the page items written."""
        written.clear()
        boards = [replace(board, window=w) for w, board in entries.items()]
        store.replace_boards(boards)
        for board in boards:
            assert _paged(any_backend.boards).get_board("overall", board.window, 1000) == board
        named = set().union(*(_head_versions(table, "overall", w) for w in entries))
        assert _page_versions(table) == named  # nothing left behind, nothing a head names missing
        return len(written)

    pages = len(layout(a.entries).pages)
    assert pages >= 5
    assert snapshot({"all": a, "30d": a, "365d": a}) == pages  # one set of pages for the three windows
    assert snapshot({"all": a, "30d": b, "365d": a}) == pages  # the 30 days' own
    assert snapshot({"all": c, "30d": b, "365d": a}) == pages
    assert snapshot({"all": d, "30d": b, "365d": a}) == pages  # all no longer names a's pages; 365d still does
    assert snapshot({"all": d, "30d": d, "365d": d}) == 0  # d's pages serve the three: nothing written
    assert snapshot({"all": c, "30d": c, "365d": c}) == 0  # c's were kept: all named them as its previous
    assert len(_page_versions(table)) == 2  # c's and d's: every board names them now, and nothing else


def test_writers_at_once_take_turns_and_orphan_no_pages(any_backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two writers replace a board at once (the writer Lambda may run twice): the one whose head lands second
    reads again, names the other's version as the previous, and the pages of no version are left behind."""
    old, first, second = (_tied_board("long", tag=f"{t}-") for t in ("old", "first", "second"))
    table = any_backend.boards.table  # type: ignore[attr-defined]
    slow, fast = _paged(any_backend.boards), _paged(any_backend.boards)
    slow.replace_boards([old])
    fast.replace_boards([_tied_board("long", tag="older-")])  # so that the first head names a previous version
    racing = [first]
    real_get = table.get

    def get(key: tuple[str, str], *, consistent: bool) -> Any:
        item = real_get(key, consistent=consistent)
        while racing:  # the slow writer has read the head: the fast one replaces the board meanwhile
            fast.replace_boards([racing.pop()])
        return item

    monkeypatch.setattr(table, "get", get)
    slow.replace_boards([second])
    monkeypatch.undo()
    assert _paged(any_backend.boards).get_board("overall", "all", 1000) == second
    head = table.get(("board", "overall#all"), consistent=True)
    # the head names first's version as the previous, whose pages a reader holding first's head still finds;
    # the pages of the versions before are gone
    assert _page_versions(table) == _head_versions(table) == {head["version"]["S"], head["previous"]["S"]}
    page = table.get(page_key("overall", "all", head["previous"]["S"], 1), consistent=True)
    lay = layout(first.entries)
    assert page_entries(page) == first.entries[lay.top:lay.top + lay.per_page]


def test_hot_board_reads_spread_over_head_copies_of_one_version(any_backend: Backend,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    store = any_backend.boards
    table = store.table  # type: ignore[attr-defined]
    one = _tied_board("short", n=300, tag="one-")
    _paged(store, copies=4).replace_boards([one])
    heads: list[str] = []
    real_get = table.get

    def get(key: tuple[str, str], *, consistent: bool) -> Any:
        heads.append(key[0])
        return real_get(key, consistent=consistent)

    monkeypatch.setattr(table, "get", get)
    reader = _paged(store, copies=4, rng=random.Random(3))
    assert {reader.get_board("overall", "all", 300) for _ in range(40)} == {one}
    assert set(heads) == {"board", "board#1", "board#2", "board#3"}  # four items share the load
    # a reader configured with more copies than were written falls back to copy 0
    assert {_paged(store, copies=8).get_board("overall", "all", 10) for _ in range(20)} == {
        replace(one, entries=one.entries[:10])}
    # a writer with fewer copies removes the rest: a reader still on four never reads a stale copy
    two = _tied_board("short", n=300, tag="two-")
    _paged(store, copies=2).replace_boards([two])
    assert {_paged(store, copies=4).get_board("overall", "all", 300) for _ in range(20)} == {two}


def test_a_board_in_the_one_item_layout_is_read_until_its_first_replace(any_backend: Backend) -> None:
    """Deployed over a table written before pages: each board is one item holding every entry."""
    store = any_backend.boards
    table = store.table  # type: ignore[attr-defined]
    old = _board("overall", "all", 1000, tag="old")
    table.put({"pk": {"S": "board"}, "sk": {"S": "overall#all"}, "scope": {"S": "overall"}, "window": {"S": "all"},
               "entries": {"B": zlib.compress(json.dumps([[e.rank, e.user_id, e.user_name, e.score]
                                                          for e in old.entries]).encode())},
               "as_of": {"S": old.as_of}, "refreshed_at": {"S": old.refreshed_at}})
    assert store.get_board("overall", "all", 1000) == old
    assert store.get_board("overall", "all", 5) == replace(old, entries=old.entries[:5])
    assert store.scopes() == ["overall"] and store.ranks_for("u0500")[0]["rank"] == 501
    new = _board("overall", "all", 1000, tag="new")
    store.replace_boards([new])
    assert _paged(store).get_board("overall", "all", 1000) == new


def test_local_boards_of_a_data_dir_made_before_pages_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "data" / "boards.db"
    path.parent.mkdir()
    with sqlite3.connect(path) as conn:  # the tables of the layout before pages, with one board
        conn.executescript("""
            CREATE TABLE snapshots (snapshot_id INTEGER PRIMARY KEY AUTOINCREMENT, scope TEXT NOT NULL,
              win TEXT NOT NULL, as_of TEXT, refreshed_at TEXT);
            CREATE TABLE boards (scope TEXT NOT NULL, win TEXT NOT NULL, snapshot_id INTEGER NOT NULL,
              PRIMARY KEY (scope, win));
            CREATE TABLE entries (snapshot_id INTEGER NOT NULL, rank INTEGER NOT NULL, user_id TEXT NOT NULL,
              user_name TEXT, score INTEGER NOT NULL);
            CREATE TABLE board_items (scope TEXT NOT NULL, win TEXT NOT NULL, bytes INTEGER NOT NULL,
              PRIMARY KEY (scope, win));
            INSERT INTO snapshots VALUES (7, 'arcade', '30d', '2026-01-01T00:00:00Z', '2026-01-01T00:00:05.000Z');
            INSERT INTO boards VALUES ('arcade', '30d', 7);
        """)
        conn.executemany("INSERT INTO entries VALUES (7, ?, ?, ?, ?)",
                         [(i + 1, f"u{i:04d}", f"name{i}", 1000 - i) for i in range(250)])
    backend = build_local_backend(Settings(data_dir=tmp_path / "data"))
    assert backend.boards.get_board("arcade", "30d", 1000) == _board("arcade", "30d", 250)
    assert backend.usage is not None and backend.usage.report()["units"]["dynamodb_write_units"] == 0  # not billed
    assert build_local_backend(Settings(data_dir=tmp_path / "data")).boards.scopes() == ["arcade"]  # moved once


# --- rank store (streamboard.ranks) --------------------------------------------------------------------

SCOPES, WINDOWS3 = ("overall", "chess", "go"), ("all", "30d", "365d")


def _rank_users(scores: dict[str, dict[tuple[str, str], int]], names: dict[str, str | None],
                only: set[str] | None = None, renamed: frozenset[str] = frozenset()) -> list[UserScores]:
    """rank_scores.sql's rows for these users (all of them, or ``only``)."""
    out = []
    for user in sorted(only if only is not None else scores):
        mine = scores.get(user, {})
        scopes = tuple((s, *(mine.get((s, w), 0) for w in WINDOWS3)) for s in SCOPES
                       if any(mine.get((s, w), 0) for w in WINDOWS3))
        out.append(UserScores(user, names.get(user), user in renamed, scopes))  # type: ignore[arg-type]
    return out


def _random_scores(rng: random.Random, n: int) -> tuple[dict[str, dict[tuple[str, str], int]], dict[str, str | None]]:
    """n users on boards of three scopes, scores drawn from small ranges (many ties), some boards skipped."""
    scores: dict[str, dict[tuple[str, str], int]] = {}
    for i in range(n):
        user = f"p{i:05d}" if i % 7 else str(uuid.UUID(int=rng.getrandbits(128), version=4))
        mine = {}
        for scope in SCOPES[1:]:
            if rng.random() < 0.6:
                a = rng.randrange(1, 40)
                d30 = rng.choice([0, rng.randrange(1, a + 1)])
                d365 = max(d30, rng.randrange(0, a + 1))
                mine.update({(scope, "all"): a, (scope, "30d"): d30, (scope, "365d"): d365})
        if mine:
            for w in WINDOWS3:
                mine[("overall", w)] = sum(v for (s, ww), v in mine.items() if ww == w and s != "overall")
            scores[user] = {k: v for k, v in mine.items() if v}
    names = {u: rng.choice([None, f"Player {i}"]) for i, u in enumerate(scores)}
    return scores, names


def _check_ranks(store: Any, scores: dict[str, dict[tuple[str, str], int]], names: dict[str, str | None],
                 rng: random.Random) -> None:
    ordered = rank_oracle.boards(scores, names)
    expected = rank_oracle.ranks(ordered)
    for user in list(scores) + ["nobody"]:
        assert store.ranks_for(user) == expected.get(user, []), user
    for (scope, window), entries in ordered.items():
        tie = next(e for i, e in enumerate(entries) if i and entries[i - 1].rank == e.rank)
        for user in {entries[0].user_id, entries[len(entries) // 2].user_id, entries[-1].user_id, tie.user_id,
                     rng.choice(entries).user_id}:
            for limit in (1, 2, 11, 50):
                got = store.around(scope, window, user, limit)
                assert list(got.entries) == rank_oracle.around(entries, user, limit), (scope, window, user, limit)
    absent = next(u for u in scores if ("chess", "30d") not in scores[u])
    with pytest.raises(NotFound, match="not on the chess board"):
        store.around("chess", "30d", absent, 10)
    with pytest.raises(NotFound, match="no leaderboard for scope 'checkers'"):
        store.around("checkers", "all", absent, 10)


def _rank_items(backend: Backend) -> set[tuple[str, str]]:
    """Every stored key of the ranks (a scan of the table: nodes, retired lists, heads)."""
    table = backend.boards.table  # type: ignore[attr-defined]
    if hasattr(table, "db"):
        keys = set(table.db.conn().execute("SELECT pk, sk FROM board_table").fetchall())
    else:
        pages = table.clients("dynamodb").get_paginator("scan").paginate(TableName=table.table)
        keys = {(i["pk"]["S"], i["sk"]["S"]) for page in pages for i in page["Items"]}
    return {k for k in keys if k[0].startswith(("rnode#", "rretired#", "ranks"))}


def _another_table(backend: Backend) -> Any:
    """Another client of the boards' table (another process's)."""
    table = backend.boards.table  # type: ignore[attr-defined]
    if hasattr(table, "db"):
        return SqliteItems(table.db.path)
    return DynamoItems(table.clients, table.table)


def _reachable(store: Any) -> set[tuple[str, str]]:
    head = store.current(fresh=True)[0]
    ids = []
    for root in [head.users, head.delta_users, *head.boards.values(), *head.delta_boards.values()]:
        ids += walk_nodes(store._load, root)
    return {node_key(n) for n in ids}


def test_ranks_of_every_user_and_the_entries_around_any_user_agree_with_the_oracle(any_backend: Backend) -> None:
    rng = random.Random(11)
    store = any_backend.ranks
    assert store.ranks_for("p00001") is None and store.built_batch() is None  # nothing written yet
    assert store.around("overall", "all", "p00001", 10) is None
    scores, names = _random_scores(rng, 1300)
    assert max(len(v) for v in rank_oracle.boards(scores).values()) > 1000  # beyond a board's stored top 1000
    written = store.write(_rank_users(scores, names), batch=1, plan="1@a", rebuild=True, base_batch=0,
                          as_of="2026-01-01T00:00:00Z", refreshed_at="2026-01-01T00:00:05.000Z")
    assert written["written"] and store.built_batch() == 1
    _check_ranks(store, scores, names, rng)

    # the next batch changed 40 users: moved, tied, renamed, gone from a board or from all, new
    first = {u: dict(m) for u, m in scores.items()}
    changed = set(rng.sample(sorted(scores), 36)) | {"new-1", "new-2", "new-3", "new-4"}
    renamed = frozenset(rng.sample(sorted(changed - {"new-1", "new-2", "new-3", "new-4"}), 5))
    for i, user in enumerate(sorted(changed)):
        if i % 9 == 0:
            scores.pop(user, None)
            continue
        mine = dict(scores.get(user, {}))
        if i % 4 == 0:
            mine.pop(("go", "30d"), None)
        mine[("go", "all")] = mine.get(("go", "all"), 0) + rng.randrange(1, 6)
        mine[("overall", "all")] = sum(v for (s, w), v in mine.items() if w == "all" and s != "overall")
        scores[user] = mine
    for user in renamed:
        names[user] = "renamed " + user
    head = store.current(fresh=True)[0]
    depth = 1 + max(r.level for r in [head.users, *head.boards.values()])
    written = store.write(_rank_users(scores, names, changed, renamed), batch=2, plan="2@b", rebuild=False,
                          base_batch=1, as_of="2026-01-01T01:00:00Z", refreshed_at="2026-01-01T01:00:05.000Z")
    assert written["written"] and written["version"] == 2
    # at most the paths of the keys that changed: a delete and an insert per (user, board) changed, and the
    # user's entry in the index
    moves = sum(1 for u in changed for b in set(first.get(u, {})) | set(scores.get(u, {}))
                if first.get(u, {}).get(b) != scores.get(u, {}).get(b) or u in renamed)
    assert 0 < written["nodes"] <= (2 * moves + len(changed)) * depth
    _check_ranks(store, scores, names, rng)
    again = store.write(_rank_users(scores, names, changed, renamed), batch=2, plan="2@b", rebuild=False,
                        base_batch=1, as_of=None, refreshed_at=None)
    assert not again["written"] and _rank_items(any_backend) == _rank_items(any_backend)  # a retried write: nothing
    # a batch planned on other ranks than the store's is refused (the next plan builds them again)
    assert not store.write([], batch=3, plan="3@c", rebuild=False, base_batch=1, as_of=None,
                           refreshed_at=None)["written"]
    board = store.around("go", "all", sorted(changed - {"new-1"})[1], 3)
    assert board is not None and board.as_of == "2026-01-01T01:00:00Z" and board.refreshed_at.endswith("05.000Z")


def test_a_version_keeps_the_nodes_of_the_one_before_and_no_older(any_backend: Backend) -> None:
    """After each write the table holds the current version's nodes, and those of the version before that it
    replaced (a reader may hold that head), no other: a retried or stopped write leaves nothing behind."""
    rng = random.Random(5)
    store = any_backend.ranks
    scores, names = _random_scores(rng, 300)
    store.write(_rank_users(scores, names), batch=1, plan="1@a", rebuild=True, base_batch=0, as_of=None,
                refreshed_at=None)
    table = any_backend.boards.table  # type: ignore[attr-defined]
    previous = _reachable(store)
    for batch in range(2, 6):
        changed = set(rng.sample(sorted(scores), 10))
        for user in changed:
            scores[user] = {**scores[user], ("overall", "all"): scores[user].get(("overall", "all"), 0) + batch}
        rows = _rank_users(scores, names, changed)
        if batch == 3:  # a writer that stops after writing its nodes, before its head: run again, same items
            real = table.put_if
            table.put_if = lambda item, version: (_ for _ in ()).throw(SinkError("stopped"))
            with pytest.raises(SinkError):
                store.write(rows, batch=batch, plan=f"{batch}@x", rebuild=False, base_batch=batch - 1, as_of=None,
                            refreshed_at=None)
            table.put_if = real
        store.write(rows, batch=batch, plan=f"{batch}@x", rebuild=False, base_batch=batch - 1, as_of=None,
                    refreshed_at=None)
        current = _reachable(store)
        head = store.current(fresh=True)[0]
        stored = _rank_items(any_backend)
        heads = {(f"ranks#{c}" if c else "ranks", "head") for c in range(store.copies)}
        lists = {(f"rretired#{head.version}", str(i)) for i in range(head.retired)}
        assert stored == current | (previous - current) | heads | lists, batch
        previous = current
    _check_ranks(store, scores, names, rng)
    rebuilt = _rank_users(scores, names)  # full builds: every node of the version before is replaced
    store.write(rebuilt, batch=6, plan="6@full", rebuild=True, base_batch=0, as_of=None, refreshed_at=None)
    sixth = _reachable(store)
    store.write(rebuilt, batch=7, plan="7@full", rebuild=True, base_batch=0, as_of=None, refreshed_at=None)
    head = store.current(fresh=True)[0]
    assert _rank_items(any_backend) == _reachable(store) | sixth | heads | {
        (f"rretired#{head.version}", str(i)) for i in range(head.retired)}
    _check_ranks(store, scores, names, rng)


@pytest.mark.parametrize("landings", [1, 2])
def test_a_rank_read_during_writes_never_mixes_two_versions(any_backend: Backend, monkeypatch: pytest.MonkeyPatch,
                                                            landings: int) -> None:
    """A reader holds a head; before it reads that version's nodes, a writer lands one version (its nodes are
    kept: the reader answers from the version it holds, whole) or two (they are gone: it starts again from the
    newest head and answers from that one, whole)."""
    rng = random.Random(3)
    scores, names = _random_scores(rng, 400)
    writer = RankTrees(_another_table(any_backend), cache_seconds=0)  # another process's, on the same table
    writer.write(_rank_users(scores, names), batch=1, plan="1", rebuild=True, base_batch=0, as_of=None,
                 refreshed_at=None)
    versions = [scores]
    for batch in (2, 3):
        nxt = {u: {b: s + batch * (i % 3) for b, s in mine.items()} for i, (u, mine) in enumerate(scores.items())}
        versions.append(nxt)
    expected = [rank_oracle.ranks(rank_oracle.boards(v, names)) for v in versions]
    table = any_backend.boards.table  # type: ignore[attr-defined]
    real = table.get_many
    pending = list(range(2, 2 + landings))

    def get_many(keys: Any, *, consistent: bool) -> Any:
        if pending:  # the reader's first node read: versions land meanwhile
            for batch in list(pending):
                pending.remove(batch)
                writer.write(_rank_users(versions[batch - 1], names), batch=batch, plan=str(batch), rebuild=True,
                             base_batch=0, as_of=None, refreshed_at=None)
        return real(keys, consistent=consistent)

    monkeypatch.setattr(table, "get_many", get_many)
    reader = RankTrees(table, cache_seconds=0)
    user = sorted(scores)[7]
    got = reader.ranks_for(user)
    monkeypatch.undo()
    assert got == expected[0 if landings == 1 else landings].get(user, [])
    assert expected[0][user] != expected[landings][user]  # the versions differ for this user


# --- profile store ------------------------------------------------------------------------------------

def _score(user: str, points: int, ts: str, category: str = "arcade", challenge: str | None = None,
           name: str | None = None, event_id: str | None = None) -> dict[str, Any]:
    return {"event_id": event_id or str(uuid.uuid4()), "event_type": "score", "user_id": user, "ts": ts,
            "category": category, "points": points, "challenge_id": challenge, "user_name": name}


def test_profiles_count_routed_events_and_the_first_challenge_completion(any_backend: Backend) -> None:
    store = any_backend.profiles
    now = dt.datetime.now(dt.UTC).isoformat()
    a = _score("ann", 10, "2026-01-01T00:00:00.000Z", name="Ann")
    late = _score("ann", 50, "2026-01-05T00:00:00.000Z", category="puzzle", challenge="c1")
    assert store.apply([a, a, late], now) == 1  # one update for the user; a delivery twice in a batch counts once
    p = store.get("ann")
    assert p is not None and p.total == 60 and p.categories == {"arcade": 10, "puzzle": 50} and p.user_name == "Ann"
    # An earlier completion of c1 arrives later: it replaces the first one counted.
    early = _score("ann", 7, "2026-01-02T00:00:00.000Z", category="racing", challenge="c1", name="Ann B")
    assert store.apply([early], now) == 1
    p = store.get("ann")
    assert p is not None and p.total == 17 and p.categories == {"arcade": 10, "racing": 7}
    assert p.user_name == "Ann B"  # the name with the latest ts wins
    # In one batch the name with the latest ts wins, whatever the order (across batches the last batch's name
    # shows until the next refresh sets the latest by ts: README, Profiles).
    store.apply([_score("ann", 1, "2026-01-03T00:00:00.000Z", name="Ann C"),
                 _score("ann", 1, "2025-12-01T00:00:00.000Z", name="Old name")], now)
    assert store.get("ann").user_name == "Ann C"  # type: ignore[union-attr]
    # A later completion of c1 does not count, and a completion routed again counts once (by its event_id).
    store.apply([_score("ann", 99, "2026-02-01T00:00:00.000Z", challenge="c1"), late, early], now)
    assert store.get("ann").total == 19  # type: ignore[union-attr]
    assert store.get("nobody") is None


def test_profiles_count_a_large_mixed_batch(any_backend: Backend) -> None:
    """A record carries a whole request: a batch can hold dozens of one user's events."""
    store = any_backend.profiles
    now = dt.datetime.now(dt.UTC).isoformat()
    earlier = [_score("cat", 1, f"2026-01-01T00:00:{i:02d}.000Z", category=f"c{i % 3}") for i in range(5)]
    assert store.apply(earlier, now) == 1
    fresh = [_score("cat", 2, f"2026-01-02T00:00:{i:02d}.000Z", category=f"c{i % 4}", name=f"Cat {i}")
             for i in range(45)]
    other = [_score("dog", 3, "2026-01-02T00:00:00.000Z", challenge="x")]
    assert store.apply(fresh + other + fresh[:3], now) == 2  # one update per user
    cat = store.get("cat")
    assert cat is not None and cat.total == 5 + 90 and cat.user_name == "Cat 44"
    assert cat.categories == {"c0": 2 + 24, "c1": 2 + 22, "c2": 1 + 22, "c3": 22}
    assert store.get("dog").total == 3  # type: ignore[union-attr]


def test_profiles_ignore_non_score_events(any_backend: Backend) -> None:
    action = {"event_id": str(uuid.uuid4()), "event_type": "action", "user_id": "bob",
              "ts": "2026-01-01T00:00:00.000Z", "name": "login", "properties": {}}
    assert any_backend.profiles.apply([action], "now") == 0
    assert any_backend.profiles.get("bob") is None


# --- app registry -------------------------------------------------------------------------------------

def test_apps_authenticate_by_key_and_store_only_hashes(any_backend: Backend) -> None:
    apps = any_backend.apps
    app, key = apps.create("game-one")
    assert key.startswith("sb_") and len(key) > 30
    assert apps.authenticate(key) == app
    assert apps.authenticate(key + "x") is None
    with pytest.raises(BadRequest):
        apps.create("game-one")
    with pytest.raises(BadRequest):
        apps.create("Not Valid!")
    admin, admin_key = apps.create("ops", role="admin", key="given-admin-key")
    assert admin_key == "given-admin-key" and apps.authenticate("given-admin-key") == admin
    apps.create("ops", role="admin", key="rotated-key")  # provisioning again rotates the key
    assert apps.authenticate("given-admin-key") is None
    assert apps.authenticate("rotated-key") == admin
    assert [a.app_id for a in apps.list()] == ["game-one", "ops"]


def test_queue_release_makes_a_message_visible_again(any_backend: Backend) -> None:
    q = any_backend.dlq
    q.send([b'{"b":2}'])
    first = q.receive(10)
    assert q.receive(10) == []  # in flight
    q.release([m.receipt for m in first])
    again = q.receive(10)
    assert [m.body for m in again] == [b'{"b":2}']
    q.delete([m.receipt for m in again])
    assert q.depth() == 0


# --- query engine -------------------------------------------------------------------------------------

def test_query_engine_runs_a_query_and_returns_typed_rows(any_backend: Backend, kind: str) -> None:
    """Both engines answer start/status/results alike. moto runs no SQL, so on the aws side the rows Athena
    would return are queued in moto first (as text, with Athena's column types); the local side runs the SQL."""
    sql = "SELECT 1 AS n, 'a' AS s, TIMESTAMP '2026-01-02 03:04:05.000' AS t UNION ALL SELECT 2, NULL, NULL ORDER BY n"
    if kind == "aws":
        from moto.athena.models import QueryResults, athena_backends

        cols = [{"Name": "n", "Type": "integer"}, {"Name": "s", "Type": "varchar"}, {"Name": "t", "Type": "timestamp"}]
        rows = [["n", "s", "t"], ["1", "a", "2026-01-02 03:04:05.000"], ["2", None, None]]
        athena_backends["123456789012"]["us-east-1"].query_results_queue.append(QueryResults(
            rows=[{"Data": [{} if v is None else {"VarCharValue": v} for v in r]} for r in rows], column_info=cols))
    qid = any_backend.query.start_query(sql)
    assert any_backend.query.status(qid).state == "SUCCEEDED"
    assert any_backend.query.results(qid) == [
        {"n": 1, "s": "a", "t": dt.datetime(2026, 1, 2, 3, 4, 5)},
        {"n": 2, "s": None, "t": None},
    ]


def test_cli_creates_an_app_in_the_deployed_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     fake_aws_credentials: None) -> None:
    from streamboard.cli import main

    monkeypatch.setenv("STREAMBOARD_APPS_TABLE", "apps-prod")
    with mock_aws():
        from streamboard.adapters.aws.provision import provision

        settings = Settings(data_dir=tmp_path, apps_table="apps-prod")
        backend = build_aws_backend(settings, REGISTRY, provision(settings, REGISTRY))
        assert main(["apps", "create", "mobile-game", "--backend", "aws"]) == 0
        key = capsys.readouterr().out.strip().splitlines()[-1]
        app = backend.apps.authenticate(key)
        assert app is not None and app.app_id == "mobile-game"
        assert main(["apps", "create", "mobile-game", "--backend", "aws"]) == 1  # exists: one clear error
        assert "exists already" in capsys.readouterr().err


def test_aws_profiles_keep_one_item_per_user_and_none_per_event(tmp_path: Path, fake_aws_credentials: None) -> None:
    with mock_aws():
        from streamboard.adapters.aws.provision import provision

        settings = Settings(data_dir=tmp_path)
        backend = build_aws_backend(settings, REGISTRY, provision(settings, REGISTRY))
        events = [_score(f"u{i % 2}", 5, "2026-01-01T00:00:00.000Z", category=f"c{i % 3}") for i in range(50)]
        assert backend.profiles.apply(events, "2026-01-01T00:00:01.000Z") == 2
        ddb = backend.profiles.clients("dynamodb")  # type: ignore[attr-defined]
        items = ddb.scan(TableName=settings.profiles_table)["Items"]
        assert sorted(i["pk"]["S"] for i in items) == ["user#u0", "user#u1"]


def test_a_rank_write_reports_the_write_units_the_local_store_bills(tmp_path: Path) -> None:
    """What a rank write says it costs (the planner's and the benchmark's figure) is what the store billed."""
    from streamboard.adapters.local.stores import LocalBoardStore
    from streamboard.usage import Usage

    usage = Usage(tmp_path / "usage.db")
    store = RankTrees(LocalBoardStore(tmp_path / "boards.db", usage).table)
    rng = random.Random(2)
    scores, names = _random_scores(rng, 2000)
    for batch in (1, 2, 3):
        before = usage.counters().get("dynamodb_write_units", 0)
        changed = set(rng.sample(sorted(scores), 50)) if batch > 1 else None
        for user in changed or ():
            scores[user] = {**scores[user], ("go", "all"): scores[user].get(("go", "all"), 0) + 7}
        written = store.write(_rank_users(scores, names, changed), batch=batch, plan=str(batch), rebuild=batch == 1,
                              base_batch=batch - 1, as_of=None, refreshed_at=None)
        assert written["write_units"] == usage.counters()["dynamodb_write_units"] - before, batch
