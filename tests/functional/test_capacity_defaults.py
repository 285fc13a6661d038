"""The planner's documented defaults against the units the local stack counts for the same traffic mix."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from ingest.app import IngestSinks, create_app
from streamboard.capacity import DEFAULTS, Traffic, default_rates, units_per_event
from streamboard.cli import main
from streamboard.runtime.stack import Pipeline
from streamboard.settings import Settings
from streamboard.synthetic import traffic_mix
from streamboard.usage import ATHENA_MINIMUM, Usage

# The defaults' mix (capacity.DEFAULTS' comment): requests of 100 events of one player, 10% score, players from
# 1,000,000.
MIX: dict[str, Any] = {"events_per_request": 100, "score_share": 0.1, "users": 1_000_000, "players_per_request": 1}


def post(pipeline: Pipeline, settings: Settings, requests: list[list[dict[str, Any]]]) -> None:
    b = pipeline.backend
    with TestClient(create_app(settings, IngestSinks(b.stream, b.dlq, b.apps, b.lake, b.usage), b.registry)) as c:
        for body in requests:
            assert c.post("/v1/events", json={"events": body}, headers={"x-api-key": settings.api_key}).json()[
                "accepted"] == len(body)


def test_the_defaults_match_what_the_stack_counts_for_their_mix(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data)
    pipeline = Pipeline(settings)
    b = pipeline.backend
    before = Usage(data / "usage.db").report()["units"]  # provisioning the local keys wrote the app registry
    requests = traffic_mix(20, seed=5, **MIX)
    post(pipeline, settings, requests)
    records = [r for shard in b.stream.shard_ids() for r in b.stream.read(shard, None, 1000)]
    pipeline.drain()
    counted = Usage(data / "usage.db").report()
    events = counted["events_accepted"]
    assert events == 2000 and counted["score_events"] == 200

    # the whole run went through the router as one batch of its 20 records
    planned = units_per_event(Traffic(1, router_batch_records=len(records), **MIX), default_rates())
    units = counted["units"]
    for name in ("kinesis_put_units", "firehose_billed_bytes", "dynamodb_write_units", "dynamodb_read_units"):
        got = (units[name] - before[name]) / events
        assert planned[name].value == pytest.approx(got, rel=0.1, abs=1e-9), name
    stream_bytes = sum(len(r.data) + len(r.partition_key) for r in records) / events
    assert DEFAULTS["stream_bytes_per_event"].value == pytest.approx(stream_bytes, rel=0.1)

    # a small incremental refresh bills every statement at Athena's minimum: the default statement count
    pipeline.refresh()
    post(pipeline, settings, traffic_mix(3, seed=6, **MIX))
    assert pipeline.refresh()["mode"] == "incremental"
    last = Usage(data / "usage.db").report()["units"]["athena_bytes_scanned_last_refresh"]
    assert DEFAULTS["refresh_statements"].value == pytest.approx(last / ATHENA_MINIMUM, rel=0.1)

    # the same data dir as the planner's source: its counted units per event, said so
    assert main(["capacity", "--peak", "41667", "--from-data-dir", str(data), "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    report = Usage(data / "usage.db").report()
    kinesis = plan["units_per_event"]["kinesis_put_units"]
    assert kinesis["value"] == report["units"]["kinesis_put_units"] / report["events_accepted"]
    assert str(data) in kinesis["source"] and str(data) in plan["units_from"]
    assert plan["traffic"]["score_share"] == pytest.approx(report["score_events"] / report["events_accepted"])


def test_a_data_dir_without_events_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    Pipeline(Settings(data_dir=data))
    assert main(["capacity", "--peak", "1000", "--from-data-dir", str(data)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no events counted" in err[0]


def test_the_planners_board_rule_matches_what_the_board_store_counts(tmp_path: Path) -> None:
    """capacity.board_units_per_refresh (the planner's board lines) against the local store's counts of a steady
    replace (a board that had two snapshots before: pages, head copies, and the deletes of the version before)."""
    import random
    import uuid

    from streamboard.adapters.aws.items import pack
    from streamboard.adapters.local.stores import LocalBoardStore
    from streamboard.capacity import board_heads_query_units, board_units_per_refresh
    from streamboard.ports import Board, BoardEntry

    usage = Usage(tmp_path / "usage.db")
    store = LocalBoardStore(tmp_path / "boards.db", usage, copies=2, cache_seconds=0)
    rng = random.Random(9)
    boards = [Board("overall", "all", "2026-03-01T12:00:00.000Z", "2026-03-01T12:00:07.000Z",
                    tuple(BoardEntry(i + 1, str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                                     f"player_{rng.randrange(10**8)}", 10**6 - i) for i in range(1000)))
              for _ in range(3)]
    for board in boards[:2]:
        store.replace_boards([board])
    before = usage.report()["units"]
    store.replace_boards(boards[2:])
    after = usage.report()["units"]
    entry_bytes = len(pack(boards[2].entries[:100])) / 100  # the planner's assumed board_entry_bytes is this
    wru, rru = board_units_per_refresh(1000, entry_bytes, copies=2)
    assert wru == pytest.approx(after["dynamodb_write_units"] - before["dynamodb_write_units"], rel=0.1)
    assert rru + board_heads_query_units(1, 1000, entry_bytes) == (after["dynamodb_read_units"]
                                                                  - before["dynamodb_read_units"])


def test_the_planners_rank_rule_matches_what_the_rank_store_writes(tmp_path: Path) -> None:
    """capacity.rank_units (the planner's rank lines) against the nodes streamboard.ranks writes for players with
    uuid ids and 15-character names on 6 boards each: a build, then refreshes where 2% of them scored, each new
    score anywhere on the board (the planner's assumption: an upper bound, as a small gain moves a player within a
    leaf or to the next); the planner's figure is the average over the refreshes between two folds of a tree's
    delta into its base, so it is compared with the average of enough refreshes to fold each tree a few times."""
    import random
    import uuid

    from streamboard.adapters.local.stores import LocalBoardStore
    from streamboard.capacity import rank_units
    from streamboard.ranks import RankTrees, UserScores

    rng = random.Random(4)
    n = 20_000
    users = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]

    def row(user: str) -> UserScores:
        a, d30, d365 = rng.randrange(1, 10**6), rng.randrange(1, 10**5), rng.randrange(1, 10**6)
        return UserScores(user, f"player_{rng.randrange(10**8):08d}", False,
                          (("chess", a, d30, d365), ("overall", a, d30, d365)))

    store = RankTrees(LocalBoardStore(tmp_path / "boards.db").table)
    built = store.write([row(u) for u in users], batch=1, plan="1", rebuild=True, base_batch=0, as_of=None,
                        refreshed_at=None)
    # the planner's cycles: a board's delta folded every 8 refreshes (at 0.28 of its base: ops 4% of it a
    # refresh), the index's every 10 (at 0.2): 24 refreshes fold each tree at least twice
    written, folds, refreshes = [], 0, 24
    for batch in range(2, 2 + refreshes):
        stepped = store.write([row(u) for u in rng.sample(users, n // 50)], batch=batch, plan=str(batch),
                              rebuild=False, base_batch=batch - 1, as_of=None, refreshed_at=None)
        written.append(stepped["nodes"])
        folds += len(stepped["folded"])
    planned = rank_units(n, n // 50, 0)
    assert planned["nodes"] == pytest.approx(built["nodes"], rel=0.15)
    assert folds >= 7 * 2  # every tree folded at least twice
    assert planned["written"] == pytest.approx(sum(written) / refreshes, rel=0.25), written
    # a refresh where a quarter of the players changed builds the trees again from every player: the planner
    # prices every node written (and the version before's deleted), as many as such a build writes
    busy = rank_units(n, n // 4, 0)
    rebuilt = store.write([row(u) for u in users], batch=2 + refreshes, plan="busy", rebuild=True,
                          base_batch=1 + refreshes, as_of=None, refreshed_at=None)
    assert busy["rebuilt"] and not planned["rebuilt"]
    assert busy["written"] == pytest.approx(rebuilt["nodes"], rel=0.15)
    assert rebuilt["retired"] >= built["nodes"] * 0.9  # the version before goes whole
