"""Billable units of a small run of the local stack, checked against a count made here from what was sent."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
import warnings
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from ingest.app import IngestSinks, create_app
from streamboard.adapters.aws.items import head_item, layout
from streamboard.adapters.local.stores import LocalProfileStore
from streamboard.cli import main
from streamboard.profiles import Base
from streamboard.runtime.stack import Pipeline
from streamboard.settings import Settings
from streamboard.usage import (
    ATHENA_MINIMUM,
    Usage,
    dynamodb_write_units,
    firehose_billed_bytes,
    item_size,
    kinesis_put_units,
)


def score(user: str, points: int, **extra: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "event_type": "score", "user_id": user, "category": "arcade",
            "ts": (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat(), "points": points, **extra}


def action(user: str) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "event_type": "action", "user_id": user, "name": "opened_shop",
            "ts": (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat(), "properties": {"k": "v"}}


def usage_json(data: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["usage", "--data-dir", str(data), "--format", "json"]) == 0
    return dict(json.loads(capsys.readouterr().out))


def firehose_record_sizes(backend: Any) -> list[int]:
    """The sizes of the records that enter the delivery streams from now on (a list that fills as they do)."""
    sizes: list[int] = []
    put_record_batch = backend.delivery.put_record_batch

    def spy(stream: str, records: Any) -> list[int]:
        sizes.extend(len(r) for r in records)
        return put_record_batch(stream, records)

    backend.delivery.put_record_batch = spy
    return sizes


def test_firehose_bills_little_more_than_the_events_delivered(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Packed records: for 100-event requests Firehose's 5 KB steps add at most 30% to the events' bytes
    (one record per event would bill every ~300-byte event as 5 KB)."""
    data = tmp_path / "data"
    settings = Settings(data_dir=data)
    pipeline = Pipeline(settings)
    b = pipeline.backend
    delivered = firehose_record_sizes(b)
    with TestClient(create_app(settings, IngestSinks(b.stream, b.dlq, b.apps, b.lake, b.usage), b.registry)) as c:
        for r in range(20):
            events = [score(f"u{(r * 100 + i) % 997}", 1 + i, user_name=f"player {i}") for i in range(100)]
            assert c.post("/v1/events", json={"events": events},
                          headers={"x-api-key": settings.api_key}).json()["accepted"] == 100
    pipeline.drain()
    report = usage_json(data, capsys)
    units = report["units"]
    assert report["score_events"] == 2000
    assert sum(delivered) >= 2000 * 200  # every event's line went in
    assert units["firehose_billed_bytes"] <= 1.3 * sum(delivered)
    assert units["firehose_records"] <= 2000 / 100  # many events a record


def test_usage_of_a_small_run_matches_what_was_sent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data)
    pipeline = Pipeline(settings)
    b = pipeline.backend
    # what enters the delivery streams and each Lambda invocation, seen from outside the counters
    firehose = firehose_record_sizes(b)
    invocations = {"n": 0}

    def counting(handler: Any) -> Any:
        def call(event: Any, context: Any) -> Any:
            invocations["n"] += 1
            return handler(event, context)
        return call

    pipeline.esm.handler = counting(pipeline.esm.handler)
    pipeline.firehose.transform = counting(pipeline.firehose.transform)
    before = Usage(data / "usage.db").report()  # provisioning the local keys read and wrote the app registry

    requests = [[score(f"u{i % 7}", 10 + i, user_name="x" * 100) for i in range(300)],  # over 25 KB: 2+ units
                [score("u1", 5), action("u1"), action("u2")],
                [score("u2", 7), {"event_type": "score", "user_id": "bad"}]]  # one invalid event
    with TestClient(create_app(settings, IngestSinks(b.stream, b.dlq, b.apps, b.lake, b.usage), b.registry)) as c:
        answers = [c.post("/v1/events", json={"events": r}, headers={"x-api-key": settings.api_key}).json()
                   for r in requests]
    summary = pipeline.refresh()

    accepted = sum(a["accepted"] for a in answers)
    assert accepted == 300 + 3 + 1
    records = [r for shard in b.stream.shard_ids() for r in b.stream.read(shard, None, 1000)]
    assert len(records) == 3
    report = usage_json(data, capsys)
    units = report["units"]
    assert report["events_accepted"] == accepted
    assert report["score_events"] == 302
    assert report["refreshes"] == 1
    assert units["kinesis_put_units"] == sum(kinesis_put_units(len(r.data) + len(r.partition_key)) for r in records)
    assert units["kinesis_put_units"] >= 4  # the 300-event record is well over 25 KB
    assert units["firehose_records"] == len(firehose) and units["firehose_billed_bytes"] == sum(
        firehose_billed_bytes(n) for n in firehose)
    # the router's batches, the transform's, and the refresh: its query Lambda and a writer per statement
    assert units["lambda_invocations"] == invocations["n"] + 1 + len(summary["steps"])
    # every refresh statement is billed at least Athena's minimum; the last refresh's are all there is yet
    assert units["athena_bytes_scanned_last_refresh"] == units["athena_bytes_scanned"]
    assert units["athena_bytes_scanned"] >= ATHENA_MINIMUM * len(summary["steps"])
    # `usage` prints a table too; reading the counters changes none of them
    assert main(["usage", "--data-dir", str(data)]) == 0
    table = capsys.readouterr().out
    assert "kinesis_put_units" in table and "per 1,000 events" in table
    assert usage_json(data, capsys) == report

    # the boards' first snapshots: a PutItem of each copy of each board's head, by the items the aws store
    # writes (small boards: no pages), and the profiles' writes
    boards = [b.boards.get_board(s, w, 1000) for s in ("overall", "arcade") for w in ("all", "30d", "365d")]
    copies = settings.board_copies
    board_units = sum(dynamodb_write_units(item_size(head_item(x, layout(x.entries), c, version="0" * 16,
                                                               previous=None, previous_pages=0, copies=copies)))
                      for x in boards if x is not None for c in range(copies))
    assert len([x for x in boards if x is not None]) == 6 and copies == 2
    assert units["dynamodb_write_units"] - before["units"]["dynamodb_write_units"] > board_units
    # each of those reads is an eventually consistent GetItem of a head under 4 KB: half a unit
    assert usage_json(data, capsys)["units"]["dynamodb_read_units"] == units["dynamodb_read_units"] + 6 * 0.5


def test_profile_writes_bill_one_update_per_user_by_the_item_size(tmp_path: Path) -> None:
    usage = Usage(tmp_path / "usage.db")
    store = LocalProfileStore(tmp_path / "profiles.db", usage)
    store.apply([score("u1", 10), score("u1", 20), score("u2", 1)], "2026-01-01T00:00:00.000Z")
    assert usage.report()["units"]["dynamodb_write_units"] == 2  # one UpdateItem per user, items under 1 KB
    # a user who scored in 60 categories in one slot: an item of more than 1 KB, billed 2 units
    many = [{**score("u3", 1), "category": f"category-number-{i:02d}"} for i in range(60)]
    store.apply(many, "2026-01-01T00:00:00.000Z")
    assert usage.report()["units"]["dynamodb_write_units"] == 2 + 2
    assert store.get("u1") is not None
    assert usage.report()["units"]["dynamodb_read_units"] == 0.5  # an eventually consistent GetItem


def test_a_query_is_billed_by_the_column_chunks_it_reads(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pipeline = Pipeline(Settings(data_dir=data))
    b = pipeline.backend
    rows = [score(f"u{i}", i + 1, user_name="n" * 120) for i in range(2000)]
    with TestClient(create_app(Settings(data_dir=data), IngestSinks(b.stream, b.dlq, b.apps, b.lake, b.usage),
                               b.registry)) as c:
        for i in range(0, len(rows), 500):
            c.post("/v1/events", json={"events": rows[i:i + 500]}, headers={"x-api-key": "local-dev-key"})
    pipeline.drain()
    engine = b.query
    files = list((data / "lake" / "score").rglob("*.parquet"))
    assert files

    def chunks(column: str) -> int:
        total = 0
        for f in files:
            meta = pq.ParquetFile(f).metadata
            for g in range(meta.num_row_groups):
                group = meta.row_group(g)
                total += sum(group.column(i).total_compressed_size for i in range(group.num_columns)
                             if group.column(i).path_in_schema == column)
        return total

    assert engine.scanned_bytes("SELECT max(points) FROM score") == chunks("points")  # type: ignore[attr-defined]
    assert engine.scanned_bytes(  # type: ignore[attr-defined]
        "SELECT user_name, count(*) FROM score GROUP BY user_name") == chunks("user_name")
    before = Usage(data / "usage.db").report()["units"]["athena_bytes_scanned"]
    engine.run("SELECT max(points) FROM score")  # type: ignore[attr-defined]
    engine.run("CREATE TABLE IF NOT EXISTS x (a bigint)")  # type: ignore[attr-defined]  # DDL is free
    # far under 10 MB: billed 10 MB
    assert Usage(data / "usage.db").report()["units"]["athena_bytes_scanned"] - before == ATHENA_MINIMUM


def _read_units(usage: Usage) -> float:
    return float(usage.report()["units"]["dynamodb_read_units"])


def test_a_short_board_read_bills_one_small_item_and_a_long_one_its_pages_once(tmp_path: Path) -> None:
    """limit=10 is an eventually consistent GetItem of a head under 4 KB: 0.5 units (the issue's target: at most
    1). limit=1000 adds a BatchGetItem of the pages, each under 4 KB; this process keeps them (a version's
    pages never change), so the next long read, and a profile's ranks, read only heads."""
    from streamboard.adapters.aws.items import HEAD_BYTES, content_version, page_item
    from streamboard.backend import build_local_backend
    from streamboard.ports import Board, BoardEntry

    backend = build_local_backend(Settings(data_dir=tmp_path / "data", board_cache_seconds=0))
    store, usage = backend.boards, backend.usage
    assert usage is not None
    rng = random.Random(5)  # random uuids for ids, numbered names: about 34 packed bytes an entry
    entries = tuple(BoardEntry(i + 1, str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                               f"player_{rng.randrange(10**8)}", 10**6 - i) for i in range(1000))
    board = Board("overall", "all", "2026-03-01T12:00:00.000Z", "2026-03-01T12:00:07.000Z", entries)
    lay = layout(entries)
    version = content_version(lay)  # the pages' version: named by the entries
    heads = [head_item(board, lay, c, version=version, previous=None, previous_pages=0, copies=2) for c in range(2)]
    pages = [page_item("overall", "all", version, n, blob) for n, blob in enumerate(lay.pages, start=1)]
    assert lay.top == 100 and len(pages) == 9 and all(item_size(i) <= HEAD_BYTES for i in heads + pages)

    writes = usage.report()["units"]["dynamodb_write_units"]
    store.replace_boards([board])
    # a strongly consistent Query of every head (which pages are stored: none yet, the minimum), a strongly
    # consistent GetItem of the current head (none yet: the minimum); then the pages, each head copy
    assert _read_units(usage) == 2
    assert usage.report()["units"]["dynamodb_write_units"] - writes == sum(
        dynamodb_write_units(item_size(i)) for i in pages + heads)

    def cost(call: Any) -> float:
        before = _read_units(usage)
        call()
        return _read_units(usage) - before

    assert cost(lambda: store.get_board("overall", "all", 10)) == 0.5
    assert cost(lambda: store.get_board("overall", "all", 100)) == 0.5
    assert cost(lambda: store.get_board("overall", "all", 101)) == 0.5 + 0.5  # and page 1
    assert cost(lambda: store.get_board("overall", "all", 1000)) == 0.5 + 8 * 0.5  # pages 2..9
    assert cost(lambda: store.get_board("overall", "all", 1000)) == 0.5  # every page kept
    # a profile's ranks: one eventually consistent Query of the heads (copy 0), the pages kept
    assert cost(lambda: store.ranks_for(entries[700].user_id)) == 0.5
    # the same snapshot again (a retried writer): the heads' Query and the head read, nothing written
    writes = usage.report()["units"]["dynamodb_write_units"]
    assert cost(lambda: store.replace_boards([board])) == 1 + 1
    assert usage.report()["units"]["dynamodb_write_units"] == writes


def test_usage_of_a_missing_data_dir_is_one_line_and_nonzero(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--data-dir", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("streamboard: error: no streamboard data in"), err


def test_the_aws_stores_log_the_capacity_dynamodb_reports(tmp_path: Path, fake_aws_credentials: None,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """moto answers ``ReturnConsumedCapacity`` on single-item calls with a fixed number (1.0 a PutItem, 0.5 a
    GetItem, whatever the item's size) and an empty list on TransactWriteItems; a cancelled transaction or a
    failed condition reports nothing. The log line carries what came back, and counts the calls that
    reported nothing."""
    import logging

    from moto import mock_aws

    from streamboard.adapters.aws.provision import provision
    from streamboard.backend import build_aws_backend
    from streamboard.ports import Board, BoardEntry
    from streamboard.registry import REGISTRY

    caplog.set_level(logging.INFO, logger="streamboard.dynamodb")
    with mock_aws():
        settings = Settings(data_dir=tmp_path)
        backend = build_aws_backend(settings, REGISTRY, provision(settings, REGISTRY))
        backend.boards.replace_boards([Board("overall", w, None, None, (BoardEntry(1, "u1", "U", 5),))
                                       for w in ("all", "30d")])
        event = score("u1", 5, user_name="Ada")
        backend.profiles.apply([event, score("u2", 3)], "now")
        backend.profiles.reconcile({"u1": Base(categories={"arcade": 5})}, batch=2, cut=0, now="now")
        backend.profiles.reconcile({"u1": Base(categories={"arcade": 4})}, batch=1, cut=0, now="now")
    lines = [json.loads(r.getMessage())["dynamodb_consumed"] for r in caplog.records]
    boards, live, reconciled, late = lines
    # a Query of every head (which pages are stored), then per board (one entry: no pages) a GetItem of its
    # current head and a PutItem of each of its 2 head copies: moto's 1.0, 0.5 and 1.0 each (no head named
    # pages before: no Query after)
    assert boards == {"operation": "boards.replace", "table": settings.boards_table, "calls": 7,
                      "capacity_units": 6.0, "unreported_calls": 0}
    # one UpdateItem per user, no transaction
    assert live["operation"] == "profiles.apply" and live["calls"] == 2 and live["unreported_calls"] == 0
    # the reconcile reads the item, then updates it
    assert reconciled["operation"] == "profiles.reconcile" and reconciled["calls"] == 2
    # an older batch's reconcile fails its condition: billed on AWS, reported by nothing
    assert late["calls"] == 2 and late["unreported_calls"] == 1


def test_a_refresh_statement_is_billed_by_the_state_columns_it_names(tmp_path: Path) -> None:
    from streamboard.adapters.local.catalog import LocalCatalog
    from streamboard.adapters.local.query import LocalQueryEngine

    engine = LocalQueryEngine(tmp_path / "lake", LocalCatalog(tmp_path / "catalog.db"),
                              state_path=tmp_path / "state" / "state.duckdb", usage=Usage(tmp_path / "usage.db"))
    engine.run("CREATE TABLE IF NOT EXISTS state_keys (k bigint, note varchar)")
    engine.run("INSERT INTO state_keys SELECT n, 'abcd' FROM UNNEST(sequence(1, 2000000)) AS t (n)")
    # a bigint column: 8 bytes a row, uncompressed (Iceberg's Parquet would read fewer: an upper bound)
    assert engine.scanned_bytes("SELECT max(k) FROM state_keys") == 16_000_000
    assert engine.scanned_bytes("SELECT max(note) FROM state_keys") == 8_000_000
    # a few more rows: the widths measured before still hold, the row count is the table's own
    engine.run("INSERT INTO state_keys SELECT n, 'abcd' FROM UNNEST(sequence(1, 100000)) AS t (n)")
    assert engine.scanned_bytes("SELECT max(k), max(note) FROM state_keys") == 2_100_000 * 12


def test_a_rank_write_logs_every_call_its_worker_threads_make(tmp_path: Path, fake_aws_credentials: None,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """The aws store writes a large rank build 8 BatchWriteItem calls at a time: their capacity counts in the
    write's one log line, as the calls of its own thread do."""
    import logging

    from moto import mock_aws

    from streamboard.adapters.aws.provision import provision
    from streamboard.backend import build_aws_backend
    from streamboard.ranks import UserScores
    from streamboard.registry import REGISTRY

    caplog.set_level(logging.INFO, logger="streamboard.dynamodb")
    with mock_aws():
        settings = Settings(data_dir=tmp_path)
        backend = build_aws_backend(settings, REGISTRY, provision(settings, REGISTRY))
        rng = random.Random(6)
        users = [UserScores(f"{rng.getrandbits(128):032x}", f"player {rng.getrandbits(40)}", False,
                            (("overall", rng.randrange(1, 10**6), rng.randrange(1, 10**5), rng.randrange(1, 10**6)),))
                 for _ in range(20_000)]
        written = backend.ranks.write(users, batch=1, plan="1", rebuild=True, base_batch=0, as_of=None,
                                      refreshed_at=None)
    assert written["nodes"] > 1000  # more than one part of 1,000 puts: several threads wrote
    (line,) = [json.loads(r.getMessage())["dynamodb_consumed"] for r in caplog.records]
    calls = -(-written["nodes"] // 25) + 1 + 2  # BatchWriteItem calls of 25, the head's GetItem, 2 head puts
    # every call is in the line (moto reports a fixed capacity a call, whatever its items: not checked here)
    assert line["operation"] == "ranks.write" and line["calls"] == calls and line["unreported_calls"] == 0
