"""The ranks' trees as a base and a delta (``streamboard.ranks``): successive incremental writes, folds among
them, give every user's ranks and every around-me window exactly as the oracle does; a small refresh writes
a few delta nodes, not the trees; a head of the code before the deltas (no delta named) still reads."""

from __future__ import annotations

import contextlib
import json
import random
import zlib
from collections.abc import Sequence
from typing import Any

import pytest

from streamboard import ranks as ranks_module
from streamboard.ranks import (
    EMPTY,
    HEAD_SK,
    RankHead,
    RankTrees,
    TreeWriter,
    UserScores,
    head_item,
    head_pk,
    node_key,
    read_head,
    walk_nodes,
)
from tests import rank_oracle

SCOPES = ("overall", "chess", "go")
WINDOWS = ("all", "30d", "365d")


class MemoryTable:
    """An ``ItemTable`` in a dict (what the rank store calls of it), counting the items written."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    def operation(self, name: str, write: bool = False) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def get(self, key: tuple[str, str], *, consistent: bool) -> dict[str, Any] | None:
        return self.items.get(key)

    def get_many(self, keys: Sequence[tuple[str, str]], *, consistent: bool) -> dict[tuple[str, str], Any]:
        return {k: self.items[k] for k in keys if k in self.items}

    def put(self, item: dict[str, Any]) -> None:
        self.items[(item["pk"]["S"], item["sk"]["S"])] = item

    def put_if(self, item: dict[str, Any], version: str | None) -> bool:
        cur = self.items.get((item["pk"]["S"], item["sk"]["S"]))
        if (None if cur is None else cur["version"]["S"]) != version:
            return False
        self.put(item)
        return True

    def write_many(self, puts: Sequence[dict[str, Any]], deletes: Sequence[tuple[str, str]]) -> None:
        for item in puts:
            self.put(item)
        for key in deletes:
            self.items.pop(key, None)


def scores_row(user: str, mine: dict[tuple[str, str], int], name: str | None, renamed: bool) -> UserScores:
    scopes = tuple(sorted((s, mine.get((s, "all"), 0), mine.get((s, "30d"), 0), mine.get((s, "365d"), 0))
                          for s in SCOPES if any(mine.get((s, w)) for w in WINDOWS)))
    return UserScores(user, name, renamed, scopes)


def check(store: RankTrees, scores: dict[str, dict[tuple[str, str], int]], names: dict[str, str | None],
          rng: random.Random, everyone: Sequence[str]) -> None:
    """Every user's ranks and a few around-me windows of every board (limits 1 to 12, the ends among them)
    against the oracle."""
    ordered = rank_oracle.boards(scores, names)
    expected = rank_oracle.ranks(ordered)
    for user in everyone:
        assert (store.ranks_for(user) or []) == expected.get(user, []), user
    for (scope, window), entries in ordered.items():
        for user in {entries[0].user_id, entries[-1].user_id, *(rng.choice(entries).user_id for _ in range(3))}:
            limit = rng.choice([1, 2, 5, 9, 12])
            got = store.around(scope, window, user, limit)
            assert got is not None
            assert list(got.entries) == rank_oracle.around(entries, user, limit), (scope, window, user, limit)


def stored_nodes(store: RankTrees) -> int:
    head = store.current(fresh=True)[0]  # type: ignore[index]
    roots = [head.users, head.delta_users, *head.boards.values(), *head.delta_boards.values()]
    return sum(len(walk_nodes(store._load, r)) for r in roots)


@pytest.mark.parametrize("seed,fold_ratio,fold_force,recent", [(1, 8, 2, False), (2, 8, 2, False),
                                                               (3, 1, 0.25, False), (4, 8, 2, True)])
def test_successive_incremental_writes_and_folds_equal_the_oracle(seed: int, fold_ratio: float, fold_force: float,
                                                                  recent: bool, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    # (3, 1, 0.25): deltas are folded only past 4x their base's entries: large deltas, DELs among the reads.
    # recent: every point is recent at first (a window's score is the all-time one: the window boards share their
    # scope's all-time tree); from batch AGED on, some users' points leave the 30 days (those boards split off)
    monkeypatch.setattr(ranks_module, "FOLD_RATIO", fold_ratio)
    monkeypatch.setattr(ranks_module, "FOLD_FORCE", fold_force)
    rng = random.Random(seed)
    table = MemoryTable()
    store = RankTrees(table, cache_seconds=0)

    def fresh_scores() -> dict[tuple[str, str], int]:
        mine = {}
        for scope in rng.sample(SCOPES, rng.randrange(1, 4)):
            a = rng.randrange(1, 40)  # few distinct scores: many ties
            mine[(scope, "all")], mine[(scope, "365d")] = a, rng.randrange(0, a + 1)
            mine[(scope, "30d")] = rng.randrange(0, mine[(scope, "365d")] + 1)
            if recent:
                mine[(scope, "365d")] = mine[(scope, "30d")] = a
        return {b: s for b, s in mine.items() if s}

    def shared(head: RankHead) -> set[tuple[str, str]]:
        return {b for b in head.boards if b[1] != "all" and head.board(b) == head.board((b[0], "all"))}

    scores = {f"u{i:04d}": fresh_scores() for i in range(400)}
    names: dict[str, str | None] = {u: rng.choice([None, f"Player {u}"]) for u in scores}
    history: dict[str, list[dict[tuple[str, str], int]]] = {u: [dict(s)] for u, s in scores.items()}
    everyone = list(scores)
    got = store.write([scores_row(u, s, names[u], False) for u, s in scores.items()], batch=1, plan="1",
                      rebuild=True, base_batch=0, as_of=None, refreshed_at=None)
    assert got["written"] and got["delta_rows"] == 0
    check(store, scores, names, rng, everyone)
    if recent:  # the window boards' trees are their scope's all-time one: a third of the nodes written
        assert shared(store.current(fresh=True)[0]) == {(s, w) for s in SCOPES for w in ("30d", "365d")}  # type: ignore[index]
    folds, deltas_read, largest = 0, 0, 0
    aged = 8
    for batch in range(2, 14):
        changed: dict[str, bool] = {}  # the users of this batch, and whether their name changed
        if recent and batch == aged:  # a batch of one change, on an all-time board only: its windows, no ops
            user = rng.choice([u for u in everyone if scores.get(u)])
            scores[user][(sorted(scores[user])[0][0], "all")] += 5
            changed[user] = False
        for _ in range(0 if recent and batch == aged else rng.choice([1, 5, 20, 60])):
            kind = rng.random()
            user = rng.choice(everyone)
            if recent and batch >= aged and kind < 0.08 and scores.get(user):  # old points, all-time only
                board = rng.choice(sorted(scores[user]))
                scores[user][(board[0], "all")] += 5
            elif recent and batch >= aged and kind < 0.16 and scores.get(user):  # points out of the 30 days
                board = rng.choice(sorted(scores[user]))
                if scores[user].get((board[0], "30d")):
                    scores[user][(board[0], "30d")] -= 1
                    scores[user] = {b: s for b, s in scores[user].items() if s}
            elif recent and kind < 0.3 and scores.get(user):  # up or down on every window of a scope
                board = rng.choice(sorted(scores[user]))
                step = rng.choice([-3, -1, 1, 2, 7])
                for w in WINDOWS:
                    if (board[0], w) in scores[user]:
                        scores[user][(board[0], w)] = max(1, scores[user][(board[0], w)] + step)
            elif kind < 0.3 and scores.get(user):  # scores up or down on one board
                board = rng.choice(sorted(scores[user]))
                scores[user][board] = max(1, scores[user][board] + rng.choice([-3, -1, 1, 2, 7]))
            elif kind < 0.45:  # back to an earlier version of the user's scores
                scores[user] = dict(rng.choice(history.setdefault(user, [{}])))
            elif kind < 0.55:  # every score gone (off every board, out of the index)
                scores[user] = {}
            elif kind < 0.7 and user in scores:  # a new name, in the same places
                names[user] = f"renamed {rng.randrange(1000)}"
                changed[user] = True
            elif kind < 0.85:  # new scores altogether
                scores[user] = fresh_scores()
            else:  # a new user
                user = f"n{batch:02d}{rng.randrange(10**4):04d}"
                everyone.append(user)
                scores[user], names[user] = fresh_scores(), f"New {user}"
            changed.setdefault(user, False)
            history.setdefault(user, []).append(dict(scores.get(user, {})))
        if rng.random() < 0.2:  # a user in the batch whose row did not change at all
            changed.setdefault(rng.choice(everyone), False)
        rows = [scores_row(u, scores.get(u, {}), names.get(u), renamed) for u, renamed in sorted(changed.items())]
        got = store.write(rows, batch=batch, plan=str(batch), rebuild=False, base_batch=batch - 1, as_of=None,
                          refreshed_at=None)
        assert got["written"], got
        folds += len(got["folded"])
        deltas_read += got["delta_rows"] > 0
        largest = max(largest, got["delta_rows"])
        check(store, {u: s for u, s in scores.items() if s}, names, rng, everyone)
        head = store.current(fresh=True)[0]  # type: ignore[index]
        # every node a head names is stored, and nothing else is (the versions before collected)
        ids = {node_key(n) for r in [head.users, head.delta_users, *head.boards.values(),
                                     *head.delta_boards.values()] for n in walk_nodes(store._load, r)}
        assert ids == {k for k in table.items if k[0].startswith("rnode#")} - set(_retired(table, head))
        if recent and batch < aged:  # the window boards still share (their ops were the all-time board's)
            assert {b[0] for b in shared(head)} == {b[0] for b in head.boards}, batch
        elif recent:  # windows split off as points age out of them, or old points reach the all-time board only
            split = {b for b in head.boards if b[1] != "all"} - shared(head)
    if recent:
        assert split, "no window split off"
    assert deltas_read >= 5  # reads over deltas not empty, most of the time
    if fold_ratio == 8:
        assert folds >= 1
    else:  # deltas far past the default's fold point: reads over many DEL'd and SET rows
        assert largest > 2 * 400 / 8, largest


def _retired(table: MemoryTable, head: RankHead) -> list[tuple[str, str]]:
    """The nodes of the version before that ``head``'s version replaced (still stored until the next lands)."""
    items = [table.items[(f"rretired#{head.version}", str(i))] for i in range(head.retired)]
    return [node_key(n) for item in items for n in zlib.decompress(bytes(item["ids"]["B"])).decode().split("\n") if n]


def test_a_small_refresh_writes_a_few_delta_nodes_not_the_trees() -> None:
    rng = random.Random(7)
    table = MemoryTable()
    store = RankTrees(table, cache_seconds=0)
    scores = {f"user-{i:06d}": {("overall", "all"): rng.randrange(1, 10**6),
                                ("overall", "30d"): rng.randrange(1, 10**4),
                                ("chess", "all"): rng.randrange(1, 10**5)} for i in range(20_000)}
    names = {u: f"Player number {u}" for u in scores}
    store.write([scores_row(u, s, names[u], False) for u, s in scores.items()], batch=1, plan="1", rebuild=True,
                base_batch=0, as_of=None, refreshed_at=None)
    nodes = stored_nodes(store)
    movers = rng.sample(sorted(scores), 200)  # 1% of the users score: a new place on every board
    for u in movers:
        scores[u] = {b: s + rng.randrange(1, 1000) for b, s in scores[u].items()}
    got = store.write([scores_row(u, scores[u], names[u], False) for u in movers], batch=2, plan="2",
                      rebuild=False, base_batch=1, as_of=None, refreshed_at=None)
    # before the deltas this wrote 712 of the 1,096 nodes (each mover's old and new leaf on each of the three
    # boards and its leaf in the index, and their ancestors: the changes fall in most leaves); now 22, the
    # deltas' few nodes only
    assert got["written"] and not got["folded"] and got["delta_rows"] == 200 * (1 + 2 * 3)
    assert got["nodes"] < nodes / 10, (got["nodes"], nodes)
    head = store.current(fresh=True)[0]  # type: ignore[index]
    assert head.delta_users.ref is not None and len(head.delta_boards) == 3
    ordered = rank_oracle.boards(scores, names)
    expected = rank_oracle.ranks(ordered)
    for u in movers[:20] + rng.sample(sorted(scores), 20):
        assert store.ranks_for(u) == expected[u]


def old_head_item(h: RankHead) -> dict[str, Any]:
    """A head as the code before the deltas wrote it: its trees' roots only, no delta field."""
    item = head_item(h, 0)
    trees = json.loads(zlib.decompress(item["trees"]["B"]))
    assert set(trees) == {"users", "boards"}  # empty deltas are not named
    return item


def test_a_head_without_deltas_reads_and_steps() -> None:
    table = MemoryTable()
    users = {f"u{i}": {("overall", "all"): 10 + i % 7, ("go", "30d"): 3 + i % 4} for i in range(60)}
    names = {u: f"N{u}" for u in users}
    rows = [scores_row(u, s, names[u], False) for u, s in sorted(users.items())]
    # the trees and head of that code's build, written directly
    w = TreeWriter("users", 1, lambda ids: {})
    index = w.build([(r.user_id, [list(s) for s in r.scopes]) for r in rows])
    boards = {}
    for board in [("overall", "all"), ("go", "30d")]:
        bw = TreeWriter(f"{board[0]}#{board[1]}", 1, lambda ids: {})
        boards[board] = bw.build(sorted((-s[board], u, names[u]) for u, s in users.items()))
        w.blobs.update(bw.blobs)
    for nid, blob in w.blobs.items():
        table.put({"pk": {"S": node_key(nid)[0]}, "sk": {"S": "n"}, "b": {"B": blob}})
    trees = {"users": [index.level, list(index.ref.key), index.ref.count, index.ref.node],  # type: ignore[union-attr]
             "boards": [[s, win, [r.level, list(r.ref.key), r.ref.count, r.ref.node]]  # type: ignore[union-attr]
                        for (s, win), r in sorted(boards.items())]}
    table.put({"pk": {"S": head_pk(0)}, "sk": {"S": HEAD_SK}, "version": {"S": "1"}, "batch": {"N": "1"},
               "plan": {"S": "1"}, "copies": {"N": "1"}, "retired": {"N": "0"},
               "trees": {"B": zlib.compress(json.dumps(trees).encode())}})
    head = read_head(table.items[(head_pk(0), HEAD_SK)])
    assert head.delta_users == EMPTY and head.delta_boards == {} and head.delta_rows == {}
    assert head.users == index and head.boards == boards
    assert old_head_item(head)["trees"]  # the same head written again names no delta either
    store = RankTrees(table, cache_seconds=0, copies=1)
    ordered = rank_oracle.boards(users, names)
    expected = rank_oracle.ranks(ordered)
    for u in users:
        assert store.ranks_for(u) == expected[u]
    got = store.around("go", "30d", "u5", 7)
    assert got is not None and list(got.entries) == rank_oracle.around(ordered[("go", "30d")], "u5", 7)
    # a refresh steps from it: the changes go to new deltas
    users["u5"] = {("overall", "all"): 99}
    written = store.write([scores_row("u5", users["u5"], names["u5"], False)], batch=2, plan="2", rebuild=False,
                          base_batch=1, as_of=None, refreshed_at=None)
    assert written["written"] and written["delta_rows"] > 0
    expected = rank_oracle.ranks(rank_oracle.boards(users, names))
    for u in users:
        assert store.ranks_for(u) == expected[u]
