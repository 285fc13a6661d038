"""The DynamoDB items of the stores: written by the aws adapters, and sized by the local stores, which count
what the same calls would be billed (``streamboard.usage``). Plain dicts, no boto3.

Boards (``streamboard.boards`` reads and writes them, on either backend) are paged, so that a short read is
one small item:

- a **head** per board, ``pk=board`` (``board#<c>`` for its copy ``c`` >= 1), ``sk=<scope>#<window>``: the
  snapshot's metadata, its version, its top entries (at most :data:`HEAD_MAX_ENTRIES`, as many as keep the
  item within :data:`HEAD_BYTES`, one eventually consistent read unit's half), and the page count;
- its **pages**, ``pk=page#<scope>#<window>``, ``sk=<version>#<n>`` (n = 1, 2, ...): the entries after the
  head, as many a page as pack into about :data:`PAGE_BYTES` at the head's packing density (so a page, too,
  is read for half a unit, and written in few whole KB). A version is a new random id for each snapshot
  written (a replace with the current entries again keeps the current one: the head names the entries'
  digest), so a version's pages are written once, never changed, and never written again once deleted.

Entries are JSON rows ``[rank, user_id, user_name, score]``, zlib-compressed. Copy 0 of a head has the key of
the one item per board that held a whole snapshot before pages (``entries`` and no ``version``): a store
still reads such an item, and the first replace overwrites it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streamboard.ports import Board, BoardEntry
from streamboard.usage import DYNAMODB_READ_UNIT

BOARD_PK = "board"
PAGE_PK = "page"
Item = dict[str, Any]
Key = tuple[str, str]  # (pk, sk)

HEAD_BYTES = DYNAMODB_READ_UNIT  # a head within 4 KB: an eventually consistent GetItem of it is 0.5 units
HEAD_MAX_ENTRIES = 100  # limit <= 100 is served from the head alone (when they fit)
PAGE_BYTES = 3584  # packed entries a page aims at: with its keys, within 4 KB
# Bytes of a head kept for everything but its entries (keys, scope, window, stamps, version, counts,
# previous version, digest: about 350 for a 64-character scope), so that the split depends on the entries alone.
HEAD_RESERVE = 512
LAYOUT = 1  # part of every digest: a change of the split rule never reuses another rule's pages


def head_pk(copy: int) -> str:
    return BOARD_PK if copy == 0 else f"{BOARD_PK}#{copy}"


def board_sk(scope: str, window: str) -> str:
    return f"{scope}#{window}"


def head_key(scope: str, window: str, copy: int = 0) -> Key:
    return head_pk(copy), board_sk(scope, window)


SHARED = "h"  # a version named by its entries (the prefix, not a hex digit: no random version starts with it)


def content_version(lay: Layout) -> str:
    """The version of a snapshot's pages named by its entries and their split: boards with the same entries
    (a scope's windows while every point on them is that recent) name the same pages, written once."""
    return SHARED + lay.digest[:20]


def shared(version: str | None) -> bool:
    """Whether a version's pages are named by their entries (and may serve several boards)."""
    return version is not None and version.startswith(SHARED)


def page_key(scope: str, window: str, version: str, page: int) -> Key:
    """A page's key: a content version's under that version alone (any board naming it reads it), a random
    version's (the writer before) under its board."""
    if shared(version):
        return f"{PAGE_PK}#{version}", str(page)
    return f"{PAGE_PK}#{scope}#{window}", f"{version}#{page}"


def _rows(entries: Sequence[BoardEntry]) -> bytes:
    return json.dumps([[e.rank, e.user_id, e.user_name, e.score] for e in entries], separators=(",", ":")).encode()


def pack(entries: Sequence[BoardEntry]) -> bytes:
    return zlib.compress(_rows(entries), 9)


def unpack(blob: bytes) -> tuple[BoardEntry, ...]:
    return tuple(BoardEntry(*row) for row in json.loads(zlib.decompress(blob)))


def head_split(entries: Sequence[BoardEntry]) -> int:
    """How many of the top entries the head holds: the most, up to :data:`HEAD_MAX_ENTRIES`, whose packed
    bytes leave :data:`HEAD_RESERVE` of :data:`HEAD_BYTES` (a function of the entries alone)."""
    lo, hi = 0, min(HEAD_MAX_ENTRIES, len(entries))
    while lo < hi:  # the largest k that fits (packed sizes grow with k)
        k = (lo + hi + 1) // 2
        if len(pack(entries[:k])) + HEAD_RESERVE <= HEAD_BYTES:
            lo = k
        else:
            hi = k - 1
    return lo


def page_split(entries: Sequence[BoardEntry], top: int) -> int:
    """Entries a page holds: as many as fill :data:`PAGE_BYTES` at the packing density of the head's (a
    larger chunk packs a little denser, so pages stay under it unless later entries are much longer)."""
    sample = entries[:top] if top else entries[:1]
    if not sample:
        return HEAD_MAX_ENTRIES
    return max(1, int(PAGE_BYTES * len(sample) / len(pack(sample))))


@dataclass(frozen=True)
class Layout:
    """A snapshot's entries as items: the head's share and the pages after it."""

    digest: str  # of the entries and of how they are split
    count: int
    top: int  # entries in the head
    top_blob: bytes
    per_page: int  # entries a page
    pages: tuple[bytes, ...]  # pages 1..n, packed


def layout(entries: Sequence[BoardEntry]) -> Layout:
    top = head_split(entries)
    per_page = page_split(entries, top)
    rest = entries[top:]
    pages = tuple(pack(rest[i:i + per_page]) for i in range(0, len(rest), per_page))
    digest = hashlib.sha256(f"{LAYOUT}:{top}:{per_page}\n".encode() + _rows(entries)).hexdigest()[:32]
    return Layout(digest, len(entries), top, pack(entries[:top]), per_page, pages)


def pages_for(count: int, top: int, per_page: int, limit: int) -> range:
    """The page numbers that hold the first ``limit`` entries of a board of ``count``, ``top`` of them in its
    head and ``per_page`` in each page."""
    want = min(limit, count)
    return range(1, 1 + max(0, -(-(want - top) // per_page)))


@dataclass(frozen=True)
class Head:
    """A head item, read. ``version`` is None for the one-item layout (all entries in ``top_blob``)."""

    scope: str
    window: str
    as_of: str | None
    refreshed_at: str | None
    version: str | None
    count: int
    top: int
    top_blob: bytes
    pages: int
    per_page: int = 1
    digest: str | None = None
    previous: str | None = None  # the version before, kept for readers who read the head before the flip
    previous_pages: int = 0
    copies: int = 1


def new_version() -> str:
    return uuid.uuid4().hex[:16]


def head_item(b: Board, lay: Layout, copy: int, *, version: str, previous: str | None, previous_pages: int,
              copies: int) -> Item:
    pk, sk = head_key(b.scope, b.window, copy)
    item: Item = {
        "pk": {"S": pk}, "sk": {"S": sk}, "scope": {"S": b.scope}, "window": {"S": b.window},
        "version": {"S": version}, "digest": {"S": lay.digest}, "count": {"N": str(lay.count)},
        "top": {"N": str(lay.top)}, "entries": {"B": lay.top_blob}, "pages": {"N": str(len(lay.pages))},
        "per_page": {"N": str(lay.per_page)}, "copies": {"N": str(copies)},
    }
    if b.as_of is not None:
        item["as_of"] = {"S": b.as_of}
    if b.refreshed_at is not None:
        item["refreshed_at"] = {"S": b.refreshed_at}
    if previous is not None:
        item["previous"] = {"S": previous}
        item["previous_pages"] = {"N": str(previous_pages)}
    return item


def page_item(scope: str, window: str, version: str, page: int, blob: bytes) -> Item:
    pk, sk = page_key(scope, window, version, page)
    return {"pk": {"S": pk}, "sk": {"S": sk}, "entries": {"B": blob}}


def read_head(item: Item) -> Head:
    """A head item (or an item of the one-item layout) as a :class:`Head`."""

    def s(name: str) -> str | None:
        return item[name]["S"] if name in item else None

    def n(name: str, default: int = 0) -> int:
        return int(item[name]["N"]) if name in item else default

    blob = bytes(item["entries"]["B"])
    if "version" not in item:  # one item, every entry
        count = len(unpack(blob))
        return Head(item["scope"]["S"], item["window"]["S"], s("as_of"), s("refreshed_at"), None, count, count,
                    blob, 0)
    return Head(item["scope"]["S"], item["window"]["S"], s("as_of"), s("refreshed_at"), s("version"), n("count"),
                n("top"), blob, n("pages"), n("per_page", 1), s("digest"), s("previous"), n("previous_pages"),
                n("copies", 1))


def page_entries(item: Item) -> tuple[BoardEntry, ...]:
    return unpack(bytes(item["entries"]["B"]))


def app_items(name: str, role: str, digest: str, created_at: str) -> tuple[Item, Item]:
    """An app's two items: ``app#<id>`` for uniqueness and ``key#<sha256>`` for authentication."""
    return ({"pk": {"S": f"app#{name}"}, "sk": {"S": "app"}, "name": {"S": name}, "role": {"S": role},
             "key_hash": {"S": digest}, "created_at": {"S": created_at}},
            {"pk": {"S": f"key#{digest}"}, "sk": {"S": "key"}, "app_id": {"S": name}, "name": {"S": name},
             "role": {"S": role}})
