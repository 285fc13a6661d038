"""Every user's rank on every board through the local pipeline (issue 14; ``streamboard.ranks``): events in,
refresh, and the read API's ranks, board sizes, percentiles and around-me answers equal a plain-Python oracle
for every user, far beyond a board's stored top 1000; an incremental refresh writes only the tree nodes of the
users it changed, and everyone's ranks stay exact."""

from __future__ import annotations

import bisect
import datetime as dt
import json
import random
import uuid
import zlib
from collections import defaultdict
from typing import Any

import pytest

from processors import leaderboards, read_api
from streamboard.ranks import EMPTY, NODE_PREFIX, RankTrees, boards_of, find, retired_key, walk_nodes
from streamboard.registry import format_ts
from streamboard.runtime.stack import Pipeline
from streamboard.settings import Settings
from tests import rank_oracle
from tests.conftest import stream_record
from tests.functional.test_handlers import api_event

WINDOW_DAYS = {"all": None, "30d": 30, "365d": 365}
CATEGORIES = ("chess", "go", "quiz")


def oracle_scores(events: list[dict[str, Any]], as_of: dt.datetime) -> dict[str, dict[tuple[str, str], int]]:
    """Each user's score on each board at ``as_of`` (every event counts once: unique ids, no challenges)."""
    scores: dict[str, dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
    for e in events:
        ts = dt.datetime.fromisoformat(e["ts"].replace("Z", "+00:00"))
        for window, days in WINDOW_DAYS.items():
            if ts <= as_of and (days is None or ts > as_of - dt.timedelta(days=days)):
                for scope in ("overall", e["category"]):
                    scores[e["user_id"]][(scope, window)] += e["points"]
    return {u: dict(m) for u, m in scores.items()}


def latest_names(events: list[dict[str, Any]]) -> dict[str, str]:
    names: dict[str, tuple[str, str, str]] = {}
    for e in events:
        if e.get("user_name"):
            names[e["user_id"]] = max(names.get(e["user_id"], ("", "", "")), (e["ts"], e["event_id"], e["user_name"]))
    return {u: n for u, (_, _, n) in names.items()}


def event(rng: random.Random, user: str, now: dt.datetime, **fields: Any) -> dict[str, Any]:
    # ts away from the window edges (a later refresh's as_of is seconds on): 0-25, 40-300 or 400-500 days back
    back = rng.choice([rng.uniform(0, 25), rng.uniform(40, 300), rng.uniform(400, 500)])
    return {"event_id": str(uuid.uuid4()), "event_type": "score", "user_id": user,
            "ts": format_ts(now - dt.timedelta(days=back)), "category": rng.choice(CATEGORIES),
            "points": rng.randrange(1, 12), **fields}


def send(pipeline: Pipeline, events: list[dict[str, Any]], now: dt.datetime) -> None:
    for i in range(0, len(events), 500):
        pipeline.backend.stream.put_records([stream_record(events[i:i + 500], received_at=now)])


def get(pipeline: Pipeline, path: str, query: str = "") -> tuple[int, Any]:
    response = read_api.handle(api_event(path, query), pipeline.backend)
    return response["statusCode"], json.loads(response["body"])


def as_of_of(summary: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(summary["as_of"]).replace(tzinfo=dt.UTC)


def check_everyone(pipeline: Pipeline, events: list[dict[str, Any]], as_of: dt.datetime,
                   rng: random.Random) -> dict[tuple[str, str], list[Any]]:
    """Every user's ranks (through the store: the read API adds the profile around them) and some users'
    around-me answers, through the read API, against the oracle."""
    ordered = rank_oracle.boards(oracle_scores(events, as_of), latest_names(events))
    expected = rank_oracle.ranks(ordered)
    reader = RankTrees(pipeline.backend.boards.table, cache_seconds=0)  # type: ignore[attr-defined]
    for user in {e["user_id"] for e in events}:
        assert (reader.ranks_for(user) or []) == expected.get(user, []), user
    for (scope, window), entries in ordered.items():
        picks = {entries[0].user_id, entries[-1].user_id, rng.choice(entries).user_id,
                 next(e.user_id for i, e in enumerate(entries) if i and entries[i - 1].rank == e.rank)}
        for user in picks:
            status, body = get(pipeline, f"/v1/leaderboards/{scope}", f"window={window}&around={user}&limit=9")
            assert status == 200
            want = rank_oracle.around(entries, user, 9)
            assert want is not None
            assert body["entries"] == [{"rank": e.rank, "user_id": e.user_id, "user_name": e.user_name,
                                        "score": e.score} for e in want]
    return ordered


def test_ranks_and_around_for_every_user_after_a_build_and_an_incremental_refresh(tmp_path: Any) -> None:
    rng = random.Random(14)
    pipeline = Pipeline(Settings(data_dir=tmp_path / "data"))
    now = dt.datetime.now(dt.UTC)
    users = [f"u{i:04d}" for i in range(1400)]
    events = [event(rng, u, now, user_name=f"Player {u}") for u in users]
    events += [event(rng, rng.choice(users), now) for _ in range(1400)]
    send(pipeline, events, now)
    first = pipeline.refresh()
    assert first["ranks"]["rebuild"] and first["ranks"]["users"] == 1400
    ordered = check_everyone(pipeline, events, as_of_of(first), rng)
    assert len(ordered[("overall", "all")]) == 1400  # a board beyond its stored top 1000

    # the profile route: the near-real-time totals and every board's rank, board size and percentile
    status, body = get(pipeline, "/v1/users/u0007")
    assert status == 200 and body["ranks"] == rank_oracle.ranks(ordered)["u0007"]
    assert all(0 <= r["percentile"] < 1 and r["of"] >= r["rank"] for r in body["ranks"])
    status, body = get(pipeline, "/v1/leaderboards/go", "window=30d&around=nobody")
    assert status == 404 and "'nobody' is not on the go board of window 30d" in body["error"]

    # the next refresh: 12 users scored, one only changed their name (an event a few minutes ahead: not
    # counted yet); everyone else's items are left alone
    table = pipeline.backend.boards.table  # type: ignore[attr-defined]
    store = RankTrees(table, cache_seconds=0)
    old = store.current(fresh=True)
    assert old is not None
    old_head = old[0]
    movers = rng.sample(users, 12)
    later = [event(rng, u, now, points=rng.randrange(30, 60)) for u in movers]
    later.append({**event(rng, "u0001", now), "ts": format_ts(now + dt.timedelta(minutes=10)), "user_name": "Renamed"})
    events += later
    written: list[dict[str, Any]] = []
    real = table.write_many

    def spy(puts: Any, deletes: Any) -> None:
        written.extend(i for i in puts if i["pk"]["S"].startswith(NODE_PREFIX))
        real(puts, deletes)

    table.write_many = spy
    send(pipeline, later, now)
    second = pipeline.refresh()
    table.write_many = real
    assert second["mode"] == "incremental" and not second["ranks"]["rebuild"]
    assert second["ranks"]["users"] == 13  # the movers and the renamed user
    check_everyone(pipeline, events, as_of_of(second), rng)
    status, body = get(pipeline, "/v1/leaderboards/overall", "around=u0001&limit=1")
    assert body["entries"][0]["user_name"] == "Renamed"

    # the changed entries go to each tree's delta, the bases untouched, except those of the trees the refresh
    # folded (a delta past its share of the base: the small boards here), whose retired leaves are exactly
    # those that held a changed user's entry or take one now (the rest of every tree is shared with the
    # version before)
    loader = store._load
    new_head = store.current(fresh=True)[0]  # type: ignore[index]
    folded = set(second["ranks"]["folded"])
    assert "users" not in folded and "overall#all" not in folded  # large trees: deltas under their share
    assert new_head.users == old_head.users and new_head.delta_users.ref is not None
    new_scores = oracle_scores(events, as_of_of(second))
    touched: set[str] = set()
    for user in movers + ["u0001"]:
        before = rank_oracle.boards({user: boards_of(find(loader, old_head.users, (user,)) or [])})
        after = rank_oracle.boards({user: new_scores.get(user, {})})
        for board in before.keys() | after.keys():
            o, n = before.get(board, [None])[0], after.get(board, [None])[0]
            if o is not None and n is not None and o.score == n.score and user != "u0001":
                continue
            for entry in (o, n):
                if entry is not None and board in old_head.boards and f"{board[0]}#{board[1]}" in folded:
                    touched.add(leaf_of(loader, old_head.boards[board], (-entry.score, user)))
    for board, root in old_head.boards.items():
        if f"{board[0]}#{board[1]}" not in folded:
            assert new_head.boards[board] == root
    retired = retired_of(table, new_head)
    assert {n for n in retired if loader([n])[n].level == 0} == touched
    total = sum(r.ref.count for r in new_head.boards.values() if r.ref) + new_head.users.ref.count  # type: ignore[union-attr]
    assert len(written) < total / 20  # a few deltas' nodes and folded paths, not the trees


def leaf_of(load: Any, root: Any, key: Any) -> str:
    """The leaf of the tree that holds ``key``, or would."""
    ref, level = root.ref, root.level
    while level > 0:
        node = load([ref.node])[ref.node]
        ref = node.entries[max(0, bisect.bisect_right([c.key for c in node.entries], key) - 1)]
        level -= 1
    return str(ref.node)


def retired_of(table: Any, head: Any) -> set[str]:
    """The nodes of the version before that ``head``'s version replaced."""
    items = table.get_many([retired_key(head.version, i) for i in range(head.retired)], consistent=True)
    return {n for item in items.values() for n in zlib.decompress(bytes(item["ids"]["B"])).decode().split("\n") if n}


def test_a_refresh_that_changes_a_quarter_of_the_players_builds_the_ranks_again(tmp_path: Any) -> None:
    """A batch that changed at least 1 in REBUILD_EVERY of the ranked players reads every player and builds
    the trees again (every node of the version before retired); one that changed fewer steps them. Both
    exact."""
    rng = random.Random(41)
    pipeline = Pipeline(Settings(data_dir=tmp_path / "data"))
    now = dt.datetime.now(dt.UTC)
    users = [f"u{i:04d}" for i in range(400)]
    events = [event(rng, u, now, user_name=f"Player {u}") for u in users]
    send(pipeline, events, now)
    assert pipeline.refresh()["ranks"]["rebuild"]
    table = pipeline.backend.boards.table  # type: ignore[attr-defined]
    store = RankTrees(table, cache_seconds=0)

    def nodes_of(head: Any) -> set[str]:
        out: set[str] = set()
        for root in [head.users, head.delta_users, *head.boards.values(), *head.delta_boards.values()]:
            out.update(walk_nodes(store._load, root))
        return out

    # exactly a quarter of the 400 players score again (one event each): built again from all of them
    before = store.current(fresh=True)[0]  # type: ignore[index]
    movers = rng.sample(users, 100)
    later = [event(rng, u, now, points=rng.randrange(30, 60)) for u in movers]
    events += later
    send(pipeline, later, now)
    busy = pipeline.refresh()
    assert busy["mode"] == "incremental" and busy["ranks"]["rebuild"] and busy["ranks"]["users"] == 400
    check_everyone(pipeline, events, as_of_of(busy), rng)
    after = store.current(fresh=True)[0]  # type: ignore[index]
    assert after.delta_boards == {} and after.delta_users == EMPTY
    assert not nodes_of(before) & nodes_of(after)  # no node shared: the version before goes whole
    assert set(retired_of(table, after)) == nodes_of(before)

    # one fewer than a quarter: the changed players only, stepped onto the trees
    movers = rng.sample(users, 99)
    later = [event(rng, u, now, points=rng.randrange(30, 60)) for u in movers]
    events += later
    send(pipeline, later, now)
    quiet = pipeline.refresh()
    assert not quiet["ranks"]["rebuild"] and quiet["ranks"]["users"] == 99
    check_everyone(pipeline, events, as_of_of(quiet), rng)


def test_a_refresh_serves_its_boards_before_its_per_player_writes(tmp_path: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A refresh publishes its boards as soon as their snapshot ran, as the writer does on AWS: while the
    profiles' reconcile and every player's rank are still being written, the read API serves the new boards."""
    rng = random.Random(9)
    pipeline = Pipeline(Settings(data_dir=tmp_path / "data"))
    now = dt.datetime.now(dt.UTC)
    send(pipeline, [event(rng, f"u{i:03d}", now, points=5) for i in range(20)], now)
    pipeline.refresh()
    send(pipeline, [event(rng, "newcomer", now, points=1000, user_name="New")], now)
    leaders: list[tuple[str, str]] = []

    def watching(name: str, real: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            status, body = get(pipeline, "/v1/leaderboards/overall", "limit=1")
            assert status == 200
            leaders.append((name, body["entries"][0]["user_id"]))
            return real(*args, **kwargs)
        return run

    monkeypatch.setattr(leaderboards, "reconcile_profiles", watching("profiles", leaderboards.reconcile_profiles))
    monkeypatch.setattr(leaderboards, "write_ranks", watching("ranks", leaderboards.write_ranks))
    summary = pipeline.refresh()
    assert leaders == [("profiles", "newcomer"), ("ranks", "newcomer")]
    assert 0 < summary["boards_published_s"] < summary["seconds"]
    status, body = get(pipeline, "/v1/users/newcomer")  # and the per-player writes followed
    assert status == 200 and body["ranks"][0]["rank"] == 1
