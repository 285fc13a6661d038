"""Every user's rank on every board, and the entries around any user (issue 14): versioned count trees over
the board store's table (the aws store's DynamoDB table, the local store's SQLite one; ``ItemTable``).

Layout. One B+ tree per board, keyed by ``(-score, user_id)`` (board order: score descending, ties by user_id),
its leaves holding each user's name, every node the number of entries under each child; and one tree keyed
by user_id holding each user's scores on every board (the index from a user to their keys). A node is one
item, ``pk=rnode#<id>``, ``sk=n``: its entries, JSON in zlib's format (:data:`NODE_LEVEL`), about
:data:`NODE_BYTES` (one write unit, half a read unit). One **head** item (``pk=ranks``, and ``ranks#<c>`` for
its copy ``c``, ``sk=head``) names the roots of every tree of one version (its base's and, when not empty,
its delta's, with the delta's row count: a head without deltas, as the code before them wrote, has them all
empty), with the refresh batch and as_of it is of.

- rank of score s = 1 + the entries before key (-s, ""); below = entries - those before (-s + 1, "");
  of = the root's count (base and delta: below); percentile = below / of. A lookup descends one path:
  O(log n) items, the inner ones kept by each process (a node never changes: a version writes new ones).
- around a user: the user's score from the user tree, their position, and the entries from there.
- Base and delta (an LSM's two levels): every tree is a **base** and a **delta**, the delta an ordinary
  count tree of the same keys (same nodes, same :class:`TreeWriter`) holding only what changed since the
  base was written, each row marked ADD (a key not in the base: counts +1), DEL (a key of the base deleted:
  -1) or SET (a key of the base, a new value: 0); its counts are net, so the entries before a key are the
  base's plus the delta's net, a board's size the base's count plus the delta's. Reads merge both: a lookup
  tries the delta first; a rank is two descents per tree, all at once; around a user scans both trees by
  key from the user's key, backwards and forwards, skipping DEL'd rows (O(log n + limit) items).
- Writes: a refresh's changed users (``athena_sql/queries/rank_scores.sql``) become deletes and inserts on
  the trees' views, written as rows of each delta (the mark decided from the delta's row of the key alone:
  :func:`delta_value`); only the delta's leaves they touch and their ancestors are written, as new nodes
  (copy on write), the bases and the rest of the deltas shared with the version before. The delta is far
  smaller than the base, so a refresh's node writes follow the changed entries, not the base's leaves they
  spread over. When a delta holds more than a share of its base's entries (:func:`fold_share`: 1/8 to 1/2,
  more when refreshes change more), a refresh **folds** it: the base updated by the delta's rows (only the
  base's leaves they fall in, and their ancestors, written), the delta emptied; as many trees a refresh as
  keep pace with their growth, the nearest their share first (any past 1/:data:`FOLD_FORCE` regardless), so
  that trees growing together do not all fold in one refresh and the cost per refresh stays smooth. A full
  build writes every base node once, every delta empty. The nodes a step visits are read ahead, every tree
  a level at a time (:func:`prefetch_paths`), the leaves kept packed until used; each node is decoded once.
- Versions: nodes first, then the list of the nodes this version replaced, then the head (copy 0 on the
  condition that it still names the version read, then the other copies): a reader holding a head reads
  that version whole, all boards and the user index together, never two versions mixed. The nodes a version
  replaced are deleted when the version after it lands (a reader still on the head before finds nodes
  missing and starts again from a fresh head, as with the board pages).
- Shared windows: a scope's 30- and 365-day boards whose rows are its all-time board's (every point of every
  player on it that recent: a lake's first year, new players) name the all-time tree's roots instead of trees
  of their own, and cost no writes. A build shares a window's tree when its rows are the same; a step keeps it
  shared while the window's ops are the all-time tree's, and else splits it off once (a tree of its own built
  from the shared view's rows and its ops). A shared node is only ever retired by the all-time tree's writer,
  when no board of the new version names it any more (the windows following that tree, or split off).
- Node ids are a hash of the tree, the version and the content: a writer retried with the same input writes
  the very same items (no orphans), and a node deleted as retired is never one a later version uses.
"""

from __future__ import annotations

import bisect
import collections
import concurrent.futures
import contextvars
import functools
import hashlib
import itertools
import json
import logging
import math
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from streamboard.errors import NotFound, SinkError
from streamboard.ports import Board, BoardEntry
from streamboard.usage import dynamodb_write_units, item_size

log = logging.getLogger("streamboard.ranks")

WINDOWS = ("all", "30d", "365d")
HEAD_PK = "ranks"
HEAD_SK = "head"
NODE_PREFIX = "rnode#"
NODE_SK = "n"
RETIRED_PREFIX = "rretired#"
NODE_BYTES = 960  # a node's packed entries: with its keys and names, within 1 KB (one write unit)
FILL = 0.85  # a node split for size is cut into parts this full, leaving room for the next inserts
MERGE_BYTES = NODE_BYTES // 4  # a node written smaller than this is merged with a neighbour
RETIRED_PER_ITEM = 10_000  # node ids per item of a version's retired list (about 210 KB of 400)
_PROBE = 4096  # a run longer than this never packs into one node
ATTEMPTS = 3  # fresh heads a read takes before it gives up
CACHED_NODES = 16_384  # decoded nodes kept per process (1 KB items: about 40 MB at most)
# A node's compression: ISA-L's deflate (python-isal; zlib's format, so readers decompress with zlib), level 1.
# On 20,000 nodes of a 20M lake's rebuild (57.6 MB of JSON): 829 bytes a node at 315 MB/s, against zlib level 4's
# 794 at 103 MB/s and level 1's 891 at 120 MB/s; it runs without the GIL (two packing threads gain). Nodes hold
# fewer entries than at zlib's level 4 for a third of the time: that rebuild wrote 51,175 nodes instead of
# 49,698 (3% more nodes and write units).
NODE_LEVEL = 1
USERS = "users"  # the user index's tree name

Key = tuple[Any, ...]
Item = dict[str, Any]
ItemKey = tuple[str, str]


class _Delete:
    """An op that removes its key."""


DELETE = _Delete()


# --- nodes ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A child as its parent (or the head) names it: the subtree's first key, its entry count, its node."""

    key: Key
    count: int
    node: str


@dataclass(frozen=True)
class Node:
    """A decoded node. ``entries``: a leaf's rows (its key's parts, then its value: ``(-score, user_id, name)``
    on a board, ``(user_id, scopes)`` in the user index), an inner node's child :class:`Ref`\\ s."""

    level: int  # 0: a leaf
    entries: tuple[Any, ...]


@dataclass(frozen=True)
class Root:
    level: int
    ref: Ref | None  # None: an empty tree


EMPTY = Root(0, None)


_ENCODE = msgspec.json.Encoder()
_DECODE = msgspec.json.Decoder(tuple[int, list[tuple[Any, ...]]])  # rows as tuples: a leaf's keys are slices
_ROW = msgspec.json.Decoder(list[Any])


def pack(level: int, entries: Sequence[Any]) -> bytes:
    """A node's item body: ``[level, entries]`` as JSON, compressed in zlib's format. A leaf entry is its row (the key's
    parts, then the value), or that row already encoded (:func:`encoded_rows`: a build's); an inner entry
    ``[key, count, node]``."""
    if level == 0 and entries and type(entries[0]) is bytes:
        return _deflate()(b"[0,[" + b",".join(entries) + b"]]", NODE_LEVEL)
    rows = entries if level == 0 else [(r.key, r.count, r.node) for r in entries]
    return _deflate()(_ENCODE.encode((level, rows)), NODE_LEVEL)


@functools.cache
def _deflate() -> Callable[[bytes, int], bytes]:
    """ISA-L's zlib-format compress, imported by the first write (a reader, the ingest service's among them,
    only decompresses)."""
    from isal.isal_zlib import compress

    return compress


PACK_THREADS = 2  # a build's nodes are packed on this many threads (compression runs without the GIL)
_PARALLEL_FROM = 64  # nodes: fewer are packed on the caller's thread
_pack_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pack_pool_lock = threading.Lock()


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    """The packing threads, made with the first large build (and kept: a refresh process builds once)."""
    global _pack_pool
    with _pack_pool_lock:
        if _pack_pool is None:
            _pack_pool = concurrent.futures.ThreadPoolExecutor(PACK_THREADS, thread_name_prefix="rank-pack")
        return _pack_pool


def _packed(level: int, runs: Sequence[Sequence[Any]]) -> list[bytes]:
    return [pack(level, run) for run in runs]


def pack_many(level: int, runs: Sequence[Sequence[Any]]) -> list[bytes]:
    """:func:`pack` of each run, in order: a large build's on :data:`PACK_THREADS` threads, each a contiguous
    share (a thread compresses while another encodes; a task per node would cost more than it saves)."""
    if PACK_THREADS <= 1 or len(runs) < _PARALLEL_FROM:
        return _packed(level, runs)
    pool = _pool()
    shares = 4 * PACK_THREADS  # a few shares a thread: none waits long for the slowest
    cuts = [len(runs) * i // shares for i in range(shares + 1)]
    return [blob for f in [pool.submit(_packed, level, runs[a:b]) for a, b in itertools.pairwise(cuts)]
            for blob in f.result()]


def _cut(level: int, entries: Sequence[Any], per: int) -> list[tuple[Sequence[Any], bytes]]:
    """``entries`` cut in order into runs packed about :data:`FILL` full, each run as long as the density of
    the run before says (a board's density drifts: its top's distinct scores pack worse than its tail's ties,
    so runs of one length would leave most nodes far from full); a run over :data:`NODE_BYTES` is cut
    shorter at its own density, and the last ones share what is left evenly."""
    target = NODE_BYTES * FILL
    out: list[tuple[Sequence[Any], bytes]] = []
    i, n = 0, len(entries)
    while i < n:
        if n - i <= per * 3 // 2:  # the rest: one run if it fits, else two even ones
            rest = entries[i:]
            blob = pack(level, rest)
            if len(blob) <= NODE_BYTES or len(rest) == 1:
                out.append((rest, blob))
                break
            per = min(per, (len(rest) + 1) // 2)
        run = entries[i:i + per]
        blob = pack(level, run)
        while len(blob) > NODE_BYTES and len(run) > 1:
            run = entries[i:i + max(1, min(len(run) - 1, int(len(run) * target / len(blob))))]
            blob = pack(level, run)
        out.append((run, blob))
        i += len(run)
        per = max(1, min(int(len(run) * target / len(blob)), len(run) * 5 // 4 + 1, _PROBE))
    return out


def cut_runs(level: int, entries: Sequence[Any], per: int) -> list[tuple[Sequence[Any], bytes]]:
    """:func:`_cut` of a long run of entries (``per``: the run length to start from), a large one in segments
    on :data:`PACK_THREADS` threads (each at least :data:`_PARALLEL_FROM` nodes long: a segment's last node
    may be part full)."""
    segments = min(4 * PACK_THREADS, len(entries) // (per * _PARALLEL_FROM))
    if PACK_THREADS <= 1 or segments < 2:
        return _cut(level, entries, per)
    pool = _pool()
    cuts = [len(entries) * i // segments for i in range(segments + 1)]
    return [run for f in [pool.submit(_cut, level, entries[a:b], per) for a, b in itertools.pairwise(cuts)]
            for run in f.result()]


def unpack(blob: bytes) -> Node:
    level, rows = _DECODE.decode(zlib.decompress(blob))
    if level == 0:
        return Node(0, tuple(rows))
    return Node(level, tuple(Ref(tuple(k), c, n) for k, c, n in rows))


def node_key(node: str) -> ItemKey:
    return NODE_PREFIX + node, NODE_SK


def retired_key(version: int, part: int) -> ItemKey:
    return f"{RETIRED_PREFIX}{version}", str(part)


def _first(level: int, entries: Sequence[Any]) -> Key:
    if level:
        return entries[0].key  # type: ignore[no-any-return]
    row = entries[0]
    return tuple(_ROW.decode(row)[:-1]) if type(row) is bytes else row[:-1]


def _count(level: int, entries: Sequence[Any], net: bool = False) -> int:
    """The entries under a node: a base leaf's rows, a delta leaf's net count (the sum of its rows' marks)."""
    if level == 0:
        return sum(r[-1][0] for r in entries) if net else len(entries)
    return sum(r.count for r in entries)


class Gone(Exception):
    """A node of the version being read is no longer stored (two versions landed since its head was read)."""


Loader = Callable[[Sequence[str]], Mapping[str, Node]]


# --- reading a tree ------------------------------------------------------------------------------------------


def count_before(load: Loader, root: Root, key: Key) -> int:
    """How many entries of the tree sort before ``key``."""
    return count_before_many(load, [(root, key)])[0]


# A leaf is searched for a key with ``bisect_left(entries, key)``, no key function: a tree's keys have one
# length and a row is its key's parts and then its value, so a key sorts before its own row (a prefix of it)
# and after every row of a smaller key; the same position as comparing keys, a third of the time (no Python
# call per comparison).


def count_before_many(load: Loader, probes: Sequence[tuple[Root, Key]], net: Sequence[bool] = ()) -> list[int]:
    """:func:`count_before` of each (tree, key), all descents a level at a time: one read per level for all.
    ``net[i]``: probe i's tree is a delta, whose rows count by their marks (:data:`ADD` +1, :data:`DEL` -1,
    :data:`SET` 0) and whose inner counts are those sums."""
    state: list[tuple[Ref | None, int, int]] = [(root.ref, root.level, 0) for root, _ in probes]
    while True:
        todo = sorted({ref.node for ref, _, _ in state if ref is not None})
        if not todo:
            return [before for _, _, before in state]
        nodes = load(todo)
        for i, (ref, level, before) in enumerate(state):
            if ref is None:
                continue
            node, key = nodes[ref.node], probes[i][1]
            if level == 0:
                at = bisect.bisect_left(node.entries, key)
                if i < len(net) and net[i]:
                    at = sum(r[-1][0] for r in node.entries[:at])
                state[i] = (None, 0, before + at)
                continue
            j = max(0, bisect.bisect_left([c.key for c in node.entries], key) - 1)
            state[i] = (node.entries[j], level - 1, before + sum(c.count for c in node.entries[:j]))


def find(load: Loader, root: Root, key: Key) -> Any:
    """The value stored under ``key``, or None."""
    found = find_many(load, root, [key])
    return found.get(key)


def find_many(load: Loader, root: Root, keys: Iterable[Key]) -> dict[Key, Any]:
    """The values stored under these keys (those present), one level of nodes read at a time."""
    wanted = sorted(set(keys))
    if root.ref is None or not wanted:  # nothing to read
        return {}
    todo: dict[str, list[Key]] = {root.ref.node: wanted}
    level, out = root.level, {}
    while todo:
        nodes = load(list(todo))
        nxt: dict[str, list[Key]] = collections.defaultdict(list)
        for nid, wanted in todo.items():
            node = nodes[nid]
            if level == 0:
                for k in wanted:
                    i = bisect.bisect_left(node.entries, k)
                    if i < len(node.entries) and node.entries[i][:-1] == k:
                        out[k] = node.entries[i][-1]
                continue
            firsts = [c.key for c in node.entries]
            for k in wanted:
                nxt[node.entries[max(0, bisect.bisect_right(firsts, k) - 1)].node].append(k)
        todo, level = dict(nxt), level - 1
    return out


def entries_at(load: Loader, root: Root, start: int, n: int) -> list[tuple[Any, ...]]:
    """The rows at positions ``start`` .. ``start + n - 1`` (0-based), in order."""
    out: list[tuple[Any, ...]] = []

    def visit(ref: Ref, level: int, start: int, n: int) -> None:
        node = load([ref.node])[ref.node]
        if level == 0:
            out.extend(node.entries[start:start + n])
            return
        for child in node.entries:
            if n <= 0:
                return
            if start >= child.count:
                start -= child.count
                continue
            take = min(n, child.count - start)
            visit(child, level - 1, start, take)
            n -= take
            start = 0

    if root.ref is not None and n > 0:
        visit(root.ref, root.level, start, n)
    return out


def rows_from(load: Loader, root: Root, key: Key, forward: bool = True) -> Iterator[tuple[Any, ...]]:
    """The rows from ``key`` on (``forward``: those with keys >= ``key``, ascending; else those < ``key``,
    descending), lazily: a node is read when the scan reaches it (O(depth + rows / leaf) items). By key, not
    by position, so it scans a delta too (whose counts are net, not positions)."""
    def visit(ref: Ref, level: int) -> Iterator[tuple[Any, ...]]:
        node = load([ref.node])[ref.node]
        if level == 0:
            if forward:
                yield from node.entries[bisect.bisect_left(node.entries, key):]
            else:
                yield from reversed(node.entries[:bisect.bisect_left(node.entries, key)])
            return
        firsts = [c.key for c in node.entries]
        if forward:
            for child in node.entries[max(0, bisect.bisect_right(firsts, key) - 1):]:
                yield from visit(child, level - 1)
        else:
            for child in reversed(node.entries[:max(1, bisect.bisect_left(firsts, key))]):
                yield from visit(child, level - 1)

    if root.ref is not None:
        yield from visit(root.ref, root.level)


def rows_of(load: Loader, root: Root) -> list[tuple[Any, ...]]:
    """Every row of the tree, in order (one read per level)."""
    if root.ref is None:
        return []
    todo, level = [root.ref.node], root.level
    while level > 0:
        nodes = load(todo)
        todo = [c.node for nid in todo for c in nodes[nid].entries]
        level -= 1
    nodes = load(todo)
    return [row for nid in todo for row in nodes[nid].entries]


def _route(children: Sequence[Ref], ops: Sequence[tuple[Key, Any]]) -> dict[int, list[tuple[Key, Any]]]:
    """The sorted ops by the child each falls in (child i holds the keys from its first on; keys before the
    first child's go to it), in one pass over both."""
    keys = [op[0] for op in ops]
    return {i: list(ops[lo:hi]) for i, (lo, hi) in enumerate(_splits(children, keys)) if lo < hi}


def _splits(children: Sequence[Ref], keys: Sequence[Key]) -> list[tuple[int, int]]:
    """For each child, the slice of the sorted ``keys`` that falls in it (child i holds the keys from its first
    to the next child's first; keys before the first child's go to it): a bisection per child, not per key."""
    cuts = [0] + [bisect.bisect_left(keys, c.key) for c in children[1:]] + [len(keys)]
    return list(zip(cuts, cuts[1:], strict=False))


def prefetch_paths(load: Loader, fetch_leaves: Callable[[Sequence[str]], None],
                   trees: Sequence[tuple[Root, Sequence[Key]]]) -> None:
    """Read ahead the nodes an update of each tree by ops on these keys visits: every tree's inner nodes on
    those keys' paths a level at a time (``load``: one read per level for all trees), and the leaves they
    reach (``fetch_leaves``: read at once, decoded only when used)."""
    frontier: dict[str, tuple[int, list[Key]]] = {}
    for root, keys in trees:
        if root.ref is not None and keys:
            frontier[root.ref.node] = (root.level, list(keys))
    while frontier:
        leaves = [nid for nid, (level, _) in frontier.items() if level == 0]
        if leaves:
            fetch_leaves(leaves)
        inner = {nid: lk for nid, lk in frontier.items() if lk[0] > 0}
        nodes = load(list(inner)) if inner else {}
        nxt: dict[str, tuple[int, list[Key]]] = {}
        for nid, (level, keys) in inner.items():
            children = nodes[nid].entries
            for child, (lo, hi) in zip(children, _splits(children, keys), strict=True):
                if lo < hi:
                    nxt[child.node] = (level - 1, keys[lo:hi])
        frontier = nxt


def walk_nodes(load: Loader, root: Root) -> list[str]:
    """Every node of the tree (the inner nodes read, the leaves named by their parents)."""
    if root.ref is None:
        return []
    out, todo, level = [root.ref.node], [root.ref.node], root.level
    while level > 0 and todo:
        nodes = load(todo)
        todo = [c.node for nid in todo for c in nodes[nid].entries]
        out.extend(todo)
        level -= 1
    return out


# --- a tree's view: its base and its delta ------------------------------------------------------------------
#
# A tree is a base and a delta: the delta an ordinary count tree of the same keys, holding only what changed
# since the base was written, each row's value ``[mark, value]``: ADD (+1, a key not in the base), DEL (-1, a
# key of the base deleted; value None) or SET (0, a key of the base with a new value). Its leaves count the
# sum of their marks and its inner nodes the sum of their children's: the delta's counts are net, so the
# entries of the view (the base less its DEL'd keys, plus the ADD'd and SET rows) before a key are the base's
# before it plus the delta's net before it, and a board's size is the base's count plus the delta's.
#
# Deciding a mark needs no read of the base. A user has exactly one entry per board in the view (and one row
# in the user index), and a refresh knows, from the view's user index, whether a key it writes is in the view
# (a value changed in place: a name, or a user's scores) or not (a new place), and which key it deletes:
# - a key not in the view inserted: if the delta has DEL(k), k is in the base, so SET(k, value); else k is in
#   neither (a key not in the view is in the base only when DEL'd), so ADD(k, value);
# - a key of the view given a new value: ADD stays ADD with the new value (still not in the base), anything
#   else (SET, or no delta row: k from the base) is SET(k, value);
# - a key of the view deleted: ADD(k) means it was never in the base, so the delta row goes; SET(k) or no delta
#   row means k is in the base, so DEL(k).
# A lookup reads the delta first (ADD or SET: its value; DEL: absent), the base only for keys it has no row of.

ADD, DEL, SET = 1, -1, 0  # a delta row's mark: its count in the delta's net counts
INSERT, CHANGE, REMOVE = "insert", "change", "remove"  # an op on the view: a new key, a new value, a key gone
# A tree's delta is folded into its base (the base updated by the delta's ops, copy on write, the delta
# emptied) once it holds a share f of the base's entries. A refresh's changes spread over the whole key range,
# so its writes into the delta rewrite about every leaf of the delta (when it has fewer leaves than changes)
# and a fold about every leaf of the base: with the delta growing by a share r of the base each refresh, the
# average per refresh is about f / 2 + r / f of the base's leaves, least at f = sqrt(2 r). So f is that, r
# this refresh's growth, within [1/FOLD_RATIO, 1/FOLD_FORCE]: at least 1/8 (a fold, which touches most of the
# base's leaves, then comes at most once per base/8 changed rows: about 8 / (rows a leaf) nodes per changed
# row, a third of a node at 25 rows a leaf, under the delta's own cost of up to a node per changed row), at
# most 1/2 (reads merge the delta's rows: a delta at most half the base's size, a read's DEL'd rows within a
# window about as many as its live ones at worst).
FOLD_RATIO = 8
FOLD_FORCE = 2  # every tree whose delta holds more than 1/FOLD_FORCE of its base's entries, whatever the bound
FOLDS_PER_REFRESH = 2  # the least trees a later refresh is counted on to fold (RankTrees._step's schedule)


# A batch that changed at least 1 in REBUILD_EVERY of the ranked users has its trees built again from every
# user's rows instead of stepped (``rank_scores.sql`` reads them all then). A changed user's entry is two delta
# rows, the DEL of its old key and the ADD of its new one (the key holds the score), so a quarter of a board's
# users changed put its delta at half its base, past 1/FOLD_FORCE: every such tree folds in the same
# refresh, and a fold with changes in about every leaf rewrites every leaf of the base anyway. A build does
# that work once, without the step's per-change reads and merges (about a fifth of the step's time in a py-spy
# profile of a 4M lake's refresh after 200k new events), and packs its nodes fuller.
REBUILD_EVERY = 4


def fold_share(grown: float) -> float:
    """The share of its base's entries at which a tree's delta is folded, given the share it grew by in this
    refresh (the reasoning above)."""
    return min(1 / FOLD_FORCE, max(1 / FOLD_RATIO, math.sqrt(2 * max(0.0, grown))))


def delta_value(kind: str, cur: list[Any] | None, value: Any) -> Any:
    """The delta row of a key after an op on the view (``kind``: :data:`INSERT`, :data:`CHANGE` or
    :data:`REMOVE`; ``cur`` the key's delta row, ``[mark, value]``, or None): its new ``[mark, value]``, or
    :data:`DELETE` when the delta has no row of it any more (the reasoning above)."""
    mark = None if cur is None else cur[0]
    if kind == INSERT:
        return [SET if mark == DEL else ADD, value]
    if kind == CHANGE:
        return [ADD if mark == ADD else SET, value]
    return DELETE if mark == ADD else [DEL, None]


def base_ops(rows: Iterable[tuple[Any, ...]]) -> list[tuple[Key, Any]]:
    """A delta's rows (in key order) as the ops that fold them into the base."""
    return [(row[:-1], DELETE if row[-1][0] == DEL else row[-1][1]) for row in rows]


def view_find_many(load: Loader, base: Root, delta: Root, keys: Iterable[Key]) -> dict[Key, Any]:
    """:func:`find_many` on a tree's view: the delta's ADD and SET rows, the base for keys it has no row of."""
    keys = list(keys)
    found = find_many(load, delta, keys)
    out = {k: v[1] for k, v in found.items() if v[0] != DEL}
    out.update(find_many(load, base, [k for k in keys if k not in found]))
    return out


def view_rows(load: Loader, base: Root, delta: Root) -> dict[Key, Any]:
    """Every row of a tree's view, key -> value (in key order): the base's, the delta's merged in."""
    rows = {r[:-1]: r[-1] for r in rows_of(load, base)}
    for r in rows_of(load, delta):
        if r[-1][0] == DEL:
            del rows[r[:-1]]
        else:
            rows[r[:-1]] = r[-1][1]
    return rows


def view_count_before_many(load: Loader, probes: Sequence[tuple[Root, Root, Key]]) -> list[int]:
    """The entries of each (base, delta) view before its key: every descent of both trees at once."""
    counts = count_before_many(load, [(t, k) for b, d, k in probes for t in (b, d)], [False, True] * len(probes))
    return [counts[2 * i] + counts[2 * i + 1] for i in range(len(probes))]


def view_rows_from(load: Loader, base: Root, delta: Root, key: Key, forward: bool = True
                   ) -> Iterator[tuple[Any, ...]]:
    """:func:`rows_from` on a tree's view: the base's rows and the delta's merged by key, a DEL'd row skipped,
    a SET row's value in place of the base's."""
    bs, ds = rows_from(load, base, key, forward), rows_from(load, delta, key, forward)
    b, d = next(bs, None), next(ds, None)
    while b is not None or d is not None:
        if d is None or (b is not None and (b[:-1] < d[:-1] if forward else b[:-1] > d[:-1])):
            yield b  # type: ignore[misc]
            b = next(bs, None)
            continue
        if b is not None and b[:-1] == d[:-1]:
            b = next(bs, None)
        if d[-1][0] != DEL:
            yield (*d[:-1], d[-1][1])
        d = next(ds, None)


# --- writing a tree ------------------------------------------------------------------------------------------


class TreeWriter:
    """Builds one tree's next version from the one before (or from nothing): new nodes in :attr:`blobs`
    (id -> packed), and the ids of the nodes of the version before that it no longer uses in :attr:`retired`."""

    def __init__(self, tree: str, version: int, load: Loader, forget: Callable[[str], None] | None = None,
                 *, net: bool = False) -> None:
        self.tree, self.version, self.load = tree, version, load
        self.net = net  # a delta: a leaf's count is its rows' net (their marks' sum), not their number
        self.forget = forget  # drops a node of the version before from ``load``'s cache (memory: a large step)
        self.fresh: dict[str, Node] = {}
        self.blobs: dict[str, bytes] = {}
        self.retired: set[str] = set()

    def node(self, ref: Ref) -> Node:
        """A node of this write (decoded, kept while its parent may still change) or of the version before."""
        made = self.fresh.get(ref.node)
        if made is not None:
            return made
        if ref.node in self.blobs:
            return unpack(self.blobs[ref.node])
        node = self.load([ref.node])[ref.node]
        if self.forget is not None and node.level == 0:  # a leaf of the version before is read once
            self.forget(ref.node)
        return node

    def _retire(self, ref: Ref) -> None:
        if ref.node in self.blobs:  # made by this write and replaced within it: never written
            del self.blobs[ref.node]
            self.fresh.pop(ref.node, None)
        else:
            self.retired.add(ref.node)

    def _chunks(self, level: int, entries: Sequence[Any]) -> list[tuple[Sequence[Any], bytes]]:
        """``entries`` cut into runs that pack within :data:`NODE_BYTES` (a run that fits stays whole; a longer
        one is cut evenly into runs about :data:`FILL` full), with their packed bytes."""
        n = len(entries)
        if n <= _PROBE:
            blob = pack(level, entries)
            if len(blob) <= NODE_BYTES or n == 1:
                return [(entries, blob)]
            if len(blob) <= 4 * NODE_BYTES:  # a node or two over: parts of its own density
                parts = max(2, math.ceil(len(blob) / (NODE_BYTES * FILL)))
                return self._parts(level, entries, parts)
        lo, hi = 1, min(n, _PROBE)  # entries a node holds at the density of the first ones
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len(pack(level, entries[:mid])) <= NODE_BYTES * FILL:
                lo = mid
            else:
                hi = mid - 1
        return cut_runs(level, entries, lo)

    def _parts(self, level: int, entries: Sequence[Any], parts: int) -> list[tuple[Sequence[Any], bytes]]:
        """``entries`` cut evenly into ``parts`` runs, each cut again if it packs over :data:`NODE_BYTES`."""
        n = len(entries)
        runs = [entries[i * n // parts:(i + 1) * n // parts] for i in range(parts)]
        out: list[tuple[Sequence[Any], bytes]] = []
        for part, blob in zip(runs, pack_many(level, runs), strict=True):
            out.extend([(part, blob)] if len(blob) <= NODE_BYTES or len(part) == 1 else self._chunks(level, part))
        return out

    def emit(self, level: int, entries: Sequence[Any], *, keep: bool = True) -> list[Ref]:
        """New nodes holding these entries (in order); their refs (none for no entries). ``keep``: also keep
        them decoded (an update may merge or replace them before it ends; a build never does)."""
        refs: list[Ref] = []
        if not entries:
            return refs
        for chunk, blob in self._chunks(level, entries):
            nid = hashlib.sha256(f"{self.tree}\n{self.version}\n".encode() + blob).hexdigest()[:20]
            self.blobs[nid] = blob
            if keep:
                self.fresh[nid] = Node(level, tuple(chunk))
            refs.append(Ref(_first(level, chunk), _count(level, chunk, self.net), nid))
        return refs

    def build(self, entries: Sequence[tuple[Any, ...]] | Sequence[bytes]) -> Root:
        """A tree of these rows (sorted by key, keys unique; rows, or rows encoded: :func:`encoded_rows`)."""
        refs, level = self.emit(0, entries, keep=False), 0
        while len(refs) > 1:
            refs, level = self.emit(level + 1, refs, keep=False), level + 1
        return Root(level, refs[0]) if refs else EMPTY

    def update(self, root: Root, ops: Sequence[tuple[Key, Any]]) -> Root:
        """The tree after ``ops`` (sorted by key, one per key): ``(key, value)`` sets, ``(key, DELETE)`` removes.
        Only the leaves the ops fall in and their ancestors are written again."""
        if not ops:
            return root
        if root.ref is None:
            return self.build([(*k, v) for k, v in ops if v is not DELETE])
        refs, level = self._apply(root.ref, root.level, ops), root.level
        while len(refs) > 1:
            refs, level = self.emit(level + 1, refs), level + 1
        if not refs:
            return EMPTY
        ref = refs[0]
        while level > 0:  # a root with one child gives way to it
            node = self.node(ref)
            if len(node.entries) != 1:
                break
            self._retire(ref)
            ref, level = node.entries[0], level - 1
        return Root(level, ref)

    def _apply(self, ref: Ref, level: int, ops: Sequence[tuple[Key, Any]]) -> list[Ref]:
        """The refs that replace ``ref`` after ``ops`` (none when its subtree is emptied; itself when nothing
        in it changes)."""
        node = self.node(ref)
        if level == 0:
            entries = list(node.entries)  # the ops merged in place (a few per leaf: no dict of every row)
            changed = False
            for k, v in ops:
                # a key sorts before its row and after every row of a smaller key: no key function needed
                i = bisect.bisect_left(entries, k)
                hit = i < len(entries) and entries[i][:-1] == k
                if v is DELETE:
                    if hit:
                        del entries[i]
                        changed = True
                    continue
                row = (*k, v)
                if not hit:
                    entries.insert(i, row)
                    changed = True
                elif entries[i] != row:
                    entries[i] = row
                    changed = True
            if not changed:
                return [ref]
            self._retire(ref)
            return self.emit(0, entries)
        groups = _route(node.entries, ops)
        wanted = [node.entries[i].node for i in groups if node.entries[i].node not in self.fresh]
        if len(wanted) > 1:
            self.load(wanted)  # one read for the children the ops go to
        children: list[Ref] = []
        for i, child in enumerate(node.entries):
            children.extend(self._apply(child, level - 1, groups[i]) if i in groups else [child])
        if children == list(node.entries):
            return [ref]
        self._retire(ref)
        children = self._rebalanced(level - 1, children)
        for child in children:  # no longer merged with anything: only their bytes are kept
            self.fresh.pop(child.node, None)
        return self.emit(level, children) if children else []

    def _rebalanced(self, level: int, children: list[Ref]) -> list[Ref]:
        """Siblings with every node written here small merged into a neighbour (and cut again if need be), so
        that deletes do not leave the tree full of near-empty nodes."""
        i = 0
        while i < len(children) and len(children) > 1:
            c = children[i]
            if c.node not in self.fresh or len(self.blobs[c.node]) >= MERGE_BYTES:
                i += 1
                continue
            a = i if i + 1 < len(children) else i - 1
            entries = list(self.node(children[a]).entries) + list(self.node(children[a + 1]).entries)
            self._retire(children[a])
            self._retire(children[a + 1])
            merged = self.emit(level, entries)
            children[a:a + 2] = merged
            i = a if len(merged) == 1 else a + len(merged)
        return children


# --- the head --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RankHead:
    """One version of every tree: the user index and one tree per board with entries, each a base and a delta
    (:attr:`users` / :attr:`boards` the bases, :attr:`delta_users` / :attr:`delta_boards` the deltas, empty when
    not named; :attr:`delta_rows` each delta's rows by tree name, :func:`tree_name`)."""

    version: int
    batch: int  # the refresh batch whose ranks these are
    plan: str  # that batch's identity (a batch number recurs after the state is built from nothing)
    as_of: str | None
    refreshed_at: str | None
    users: Root
    boards: dict[tuple[str, str], Root]
    retired: int = 0  # items of this version's retired list (the nodes it replaced)
    gc: tuple[int, int] | None = None  # (version, items): the retired list this head's writer deletes
    copies: int = 1
    delta_users: Root = EMPTY
    delta_boards: dict[tuple[str, str], Root] = field(default_factory=dict)
    delta_rows: dict[str, int] = field(default_factory=dict)

    def board(self, board: tuple[str, str]) -> tuple[Root, Root]:
        """A board's base and delta (both empty: no such board)."""
        return self.boards.get(board, EMPTY), self.delta_boards.get(board, EMPTY)

    def size(self, board: tuple[str, str]) -> int:
        """A board's entries: its base's count plus its delta's net count."""
        return sum(r.ref.count for r in self.board(board) if r.ref is not None)


def shared_with(board: tuple[str, str]) -> tuple[str, str]:
    """The board whose tree a window's board shares while their rows are the same: its scope's all-time board
    (the 30- and 365-day boards equal it while every player's points are that recent: a lake's first year, a
    new player)."""
    return board[0], "all"


def tree_name(board: tuple[str, str] | None) -> str:
    """A tree's name (in node ids and :attr:`RankHead.delta_rows`): ``users``, or ``scope#window``."""
    return USERS if board is None else f"{board[0]}#{board[1]}"


def head_pk(copy: int) -> str:
    return HEAD_PK if copy == 0 else f"{HEAD_PK}#{copy}"


def _root_json(root: Root) -> list[Any] | None:
    return None if root.ref is None else [root.level, list(root.ref.key), root.ref.count, root.ref.node]


def _root(data: list[Any] | None) -> Root:
    return EMPTY if data is None else Root(data[0], Ref(tuple(data[1]), data[2], data[3]))


def head_item(h: RankHead, copy: int) -> Item:
    trees: dict[str, Any] = {"users": _root_json(h.users),
                             "boards": [[s, w, _root_json(r)] for (s, w), r in sorted(h.boards.items())]}
    # the deltas, only those not empty (a head without them, as the code before wrote, has empty deltas)
    deltas: dict[str, Any] = {}
    if h.delta_users.ref is not None:
        deltas["users"] = [_root_json(h.delta_users), h.delta_rows.get(USERS, 0)]
    if any(r.ref is not None for r in h.delta_boards.values()):
        deltas["boards"] = [[s, w, _root_json(r), h.delta_rows.get(tree_name((s, w)), 0)]
                            for (s, w), r in sorted(h.delta_boards.items()) if r.ref is not None]
    if deltas:
        trees["deltas"] = deltas
    item: Item = {"pk": {"S": head_pk(copy)}, "sk": {"S": HEAD_SK}, "version": {"S": str(h.version)},
                  "batch": {"N": str(h.batch)}, "plan": {"S": h.plan}, "copies": {"N": str(h.copies)},
                  "retired": {"N": str(h.retired)},
                  "trees": {"B": zlib.compress(json.dumps(trees, separators=(",", ":")).encode(), 6)}}
    for name in ("as_of", "refreshed_at"):
        if getattr(h, name) is not None:
            item[name] = {"S": getattr(h, name)}
    if h.gc is not None:
        item["gc_version"], item["gc_items"] = {"N": str(h.gc[0])}, {"N": str(h.gc[1])}
    return item


def read_head(item: Item) -> RankHead:
    trees = json.loads(zlib.decompress(bytes(item["trees"]["B"])))
    gc = (int(item["gc_version"]["N"]), int(item["gc_items"]["N"])) if "gc_version" in item else None
    deltas = trees.get("deltas", {})  # none: a head of the code before the deltas (or every delta empty)
    delta_users = _root(deltas["users"][0]) if "users" in deltas else EMPTY
    rows = {USERS: deltas["users"][1]} if "users" in deltas else {}
    delta_boards = {}
    for s, w, r, n in deltas.get("boards", []):
        delta_boards[(s, w)] = _root(r)
        rows[tree_name((s, w))] = n
    return RankHead(int(item["version"]["S"]), int(item["batch"]["N"]), item["plan"]["S"],
                    item.get("as_of", {}).get("S"), item.get("refreshed_at", {}).get("S"), _root(trees["users"]),
                    {(s, w): _root(r) for s, w, r in trees["boards"]}, int(item["retired"]["N"]), gc,
                    int(item["copies"]["N"]), delta_users, delta_boards, rows)


# --- the rows of rank_scores.sql ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserScores:
    """A user's row of ``rank_scores.sql``: every scope's [scope, all, 30d, 365d] (none: on no board), in scope
    order (lists, as :func:`user_scores` decodes them, or tuples)."""

    user_id: str
    user_name: str | None
    name_changed: bool
    scopes: Sequence[Sequence[Any]]

    def boards(self) -> dict[tuple[str, str], int]:
        return boards_of(self.scopes)

    def scope_lists(self) -> list[list[Any]]:
        """The scopes as the user index's row holds them (lists)."""
        scopes = self.scopes
        if isinstance(scopes, list) and (not scopes or isinstance(scopes[0], list)):
            return scopes
        return [list(s) for s in scopes]


def boards_of(scopes: Iterable[Sequence[Any]]) -> dict[tuple[str, str], int]:
    """Each board a user has a score on (nonzero, as the boards list them) and the score."""
    out = {}
    for scope, a, b, c in scopes:
        if a:
            out[(scope, "all")] = int(a)
        if b:
            out[(scope, "30d")] = int(b)
        if c:
            out[(scope, "365d")] = int(c)
    return out


def encoded_rows(users: Iterable[UserScores]) -> tuple[list[bytes], dict[tuple[str, str], list[bytes]]]:
    """Every tree's rows for a build, each row already JSON (as :func:`pack` would encode it): the user index's
    ``[user_id, scopes]`` by user_id, and each board's ``[-score, user_id, name]`` in board order (score
    descending, then user_id). A build's rows are millions (3.5M on a 4M lake's 200,000 players): as tuples,
    sorted, then encoded, nearly all their time went to reaching objects scattered in memory. Here each user's
    ``"user_id","name"]`` is encoded once, a board's rows are grouped by score (users in user_id order, so a
    score's rows are in board order as they come), and each distinct score's ``[-score,`` is written once."""
    encode = _ENCODE.encode
    index: list[bytes] = []
    per_scope: dict[str, tuple[dict[int, list[bytes]], ...]] = {}  # a scope's boards by window: score -> tails
    for u in sorted(users, key=lambda u: u.user_id):
        scopes = u.scope_lists()
        if not scopes:
            continue
        index.append(encode((u.user_id, scopes)))
        tail = encode((u.user_id, u.user_name))[1:]  # '"user_id","name"]'
        for scope, a, b, c in scopes:
            buckets = per_scope.get(scope)
            if buckets is None:
                buckets = per_scope[scope] = ({}, {}, {})
            # each window unrolled: a loop over the three took 5-30% longer on the 20M rebuild's 3.6M rows
            if a:
                same = buckets[0].get(a)
                if same is None:
                    buckets[0][a] = [tail]
                else:
                    same.append(tail)
            if b:
                same = buckets[1].get(b)
                if same is None:
                    buckets[1][b] = [tail]
                else:
                    same.append(tail)
            if c:
                same = buckets[2].get(c)
                if same is None:
                    buckets[2][c] = [tail]
                else:
                    same.append(tail)
    per_board: dict[tuple[str, str], list[bytes]] = {}
    for scope, windows in per_scope.items():
        for window, by_score in zip(WINDOWS, windows, strict=True):
            if not by_score:
                continue
            rows: list[bytes] = []
            for score in sorted(by_score, reverse=True):
                rows += map(b"[%d,".__mod__(-score).__add__, by_score[score])
            per_board[(scope, window)] = rows
    return index, per_board


_SCOPES = msgspec.json.Decoder(list[list[list[str | int]]])  # users' scopes: lists, as the user index holds them


def user_scores(rows: Iterable[Mapping[str, Any]]) -> list[UserScores]:
    """The statement's rows, parsed: ``scores`` is a JSON array's items ``["scope",all,30d,365d]``, decoded for
    every user in one call (a rebuild reads every user: 200,000 rows of 6 scopes each on the benchmark lake);
    a row in the format before, ``scope:all:30d:365d`` ``;``-separated (a statement the writer before this
    one started), is read as well."""
    rows = rows if isinstance(rows, list) else list(rows)
    texts = [row.get("scores") or "" for row in rows]
    if not texts:
        return []
    if all(not t or t[0] == "[" for t in texts):
        decoded = _SCOPES.decode("[[" + "],[".join(texts) + "]]")
    else:
        decoded = [_SCOPES.decode("[[" + t + "]]")[0] if t.startswith("[") else _old_scopes(t) for t in texts]
    out = []
    for row, scopes in zip(rows, decoded, strict=True):
        for scope in scopes:
            if len(scope) != 4:
                raise ValueError(f"a rank row's scope is not [scope, all, 30d, 365d]: {scope!r}")
        scopes.sort()
        out.append(UserScores(row["user_id"], row.get("user_name"), bool(row.get("name_changed")), scopes))
    return out


def _old_scopes(text: str) -> list[list[str | int]]:
    out: list[list[str | int]] = []
    for part in text.split(";"):
        if part:
            scope, a, b, c = part.split(":")
            out.append([scope, int(a), int(b), int(c)])
    return out


def _node_item_size(item: Item) -> int:
    """``usage.item_size`` of a node or retired-list item (a key and one binary attribute), computed directly."""
    (name, value), = ((k, v) for k, v in item.items() if k not in ("pk", "sk"))
    return 2 + len(item["pk"]["S"].encode()) + 2 + len(item["sk"]["S"].encode()) + len(name) + len(value["B"])


# --- the store -------------------------------------------------------------------------------------------------


class RankTrees:
    """The ranks of every user on every board (:class:`streamboard.ports.RankStore`) over an ``ItemTable``
    (``streamboard.boards``): written by the refresh's writer, read by the read API, with a per-process cache
    of heads (``cache_seconds``, as the boards) and of nodes (they never change)."""

    def __init__(self, table: Any, *, copies: int = 2, cache_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None,
                 workers: int = 1) -> None:
        if copies < 1:
            raise ValueError("the ranks' head needs at least one copy")
        self.table, self.copies, self.cache_seconds, self.clock = table, copies, cache_seconds, clock
        self.rng = rng or random.Random()
        self.workers = workers  # parallel BatchWriteItem calls of a large write (the aws store)
        self._lock = threading.Lock()
        self._head: tuple[RankHead, float] | None = None
        self._nodes: collections.OrderedDict[str, Node] = collections.OrderedDict()
        self.writes = 0  # the versions this process wrote (what it answered from memory before is stale)

    # --- reads -------------------------------------------------------------------------------------------

    def current(self, *, fresh: bool = False) -> tuple[RankHead, float] | None:
        """The head, and when this process read it: cached, a random copy (copy 0 if that one is missing), or
        when ``fresh`` copy 0 strongly consistent."""
        now = self.clock()
        if not fresh and self.cache_seconds > 0:
            with self._lock:
                cached = self._head
            if cached is not None and now - cached[1] < self.cache_seconds:
                return cached
        if fresh:
            item = self.table.get((head_pk(0), HEAD_SK), consistent=True)
        else:
            copy = self.rng.randrange(self.copies)
            item = self.table.get((head_pk(copy), HEAD_SK), consistent=False)
            if item is None and copy != 0:
                item = self.table.get((head_pk(0), HEAD_SK), consistent=False)
        if item is None:
            return None
        got = read_head(item), now
        if self.cache_seconds > 0:
            with self._lock:
                self._head = got
        return got

    def built_batch(self) -> int | None:
        """The batch whose ranks the store holds (None: none yet): what the next batch's plan steps from."""
        with self.table.operation("ranks.base"):
            got = self.current(fresh=True)
        return None if got is None else got[0].batch

    def _load(self, ids: Sequence[str]) -> dict[str, Node]:
        """Nodes by id: cached, else read (eventually consistent, then strongly for any not found: a node
        just written may not be on every replica). :class:`Gone` when one is not stored."""
        out: dict[str, Node] = {}
        missing = []
        with self._lock:
            for nid in ids:
                node = self._nodes.get(nid)
                if node is None:
                    missing.append(nid)
                else:
                    self._nodes.move_to_end(nid)
                    out[nid] = node
        for consistent in (False, True):
            if not missing:
                break
            got = self.table.get_many([node_key(n) for n in missing], consistent=consistent)
            for (pk, _), item in got.items():
                nid = pk[len(NODE_PREFIX):]
                out[nid] = node = unpack(bytes(item["b"]["B"]))
                with self._lock:
                    self._nodes[nid] = node
            missing = [n for n in missing if n not in out]
        with self._lock:
            while len(self._nodes) > CACHED_NODES:
                self._nodes.popitem(last=False)
        if missing:
            raise Gone(missing[0])
        return out

    def _read(self, fn: Callable[[RankHead], Any]) -> tuple[Any, RankHead, float] | None:
        """``fn`` on the current head, again on a fresh head when a node of its version is gone."""
        got = self.current()
        for _ in range(ATTEMPTS):
            if got is None:
                return None
            head, read_at = got
            try:
                return fn(head), head, read_at
            except Gone:
                got = self.current(fresh=True)
        raise SinkError(f"the ranks were replaced {ATTEMPTS} times while being read; retry")

    def ranks_for(self, user_id: str) -> list[dict[str, Any]] | None:
        """The user's rank, score, board size and percentile on every board they have a score on at the last
        refresh, by scope and window; None when no ranks were ever written."""
        def ranks(head: RankHead) -> list[dict[str, Any]]:
            scopes = view_find_many(self._load, head.users, head.delta_users, [(user_id,)]).get((user_id,)) or []
            mine = sorted(boards_of(scopes).items())
            trees = [head.board(board) for board, _ in mine]
            # per board, the entries that scored more and those that scored as much or more, in the base and
            # the delta: every descent at once
            counts = view_count_before_many(self._load, [(base, delta, (-score + d, ""))
                                                         for (base, delta), (_, score) in zip(trees, mine, strict=True)
                                                         for d in (0, 1)])
            out = []
            for i, ((scope, window), score) in enumerate(mine):
                of = head.size((scope, window))
                above, at_least = counts[2 * i], counts[2 * i + 1]
                if of == 0 or at_least <= above:  # not in that version's board: cannot happen within one version
                    continue
                out.append({"scope": scope, "window": window, "rank": above + 1, "score": score, "of": of,
                            "percentile": (of - at_least) / of})
            return out

        with self.table.operation("ranks.user"):
            got = self._read(ranks)
        return None if got is None else got[0]

    def around(self, scope: str, window: str, user_id: str, limit: int) -> Board | None:
        """The ``limit`` entries of a board centred on the user (clipped at the first and the last place), with
        their ranks; None when no ranks were ever written; NotFound when the user is not on that board."""
        def window_of(head: RankHead) -> tuple[BoardEntry, ...]:
            base, delta = head.board((scope, window))
            if scope != "overall" and not any(head.size((scope, w)) for w in WINDOWS):
                raise NotFound(f"no leaderboard for scope {scope!r} (no scores in that category at the last refresh)")
            found = view_find_many(self._load, head.users, head.delta_users, [(user_id,)]).get((user_id,))
            score = boards_of(found or []).get((scope, window))
            n = head.size((scope, window))
            if score is None or n == 0:
                raise NotFound(f"{user_id!r} is not on the {scope} board of window {window} (no score there at the "
                               "last refresh)")
            key = (-score, user_id)
            at, = view_count_before_many(self._load, [(base, delta, key)])
            start = max(0, min(at - (limit - 1) // 2, n - limit))
            # the entries by position over the view: those before the user's key (scanned back from it) and
            # those from it on, each scan merging the base's rows and the delta's by key
            rows = list(itertools.islice(view_rows_from(self._load, base, delta, key, False), at - start))[::-1]
            rows += itertools.islice(view_rows_from(self._load, base, delta, key), limit - len(rows))
            first_score = -rows[0][0]
            rank = 1 + view_count_before_many(self._load, [(base, delta, (-first_score, ""))])[0]
            out: list[BoardEntry] = []
            for i, (neg, uid, name) in enumerate(rows):
                if i and -neg != out[-1].score:
                    rank = start + i + 1  # the first of its score here: everyone before scored more
                out.append(BoardEntry(rank, uid, name, -neg))
            return tuple(out)

        with self.table.operation("ranks.around"):
            got = self._read(window_of)
        if got is None:
            return None
        entries, head, read_at = got
        return Board(scope, window, head.as_of, head.refreshed_at, entries, age=max(0.0, self.clock() - read_at))

    # --- writes ------------------------------------------------------------------------------------------

    def write(self, users: Sequence[UserScores], *, batch: int, plan: str, rebuild: bool, base_batch: int,
              as_of: str | None, refreshed_at: str | None) -> dict[str, Any]:
        """A batch's ranks. ``rebuild``: ``users`` are every user, the trees are built from them (and the
        nodes of the version before all retired); otherwise ``users`` are those whose rows changed since
        ``base_batch``, stepped onto its trees (which the store must hold). Idempotent: a batch written
        already (``plan``) writes nothing again."""
        with self.table.operation("ranks.write", write=True):
            cur_item = self.table.get((head_pk(0), HEAD_SK), consistent=True)
            cur = read_head(cur_item) if cur_item is not None else None
            if cur is not None and cur.plan == plan:
                self._collect(cur.gc)  # a writer stopped after its head landed: finish its work
                return {"version": cur.version, "nodes": 0, "written": False}
            if not rebuild and (cur is None or cur.batch != base_batch):
                log.error("rank rows of batch %d step from batch %d, but the store holds %s: ranks not written; the "
                          "next batch builds them again from every user", batch, base_batch,
                          "no ranks" if cur is None else f"batch {cur.batch}")
                return {"version": None if cur is None else cur.version, "nodes": 0, "written": False}
            version = 1 if cur is None else cur.version + 1
            loaded: dict[str, Node] = {}
            raw: dict[str, bytes] = {}  # nodes read ahead, not decoded yet (each is decoded once, when used)

            def fetch(ids: Sequence[str], decode: bool) -> None:
                """The version before's nodes, read once each for this write: eventually consistent (a node
                never changes, so such a read finds it whole or not at all), then strongly for any not found."""
                need = [n for n in dict.fromkeys(ids) if n not in loaded and n not in raw]
                for consistent in (False, True):
                    if not need:
                        break
                    got = self.table.get_many([node_key(n) for n in need], consistent=consistent)
                    for (pk, _), item in got.items():
                        blob = bytes(item["b"]["B"])
                        if decode:
                            loaded[pk[len(NODE_PREFIX):]] = unpack(blob)
                        else:
                            raw[pk[len(NODE_PREFIX):]] = blob
                    need = [n for n in need if n not in loaded and n not in raw]
                if need:
                    raise SinkError("a node of the ranks' current version is missing; a full refresh builds them "
                                    "again")

            def load(ids: Sequence[str]) -> Mapping[str, Node]:
                for n in ids:
                    blob = raw.pop(n, None)
                    if blob is not None:
                        loaded[n] = unpack(blob)
                fetch(ids, True)
                return {n: loaded[n] for n in ids}

            folded: list[str] = []
            if rebuild:  # bases only, every delta empty
                writers, users_root, boards = self._build(users, version, load)
                trees: dict[tuple[str, str] | None, tuple[Root, Root, int]] = {
                    b: (r, EMPTY, 0) for b, r in boards.items()}
                trees[None] = (users_root, EMPTY, 0)
                if cur is not None:  # every node of the version before goes
                    for root in [cur.users, cur.delta_users, *cur.boards.values(), *cur.delta_boards.values()]:
                        writers[0].retired.update(walk_nodes(load, root))
            else:
                assert cur is not None
                def forget(nid: str) -> None:
                    loaded.pop(nid, None)

                writers, trees, folded = self._step(cur, users, version, load, forget,
                                                    lambda ids: fetch(ids, False))
            retired = sorted(set().union(*(w.retired for w in writers)))
            parts = [retired[i:i + RETIRED_PER_ITEM] for i in range(0, len(retired), RETIRED_PER_ITEM)]
            puts: list[Item] = [{"pk": {"S": node_key(n)[0]}, "sk": {"S": NODE_SK}, "b": {"B": blob}}
                    for w in writers for n, blob in w.blobs.items()]
            puts += [{"pk": {"S": retired_key(version, i)[0]}, "sk": {"S": retired_key(version, i)[1]},
                      "ids": {"B": zlib.compress("\n".join(p).encode(), 6)}} for i, p in enumerate(parts)]
            self._write_many(puts)
            head = RankHead(version, batch, plan, as_of, refreshed_at, trees[None][0],
                            {b: t[0] for b, t in trees.items() if b is not None and t[0].ref is not None}, len(parts),
                            None if cur is None else (cur.version, cur.retired), self.copies, trees[None][1],
                            {b: t[1] for b, t in trees.items() if b is not None and t[1].ref is not None},
                            {tree_name(b): t[2] for b, t in trees.items() if t[2]})
            if not self.table.put_if(head_item(head, 0), None if cur is None else str(cur.version)):
                again = self.table.get((head_pk(0), HEAD_SK), consistent=True)
                if again is not None and read_head(again).plan == plan:  # a twin writer landed the same ranks
                    return {"version": version, "nodes": 0, "written": False}
                raise SinkError("the ranks were replaced by another writer meanwhile; retry")
            for copy in range(1, self.copies):
                self.table.put(head_item(head, copy))
            stale = [(head_pk(c), HEAD_SK) for c in range(self.copies, cur.copies)] if cur is not None else []
            if stale:
                self.table.write_many([], stale)
            deleted = self._collect(head.gc)
        with self._lock:
            self._head = None
            self.writes += 1
        # the write units DynamoDB bills for them: each new item by its size, the heads (each copy), and a unit
        # for each node deleted (nodes are under 1 KB)
        units = sum(dynamodb_write_units(_node_item_size(i)) for i in puts) + \
            self.copies * dynamodb_write_units(item_size(head_item(head, 0))) + len(stale) + deleted
        return {"version": version, "nodes": len(puts) - len(parts), "retired": len(retired), "written": True,
                "write_units": units, "delta_rows": sum(head.delta_rows.values()), "folded": folded}

    def _build(self, users: Sequence[UserScores], version: int, load: Loader
               ) -> tuple[list[TreeWriter], Root, dict[tuple[str, str], Root]]:
        index, per_board = encoded_rows(users)
        writers = [TreeWriter(USERS, version, load)]
        users_root = writers[0].build(index)
        boards: dict[tuple[str, str], Root] = {}
        for board, entries in sorted(per_board.items(), key=lambda be: (be[0][0], be[0][1] != "all", be[0][1])):
            alike = shared_with(board)
            if alike in boards and per_board[alike] == entries:  # the same rows: the same tree (no writes)
                boards[board] = boards[alike]
                continue
            writers.append(TreeWriter(tree_name(board), version, load))
            boards[board] = writers[-1].build(entries)
        return writers, users_root, boards

    def _step(self, cur: RankHead, users: Sequence[UserScores], version: int, load: Loader,
              forget: Callable[[str], None], fetch_leaves: Callable[[Sequence[str]], None] | None = None,
              ) -> tuple[list[TreeWriter], dict[tuple[str, str] | None, tuple[Root, Root, int]], list[str]]:
        """The trees after the changed users' rows: their old entries (from the user index's view) removed, their
        new ones inserted, as rows of each tree's delta (the bases untouched), each delta's ops in one pass (a
        leaf read is dropped from the write's cache once used); then the deltas grown past their share of the
        base folded into it (:func:`fold_share`). Returns the writers, every tree by board (None: the user
        index) as (base, delta, delta rows), and the names of the trees folded."""
        before = view_find_many(load, cur.users, cur.delta_users, [(u.user_id,) for u in users])
        ops: dict[tuple[str, str] | None, list[tuple[Key, str, Any]]] = collections.defaultdict(list)
        for u in users:
            old_scopes = before.get((u.user_id,))  # None: not in the index (a user's entry there has scopes)
            new_scopes = u.scope_lists()
            if old_scopes is None:
                if new_scopes:
                    ops[None].append(((u.user_id,), INSERT, new_scopes))
            elif old_scopes != new_scopes:
                ops[None].append(((u.user_id,), CHANGE, new_scopes) if new_scopes else ((u.user_id,), REMOVE, None))
            old, new = boards_of(old_scopes or []), u.boards()
            for board in old.keys() | new.keys():
                o, n = old.get(board), new.get(board)
                if o != n:
                    if o is not None:
                        ops[board].append(((-o, u.user_id), REMOVE, None))
                    if n is not None:
                        ops[board].append(((-n, u.user_id), INSERT, u.user_name))
                elif n is not None and u.name_changed:  # the same place, a new name
                    ops[board].append(((-n, u.user_id), CHANGE, u.user_name))
        for tree_ops in ops.values():
            tree_ops.sort(key=lambda op: op[0])
        trees: dict[tuple[str, str] | None, tuple[Root, Root, int]] = {
            b: (*cur.board(b), cur.delta_rows.get(tree_name(b), 0))
            for b in cur.boards.keys() | cur.delta_boards.keys()}
        trees[None] = (cur.users, cur.delta_users, cur.delta_rows.get(USERS, 0))
        for b in ops:
            trees.setdefault(b, (EMPTY, EMPTY, 0))
        # a window's board sharing its scope's all-time tree (the same roots) goes on sharing it while its ops
        # are that tree's (it follows it: no writes of its own); ops of its own split it off, as a tree of its
        # own built from the shared view's rows and its ops (once: it shares again only after a rebuild)
        follows: list[tuple[str, str]] = []
        split: dict[tuple[str, str] | None, tuple[Root, Root, int]] = {}
        split_writers: list[TreeWriter] = []
        for b in sorted((b for b in trees if b is not None and b[1] != "all"), key=tree_name):
            alike = shared_with(b)
            base, delta, _ = trees[b]
            if (base.ref is None and delta.ref is None) or trees.get(alike, (EMPTY, EMPTY, 0))[:2] != (base, delta):
                continue
            del trees[b]
            if ops.get(b, []) == ops.get(alike, []):
                follows.append(b)
                ops.pop(b, None)
                continue
            whole = view_rows(load, base, delta)
            for k, kind, v in ops.pop(b, []):  # none: the all-time tree's changed, not this window's
                if kind == REMOVE:
                    del whole[k]
                else:
                    whole[k] = v
            split_writers.append(TreeWriter(tree_name(b), version, load))
            split[b] = (split_writers[-1].build([(*k, whole[k]) for k in sorted(whole)]), EMPTY, 0)
        if fetch_leaves is not None:  # every delta node the ops visit, read ahead in a few large reads
            prefetch_paths(load, fetch_leaves, [(trees[b][1], [k for k, _, _ in t]) for b, t in ops.items()])
        # each tree's ops on its delta, and its delta's rows and view's entries after them
        delta_ops: dict[tuple[str, str] | None, list[tuple[Key, Any]]] = {}
        after: dict[tuple[str, str] | None, tuple[int, int]] = {}
        for b, (base, delta, rows) in trees.items():
            found = find_many(load, delta, [k for k, _, _ in ops.get(b, [])])
            mine = [(k, delta_value(kind, found.get(k), v)) for k, kind, v in ops.get(b, [])]
            rows += sum(v is not DELETE for _, v in mine) - len(found)
            size = sum(r.ref.count for r in (base, delta) if r.ref is not None)
            size += sum((kind == INSERT) - (kind == REMOVE) for _, kind, _ in ops.get(b, []))
            delta_ops[b], after[b] = mine, (rows, size)
        # the deltas to fold: every one past 1/FOLD_FORCE of its base (or of a tree emptied: nothing left to keep a
        # delta of); and, as the trees grow together (a fold each only at its fold_share would fold them all in
        # the same refresh), a schedule: at this refresh's growth tree b reaches its share in t_b refreshes; a
        # later refresh folds `pace` trees (those that keep pace with the growth: the sum of each tree's folds
        # per refresh, growth / share, and at least FOLDS_PER_REFRESH), so this one folds the fewest, the
        # soonest due first, that leave no tree past its share: the most, over k, of the trees due by refresh k
        # less the k x pace that the refreshes before k fold
        def share(b: tuple[str, str] | None, rows: int) -> float:
            base = trees[b][0]
            return rows / max(1, base.ref.count if base.ref is not None else 0)

        names = sorted(trees, key=tree_name)
        now = {b: share(b, after[b][0]) for b in names}
        grown = {b: max(0.0, now[b] - share(b, trees[b][2])) for b in names}
        forced = [b for b in names if after[b][0] and (now[b] * FOLD_FORCE > 1 or after[b][1] == 0)]
        due = {}  # refreshes until each tree's share, its growth going on as in this refresh
        for b in names:
            left = fold_share(grown[b]) - now[b]
            if b not in forced and after[b][0] and (left <= 0 or grown[b] > 0):
                due[b] = max(0.0, left / grown[b]) if left > 0 else 0.0
        pace = max(FOLDS_PER_REFRESH, math.ceil(sum(grown[b] / fold_share(grown[b]) for b in names)))
        soonest = sorted(due, key=lambda b: (due[b], tree_name(b)))
        take = 0
        for i, b in enumerate(soonest):  # tree i is due by refresh floor(due): i + 1 due by then
            take = max(take, i + 1 - math.floor(due[b]) * pace)
        fold = set(forced + soonest[:take])
        writers = [TreeWriter(USERS, version, load, forget)]  # writes nothing: it retires the folded deltas
        out: dict[tuple[str, str] | None, tuple[Root, Root, int]] = {}
        folds: dict[tuple[str, str] | None, list[tuple[Key, Any]]] = {}
        for b in names:
            base, delta, _ = trees[b]
            if b in fold:  # the delta whole, this refresh's ops on it, as the base's ops; the delta's nodes go
                whole = {r[:-1]: r[-1] for r in rows_of(load, delta)}
                for k, v in delta_ops[b]:
                    if v is DELETE:
                        del whole[k]
                    else:
                        whole[k] = v
                folds[b] = base_ops((*k, whole[k]) for k in sorted(whole))
                writers[0].retired.update(walk_nodes(load, delta))
                continue
            if delta_ops[b]:
                writers.append(TreeWriter(tree_name(b) + "~delta", version, load, forget, net=True))
                delta = writers[-1].update(delta, delta_ops[b])
            out[b] = (base, delta, after[b][0])
        if fetch_leaves is not None:  # the folded bases' nodes the ops visit, read ahead likewise
            prefetch_paths(load, fetch_leaves, [(trees[b][0], [k for k, _ in f]) for b, f in folds.items()])
        for b, f in sorted(folds.items(), key=lambda bf: tree_name(bf[0])):
            writers.append(TreeWriter(tree_name(b), version, load, forget))
            out[b] = (writers[-1].update(trees[b][0], f), EMPTY, 0)
        out.update(split)
        for b in follows:
            out[b] = out.get(shared_with(b), (EMPTY, EMPTY, 0))
        return writers + split_writers, out, sorted(tree_name(b) for b in fold)

    def _write_many(self, puts: list[Item]) -> None:
        """BatchWriteItem calls of 25, ``workers`` at a time. The node keys are random, so a large first build
        spreads over every partition of the table (none takes more than its share of the 1,000 units/s)."""
        chunk = 25 * 40
        parts = [puts[i:i + chunk] for i in range(0, len(puts), chunk)]
        if self.workers <= 1 or len(parts) <= 1:
            for part in parts:
                self.table.write_many(part, [])
            return
        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:  # each call in the caller's context
            for future in [pool.submit(contextvars.copy_context().run, self.table.write_many, part, [])
                           for part in parts]:
                future.result()

    def _collect(self, gc: tuple[int, int] | None) -> int:
        """Delete the nodes a version replaced, and its list of them (idempotent: a list gone is done); returns
        the write units of the deletes (a unit a node, each list by its size)."""
        keys = [] if gc is None else [retired_key(gc[0], i) for i in range(gc[1])]
        if not keys:
            return 0
        lists = self.table.get_many(keys, consistent=True)
        ids = [n for item in lists.values() for n in zlib.decompress(bytes(item["ids"]["B"])).decode().split("\n") if n]
        deletes = [node_key(n) for n in ids] + list(lists)
        for i in range(0, len(deletes), 25 * 40):
            self.table.write_many([], deletes[i:i + 25 * 40])
        return len(ids) + sum(dynamodb_write_units(item_size(item)) for item in lists.values())
