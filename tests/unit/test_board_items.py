"""The paged board items (streamboard/adapters/aws/items.py): what a read of the top of a board costs, whatever
the players' ids and names."""

from __future__ import annotations

import random
import string

import pytest

from streamboard.adapters.aws.items import (
    HEAD_BYTES,
    head_item,
    layout,
    new_version,
    pages_for,
    read_head,
    unpack,
)
from streamboard.ports import Board, BoardEntry
from streamboard.usage import dynamodb_read_units, item_size

LONGEST_SCOPE = "s" * 64


def _entries(id_chars: int, name_chars: int, n: int = 1000, seed: int = 1) -> tuple[BoardEntry, ...]:
    rng = random.Random(seed)

    def text(k: int) -> str:  # random letters and digits: zlib finds little to compress
        return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(k))

    return tuple(BoardEntry(i + 1, text(id_chars), text(name_chars) if name_chars else None, 10**6 - i)
                 for i in range(n))


@pytest.mark.parametrize(("id_chars", "name_chars"), [(128, 128), (36, 30), (11, 0)])
def test_the_top_ten_are_always_one_half_unit_read(id_chars: int, name_chars: int) -> None:
    entries = _entries(id_chars, name_chars)
    board = Board(LONGEST_SCOPE, "365d", "2026-03-01T12:00:00.000Z", "2026-03-01T12:00:07.123Z", entries)
    lay = layout(entries)
    # the largest head a store writes: the last of 16 copies, naming the version before
    version = new_version()
    head = head_item(board, lay, 15, version=version, previous=new_version(), previous_pages=len(lay.pages),
                     copies=16)
    assert item_size(head) <= HEAD_BYTES and dynamodb_read_units(item_size(head), consistent=False) == 0.5
    assert lay.top >= 10
    assert list(pages_for(lay.count, lay.top, lay.per_page, 10)) == []  # no page needed
    # and the head and its pages hold the board, in order
    got = read_head(head)
    assert unpack(got.top_blob) + tuple(e for blob in lay.pages for e in unpack(blob)) == entries
    assert got.version == version and got.digest == lay.digest and got.count == 1000 and got.pages == len(lay.pages)


def test_the_split_and_the_digest_depend_on_the_entries_alone() -> None:
    entries = _entries(36, 30)
    a, b = layout(entries), layout(entries)
    assert a == b  # whoever writes them, whenever: the same digest, the same pages
    other = layout(entries[:-1] + (BoardEntry(1000, entries[-1].user_id, "renamed", entries[-1].score),))
    assert other.digest != a.digest
    assert list(pages_for(a.count, a.top, a.per_page, a.top + 1)) == [1]
    assert list(pages_for(a.count, a.top, a.per_page, 10_000)) == list(range(1, len(a.pages) + 1))
    assert len(a.pages) == -(-(1000 - a.top) // a.per_page)
