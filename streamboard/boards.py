"""Board snapshots as paged items (``streamboard.adapters.aws.items``), the same on both backends: the aws
board store runs this over DynamoDB, the local one over a SQLite table of the same items, billed as DynamoDB
would bill each call.

Reads. A board read gets one head (an eventually consistent GetItem of a random copy, half a unit), which
holds the top entries: ``limit <= 100`` needs nothing else (when those 100 pack into its 4 KB). A longer
read adds the pages of the head's version, from this process's cache when it has them (a version's pages
never change) or in one BatchGetItem. A head is kept :attr:`PagedBoards.cache_seconds` (default 1 s) too,
and a board served from that cache says how old it is (:attr:`Board.age`), which the read API takes off its
max-age.

Replace, per board: read the current head (copy 0, strongly consistent); write the pages under a version
named by their entries (:func:`streamboard.adapters.aws.items.content_version`), unless a head names that
version already: boards with the same entries share their pages (a scope's 30- and 365-day windows while
every point on them is that recent: the 365 days through a lake's first year), written once; put copy 0 on
the condition that it still names the version read (else another writer came in between: read again), then
the other copies. Then the pages of the version before the one replaced go, once no board's head names
them (a strongly consistent Query of the heads after every board's replace). So a reader holding either the
new head or the one it replaced finds that head's pages; a reader whose head is older than that (two
replaces in between) may find pages missing and starts again from a fresh head; a page's content is fixed
by its version, so a reader never takes pages of other entries. Pages of a random version (the code before)
are this board's own, and are deleted as before. Copies of
one head flip one after the other: for those milliseconds two reads may see two versions, as two eventually
consistent reads of one item may, but each read is of one copy and so of one version.
"""

from __future__ import annotations

import collections
import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from streamboard.adapters.aws.items import (
    BOARD_PK,
    Head,
    Item,
    Key,
    content_version,
    head_item,
    head_key,
    layout,
    page_entries,
    page_item,
    page_key,
    pages_for,
    read_head,
    shared,
    unpack,
)
from streamboard.errors import SinkError
from streamboard.ports import Board, BoardEntry

ATTEMPTS = 3  # fresh heads a read takes before it gives up (each one means a replace landed meanwhile)
CACHED_PAGES = 512  # decoded pages kept per process (about 20 MB at most; 15 boards of 1,000 take 150)


class ItemTable(Protocol):
    """The DynamoDB calls the boards make, on one table (the aws store: boto3; the local one: SQLite)."""

    def operation(self, name: str, write: bool = False) -> contextlib.AbstractContextManager[None]:
        """The calls inside make one store operation (the aws table logs their consumed capacity as one)."""
        ...

    def get(self, key: Key, *, consistent: bool) -> Item | None: ...  # GetItem
    def get_many(self, keys: Sequence[Key], *, consistent: bool) -> dict[Key, Item]: ...  # BatchGetItem
    def query(self, pk: str, *, consistent: bool) -> list[Item]: ...  # Query on the partition key
    def put(self, item: Item) -> None: ...  # PutItem

    def put_if(self, item: Item, version: str | None) -> bool:
        """PutItem if the stored item's ``version`` is ``version`` (None: no version, or no item); False if not."""
        ...

    def write_many(self, puts: Sequence[Item], deletes: Sequence[Key]) -> None: ...  # BatchWriteItem


class PagedBoards:
    """A :class:`streamboard.ports.BoardStore` over an :class:`ItemTable`, with a per-process cache.

    ``copies`` heads per board spread a hot board's reads over that many items (one item serves about 3,000
    read units a second); writer and readers should agree on it (a reader falls back to copy 0 when its
    copy is missing). ``cache_seconds`` 0 reads a head on every call."""

    def __init__(self, table: ItemTable, *, copies: int = 2, cache_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> None:
        if copies < 1:
            raise ValueError("a board needs at least one head copy")
        self.table, self.copies, self.cache_seconds = table, copies, cache_seconds
        self.clock = clock
        self.rng = rng or random.Random()
        self._lock = threading.Lock()
        self._heads: dict[tuple[str, str], tuple[Head, float]] = {}
        self.writes = 0  # the snapshots this process wrote (what it answered from memory before is stale)
        self._listing: tuple[list[Head], float] | None = None
        self._pages: collections.OrderedDict[tuple[str, str, str, int], tuple[BoardEntry, ...]] = \
            collections.OrderedDict()

    # --- writes ----------------------------------------------------------------------------------------------

    def replace_boards(self, boards: Sequence[Board]) -> None:
        with self.table.operation("boards.replace", write=True):
            stored = self._named()  # the content versions whose pages are stored: the heads name them
            unnamed: dict[str, int] = {}  # content versions a replaced head named, and their pages
            for b in boards:
                for version, pages in self._replace(b, stored).items():
                    unnamed[version] = max(pages, unnamed.get(version, 0))
            if unnamed:  # a board's pages go when no board's head names them any more (boards share pages)
                named = self._named()
                self.table.write_many([], [page_key("", "", v, n) for v, pages in sorted(unnamed.items())
                                           if v not in named for n in range(1, pages + 1)])
        with self._lock:
            for b in boards:
                self._heads.pop((b.scope, b.window), None)
            self._listing = None
            self.writes += 1

    def _named(self) -> set[str]:
        """The content versions every board's head names (as its version or the one before): one strongly
        consistent Query of the heads."""
        heads = [read_head(i) for i in self.table.query(BOARD_PK, consistent=True)]
        return {v for h in heads for v in (h.version, h.previous) if v is not None and shared(v)}

    def _replace(self, b: Board, stored: set[str]) -> dict[str, int]:
        """Pages (unless stored already: another board's of the same entries), then the heads, then the stale
        pages of a version before the content versions; returns the content versions the replaced head named
        and this one does not (with their pages), for the caller to delete once no board names them. Copy 0's
        put is conditioned on the version it replaces, so that two writers at once (the writer Lambda may run
        twice) take turns: the later one reads again and names the earlier one's version as the previous, and
        neither orphans or deletes the other's pages."""
        lay = layout(b.entries)
        version = content_version(lay)
        for _ in range(ATTEMPTS):
            current_item = self.table.get(head_key(b.scope, b.window), consistent=True)
            cur = read_head(current_item) if current_item is not None else None
            if cur is not None and cur.version == version:  # the same entries: the current pages serve
                previous, previous_pages = cur.previous, cur.previous_pages
            else:
                previous, previous_pages = (cur.version, cur.pages) if cur is not None else (None, 0)
            heads = [head_item(b, lay, c, version=version, previous=previous, previous_pages=previous_pages,
                               copies=self.copies) for c in range(self.copies)]
            if cur is not None and heads[0] == current_item and cur.copies == self.copies:
                return {}  # this very snapshot is in place (a retried writer)
            if version not in stored and lay.pages:
                self.table.write_many([page_item(b.scope, b.window, version, n, blob)
                                       for n, blob in enumerate(lay.pages, start=1)], [])
                stored.add(version)
            if not self.table.put_if(heads[0], cur.version if cur is not None else None):
                continue  # another writer's head landed since the read: read it, go again
            for head in heads[1:]:
                self.table.put(head)
            deletes: list[Key] = []
            unnamed: dict[str, int] = {}
            if cur is not None:  # what the new head no longer names, and copies no longer written
                for old, pages in ((cur.version, cur.pages), (cur.previous, cur.previous_pages)):
                    if old is None or old in (version, previous) or not pages:
                        continue
                    if shared(old):
                        unnamed[old] = pages
                    else:  # a random version's pages: this board's alone
                        deletes.extend(page_key(b.scope, b.window, old, n) for n in range(1, pages + 1))
                deletes.extend(head_key(b.scope, b.window, c) for c in range(self.copies, cur.copies))
            if deletes:
                self.table.write_many([], deletes)
            return unnamed
        raise SinkError(f"board {b.scope}/{b.window} was replaced by other writers {ATTEMPTS} times meanwhile; "
                        "retry")

    # --- reads -----------------------------------------------------------------------------------------------

    def get_board(self, scope: str, window: str, limit: int) -> Board | None:
        now = self.clock()
        with self.table.operation("boards.get"):
            for attempt in range(ATTEMPTS):
                got = self._head(scope, window, now, fresh=attempt > 0)
                if got is None:
                    return None
                head, read_at = got
                entries = self._entries(head, limit)
                if entries is not None:  # a head read for this call is 0 s old
                    return Board(head.scope, head.window, head.as_of, head.refreshed_at, entries,
                                 age=max(0.0, now - read_at))
        raise SinkError(f"board {scope}/{window} was replaced {ATTEMPTS} times while being read; retry")

    def _head(self, scope: str, window: str, now: float, *, fresh: bool) -> tuple[Head, float] | None:
        """A head and when it was read (``now`` if it is read now): cached, a random copy (copy 0 when that
        one is missing), or when ``fresh`` copy 0 read strongly consistent (the latest replace's)."""
        if not fresh and self.cache_seconds > 0:
            with self._lock:
                cached = self._heads.get((scope, window))
            if cached is not None and now - cached[1] < self.cache_seconds:
                return cached
        if fresh:
            item = self.table.get(head_key(scope, window), consistent=True)
        else:
            copy = self.rng.randrange(self.copies)
            item = self.table.get(head_key(scope, window, copy), consistent=False)
            if item is None and copy != 0:
                item = self.table.get(head_key(scope, window), consistent=False)
        if item is None:
            return None
        got = read_head(item), now
        if self.cache_seconds > 0:
            with self._lock:
                self._heads[(scope, window)] = got
        return got

    def _entries(self, head: Head, limit: int) -> tuple[BoardEntry, ...] | None:
        """The head's first ``limit`` entries, or None when a page of its version is gone (deleted by a later
        replace: the caller starts again from a fresh head)."""
        top = self._page(head, 0)
        if top is None:
            top = unpack(head.top_blob)
            self._keep(head, 0, top)
        numbers = pages_for(head.count, head.top, head.per_page, limit)
        version = head.version
        if not numbers or version is None:
            return top[:limit]
        pages = {n: self._page(head, n) for n in numbers}
        missing = [n for n, p in pages.items() if p is None]
        for consistent in (False, True):  # a page just written may not be on every replica yet
            if not missing:
                break
            keys = {page_key(head.scope, head.window, version, n): n for n in missing}
            for key, item in self.table.get_many(list(keys), consistent=consistent).items():
                pages[keys[key]] = entries = page_entries(item)
                self._keep(head, keys[key], entries)
            missing = [n for n, p in pages.items() if p is None]
        if missing:
            return None
        out = top + tuple(e for n in numbers for e in pages[n] or ())
        return out[:limit]

    def _page(self, head: Head, n: int) -> tuple[BoardEntry, ...] | None:
        if head.version is None:
            return None
        key = (head.scope, head.window, head.version, n)
        with self._lock:
            page = self._pages.get(key)
            if page is not None:
                self._pages.move_to_end(key)
            return page

    def _keep(self, head: Head, n: int, entries: tuple[BoardEntry, ...]) -> None:
        if head.version is None:
            return
        with self._lock:
            self._pages[(head.scope, head.window, head.version, n)] = entries
            while len(self._pages) > CACHED_PAGES:
                self._pages.popitem(last=False)

    def _heads_listed(self) -> list[Head]:
        """Every board's head (copy 0: it exists for every board, whatever the copy count was when it was
        written): one eventually consistent Query, cached like a head."""
        now = self.clock()
        with self._lock:
            listing = self._listing
        if listing is not None and self.cache_seconds > 0 and now - listing[1] < self.cache_seconds:
            return listing[0]
        heads = [read_head(i) for i in self.table.query(BOARD_PK, consistent=False)]
        if self.cache_seconds > 0:
            with self._lock:
                self._listing = heads, now
        return heads

    def scopes(self) -> list[str]:
        with self.table.operation("boards.scopes"):
            return sorted({h.scope for h in self._heads_listed()})

    def ranks_for(self, user_id: str) -> list[dict[str, Any]]:
        """The user's rank and score on each board, from the heads' top entries and, for a user not among
        them, the pages (cached per version: a warm process reads only the heads)."""
        out: list[dict[str, Any]] = []
        with self.table.operation("boards.ranks"):
            for head in self._heads_listed():
                found = self._find(head, user_id)
                if found is not None:
                    out.append({"scope": head.scope, "window": head.window, "rank": found.rank,
                                "score": found.score})
        return sorted(out, key=lambda r: (r["scope"], r["window"]))

    def _find(self, head: Head, user_id: str) -> BoardEntry | None:
        for _ in range(ATTEMPTS):
            top = self._entries(head, head.top)
            assert top is not None  # the head's own entries need no page
            hit = next((e for e in top if e.user_id == user_id), None)
            if hit is not None or head.count <= head.top:
                return hit
            entries = self._entries(head, head.count)
            if entries is not None:
                return next((e for e in entries if e.user_id == user_id), None)
            fresh = self._head(head.scope, head.window, self.clock(), fresh=True)
            if fresh is None:
                return None
            head = fresh[0]
            with self._lock:
                self._listing = None
        raise SinkError(f"board {head.scope}/{head.window} was replaced {ATTEMPTS} times while being read; retry")


@contextlib.contextmanager
def no_operation() -> Iterator[None]:
    """An :meth:`ItemTable.operation` for tables that bill per call."""
    yield
