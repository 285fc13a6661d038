"""The versioned count trees of ``streamboard.ranks`` in memory, against a sorted list: whatever sequence of
inserts, moves and deletes a refresh applies, every version holds exactly the oracle's entries, counts
positions right, stays balanced with nodes within their size, shares every untouched node with the version
before, and retires exactly the nodes it stopped using."""

from __future__ import annotations

import bisect
import random
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamboard.ranks import (
    DELETE,
    EMPTY,
    NODE_BYTES,
    WINDOWS,
    Node,
    Root,
    TreeWriter,
    UserScores,
    count_before,
    count_before_many,
    encoded_rows,
    entries_at,
    find,
    find_many,
    unpack,
    user_scores,
    walk_nodes,
)


class Memory:
    """Node items by id, as the table holds them; counts the reads."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.reads = 0

    def load(self, ids: Sequence[str]) -> Mapping[str, Node]:
        self.reads += len(ids)
        return {n: unpack(self.blobs[n]) for n in ids}


def write(mem: Memory, tree: str, version: int, root: Root, ops: list[tuple[Any, Any]] | None = None,
          entries: list[tuple[Any, ...]] | None = None) -> tuple[Root, TreeWriter]:
    w = TreeWriter(tree, version, mem.load)
    new = w.build(entries or []) if ops is None else w.update(root, ops)
    assert not set(w.blobs) & set(mem.blobs)  # a version's nodes are new ids
    mem.blobs.update(w.blobs)
    return new, w


def check(mem: Memory, root: Root, oracle: list[tuple[Any, ...]]) -> None:
    """The tree holds the oracle's rows, with true counts, balanced, every node within its size."""
    assert entries_at(mem.load, root, 0, len(oracle) + 5) == oracle
    assert (root.ref.count if root.ref else 0) == len(oracle)
    if root.ref is None:
        return

    def visit(nid: str, level: int, low: Any) -> tuple[int, Any]:
        blob = mem.blobs[nid]
        node = unpack(blob)
        assert node.level == level and node.entries
        assert len(blob) <= NODE_BYTES or len(node.entries) == 1
        if level == 0:
            keys = [r[:-1] for r in node.entries]
            assert keys == sorted(keys) and len(set(keys)) == len(keys)
            assert low is None or keys[0] == low
            return len(keys), keys[0]
        total = 0
        for child in node.entries:
            count, first = visit(child.node, level - 1, child.key)
            assert count == child.count and first == child.key
            total += count
        return total, node.entries[0].key

    assert visit(root.ref.node, root.level, root.ref.key)[0] == len(oracle)


def leaf_of(mem: Memory, root: Root, key: Any) -> str:
    assert root.ref is not None
    ref, level = root.ref, root.level
    while level > 0:
        node = mem.load([ref.node])[ref.node]
        ref = node.entries[max(0, bisect.bisect_right([c.key for c in node.entries], key) - 1)]
        level -= 1
    return ref.node


def board_key(score: int, user: str) -> tuple[int, str]:
    return (-score, user)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), rounds=st.integers(1, 6), size=st.sampled_from([0, 1, 30, 400, 2500]))
def test_every_version_equals_the_sorted_oracle(seed: int, rounds: int, size: int) -> None:
    rng = random.Random(seed)
    mem = Memory()
    scores = {f"u{i:05d}-{rng.choice(['', 'x' * rng.randrange(40)])}": rng.choice([rng.randrange(1, 50),
                                                                                   rng.randrange(1, 10**9)])
              for i in range(size)}
    names = {u: rng.choice([None, f"Player {rng.randrange(10**6)}"]) for u in scores}
    oracle = sorted((*board_key(s, u), names[u]) for u, s in scores.items())
    root, _ = write(mem, "b", 1, EMPTY, entries=oracle)
    check(mem, root, oracle)
    for version in range(2, rounds + 2):
        live = set(walk_nodes(mem.load, root))
        ops: dict[Any, Any] = {}
        users = list(scores)
        for _ in range(rng.choice([0, 1, 5, 60, size // 2 + 1])):
            kind = rng.random()
            if users and kind < 0.5:  # a score changes (ties are likely: scores repeat)
                u = rng.choice(users)
                ops[board_key(scores[u], u)] = DELETE
                scores[u] = rng.choice([scores[u] + rng.randrange(1, 5), rng.randrange(1, 50)])
                ops[board_key(scores[u], u)] = names[u]
            elif users and kind < 0.7:  # a user leaves the board
                u = rng.choice(users)
                ops[board_key(scores.pop(u), u)] = DELETE
                users.remove(u)
            elif users and kind < 0.8:  # a new name in the same place
                u = rng.choice(users)
                names[u] = f"renamed {rng.randrange(100)}"
                ops[board_key(scores[u], u)] = names[u]
            else:
                u = f"new{rng.randrange(10**6):06d}"
                if u not in scores:
                    scores[u], names[u] = rng.randrange(1, 60), None
                    ops[board_key(scores[u], u)] = None
        oracle = sorted((*board_key(s, u), names[u]) for u, s in scores.items())
        before = root
        root, w = write(mem, "b", version, root, ops=sorted(ops.items()))
        check(mem, root, oracle)
        now = set(walk_nodes(mem.load, root))
        assert w.retired == live - now  # retired: exactly the nodes of the version before it no longer uses
        assert now - live == set(w.blobs)  # written: exactly its new nodes
        if not ops:
            assert root == before and not w.blobs
        keys = [r[:-1] for r in oracle]
        probes = [r[:-1] for r in rng.sample(oracle, min(20, len(oracle)))] + [(-rng.randrange(70), ""),
                                                                            (-10**10, ""), (1, "")]
        for probe in probes:
            assert count_before(mem.load, root, probe) == bisect.bisect_left(keys, probe)
            assert find(mem.load, root, probe) == {r[:-1]: r[-1] for r in oracle}.get(probe)
        # the same descents at once (a profile's boards), with an empty tree among them
        reads = mem.reads
        assert count_before_many(mem.load, [(root, p) for p in probes] + [(EMPTY, (0, ""))]) == [
            bisect.bisect_left(keys, p) for p in probes] + [0]
        assert mem.reads - reads <= len(walk_nodes(mem.load, root))  # each node read once at most
        for start in {0, len(oracle) // 2, max(0, len(oracle) - 3)}:
            assert entries_at(mem.load, root, start, 7) == oracle[start:start + 7]


def test_an_update_writes_only_the_leaves_it_touches_and_their_ancestors() -> None:
    rng = random.Random(1)
    mem = Memory()
    oracle = sorted((*board_key(rng.randrange(10**6), f"user-{i:06d}"), f"name {i}") for i in range(20_000))
    root, _ = write(mem, "b", 1, EMPTY, entries=oracle)
    assert root.level >= 2
    moved = [oracle[100], oracle[10_000]]
    ops = sorted([(r[:-1], DELETE) for r in moved] + [(board_key(5, r[1]), r[2]) for r in moved],
                 key=lambda op: op[0])
    new, w = write(mem, "b", 2, root, ops=ops)
    # each changed key's leaf and every ancestor up to the root: at most three paths, no sibling rewritten
    assert 0 < len(w.blobs) == len(w.retired) <= 3 * (root.level + 1)
    touched = {leaf_of(mem, root, k) for k, _ in ops}  # the leaves the old tree routes the changed keys to
    assert {n for n in w.retired if unpack(mem.blobs[n]).level == 0} == touched
    assert find_many(mem.load, new, [k for k, _ in ops]) == {k: v for k, v in ops if v is not DELETE}


def test_emptying_a_tree_and_filling_it_again() -> None:
    mem = Memory()
    entries = [(i, i) for i in range(3000)]
    root, _ = write(mem, "u", 1, EMPTY, entries=entries)
    every = set(walk_nodes(mem.load, root))
    root, w = write(mem, "u", 2, root, ops=[(r[:-1], DELETE) for r in entries])
    assert root == EMPTY and not w.blobs and w.retired == every and len(every) > 3
    root, _ = write(mem, "u", 3, root, ops=[(r[:-1], r[-1]) for r in entries[:10]])
    check(mem, root, entries[:10])


def test_rank_rows_are_read_in_the_statements_format_and_in_the_one_before() -> None:
    """rank_scores.sql's ``scores``: JSON array items (decoded for every user at once), or the format before
    (``scope:all:30d:365d;...``, a statement the writer before started); each user's scopes in scope order."""
    rows = [{"user_id": "a", "user_name": "Ada", "name_changed": True,
             "scores": '["racing",5,0,5],["overall",12,7,12],["chess",7,7,7]'},
            {"user_id": "b", "user_name": None, "name_changed": False, "scores": None},
            {"user_id": "c", "user_name": "Cy", "name_changed": False, "scores": '["overall",3,3,0]'}]
    users = user_scores(rows)
    assert [(u.user_id, u.user_name, u.name_changed) for u in users] == [("a", "Ada", True), ("b", None, False),
                                                                         ("c", "Cy", False)]
    assert users[0].scope_lists() == [["chess", 7, 7, 7], ["overall", 12, 7, 12], ["racing", 5, 0, 5]]
    assert users[0].boards() == {("chess", "all"): 7, ("chess", "30d"): 7, ("chess", "365d"): 7,
                                 ("overall", "all"): 12, ("overall", "30d"): 7, ("overall", "365d"): 12,
                                 ("racing", "all"): 5, ("racing", "365d"): 5}
    assert users[1].scope_lists() == [] and users[2].boards() == {("overall", "all"): 3, ("overall", "30d"): 3}
    old = [{**rows[0], "scores": "racing:5:0:5;overall:12:7:12;chess:7:7:7"}, rows[1], rows[2]]
    assert [(u.user_id, u.scope_lists()) for u in user_scores(old)] == [(u.user_id, u.scope_lists()) for u in users]
    assert user_scores([]) == []
    with pytest.raises(ValueError, match="not \\[scope, all, 30d, 365d\\]"):
        user_scores([{"user_id": "d", "scores": '["overall",1,2]'}])


_NAMES = st.one_of(st.none(), st.sampled_from(['Ada', 'say "hi"', "back\\slash", "tab\tnew\nline", "Zoë 🎮", ""]),
                   st.text(max_size=12))


@settings(max_examples=60, deadline=None)
@given(users=st.lists(st.tuples(st.integers(0, 400), _NAMES,
                                st.lists(st.tuples(st.sampled_from(["overall", "chess", "racing"]),
                                                   st.integers(-3, 6), st.integers(-3, 6), st.integers(-3, 6)),
                                         max_size=3, unique_by=lambda s: s[0])),
                      max_size=60, unique_by=lambda u: u[0]))
def test_a_builds_encoded_rows_make_the_trees_of_the_sorted_oracle(users: list[Any]) -> None:
    """A build's rows, encoded without tuples (users in any order, names with quotes, escapes and emoji, scores
    tied, negative or zero): the user index and every board hold exactly the sorted oracle's rows."""
    given_users = [UserScores(f"u{uid:04d}", name, False, sorted([list(s) for s in scopes]))
                   for uid, name, scopes in users]
    index, boards = encoded_rows(given_users)
    by_id = sorted(given_users, key=lambda u: u.user_id)
    want_boards: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for u in by_id:
        for scope, *scores in u.scopes:
            for window, score in zip(WINDOWS, scores, strict=True):
                if score:
                    want_boards.setdefault((scope, window), []).append((-score, u.user_id, u.user_name))
    assert set(boards) == set(want_boards)
    mem = Memory()
    root, _ = write(mem, "users", 1, EMPTY, entries=index)  # type: ignore[arg-type]
    check(mem, root, [(u.user_id, u.scopes) for u in by_id if u.scopes])  # type: ignore[misc]
    for board, rows in boards.items():
        root, _ = write(mem, f"{board[0]}#{board[1]}", 1, EMPTY, entries=rows)  # type: ignore[arg-type]
        check(mem, root, sorted(want_boards[board]))
