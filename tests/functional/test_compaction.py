"""Hourly compaction of the local lake: a closed partition's small files become one, atomically, and nothing
a query or a refresh computes changes."""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path
from typing import Any

from streamboard.registry import REGISTRY
from streamboard.runtime.compaction import compact_partitions, exchange
from tests.functional.test_refresh import START, SimLake, as_rows, event_ids


def rows(n: int, first: int, at: dt.datetime) -> list[dict[str, Any]]:
    return [{"event_id": event_ids[(first + i) % len(event_ids)].replace("8000-", f"8{first + i:03d}-"),
             "user_id": f"u{i % 3}", "category": "chess", "points": 1 + i, "challenge_id": None,
             "user_name": None, "ts": at - dt.timedelta(minutes=5), "received_at": at} for i in range(n)]


def test_closed_partitions_become_one_file_with_the_same_rows_and_boards(tmp_path: Path) -> None:
    sim = SimLake(tmp_path)
    closed, current = START, START + dt.timedelta(hours=3)
    for i in range(5):
        sim.arrive(rows(4, 10 * i, closed), closed, closed)
    for i in range(2):
        sim.arrive(rows(4, 100 + 10 * i, current), current, current)
    before_files = sorted(p.name for p in (tmp_path / "lake").rglob("*.parquet"))
    as_of = (current + dt.timedelta(minutes=5)).replace(tzinfo=dt.UTC)
    before = as_rows(sim.refresher(tmp_path / "before.duckdb").refresh(now=as_of).rows)

    assert compact_partitions(tmp_path / "lake", sim.catalog, REGISTRY, as_of) == 1

    folders = {p.parent.name: len(list(p.parent.glob("*.parquet"))) for p in (tmp_path / "lake").rglob("*.parquet")}
    assert sorted(folders.values()) == [1, 2]  # the open hour keeps its files until it has settled
    assert len(before_files) == 7
    assert as_rows(sim.refresher(tmp_path / "after.duckdb").refresh(now=as_of).rows) == before
    assert sim.full_view(as_of.replace(tzinfo=None)) == before
    assert compact_partitions(tmp_path / "lake", sim.catalog, REGISTRY, as_of) == 0  # nothing left to do


def test_a_reader_sees_the_old_files_or_the_compacted_one_never_both(tmp_path: Path) -> None:
    old, new = tmp_path / "hour=01", tmp_path / ".hour=01.compacting"
    old.mkdir()
    new.mkdir()
    for i in range(20):
        (old / f"part-{i}.parquet").write_bytes(b"x")
    (new / "compacted.parquet").write_bytes(b"x")
    seen: set[int] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(len(os.listdir(old)))  # the partition's path, as a query lists it

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(200):
            exchange(new, old)
    finally:
        stop.set()
        reader.join(10)
    assert seen <= {1, 20} and seen  # never 21 (rows counted twice), never 0
