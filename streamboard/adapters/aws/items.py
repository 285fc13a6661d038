"""The DynamoDB items of the stores: written by the aws adapters, and sized by the local stores, which count
what the same calls would be billed (``streamboard.usage``). Plain dicts, no boto3."""

from __future__ import annotations

import json
import zlib
from typing import Any

from streamboard.ports import Board

BOARD_PK = "board"
Item = dict[str, Any]


def board_item(b: Board) -> Item:
    """One item per board holding its whole top-K snapshot (compressed)."""
    entries = [[e.rank, e.user_id, e.user_name, e.score] for e in b.entries]
    item: Item = {
        "pk": {"S": BOARD_PK},
        "sk": {"S": f"{b.scope}#{b.window}"},
        "scope": {"S": b.scope},
        "window": {"S": b.window},
        "entries": {"B": zlib.compress(json.dumps(entries, separators=(",", ":")).encode())},
    }
    if b.as_of is not None:
        item["as_of"] = {"S": b.as_of}
    if b.refreshed_at is not None:
        item["refreshed_at"] = {"S": b.refreshed_at}
    return item


def app_items(name: str, role: str, digest: str, created_at: str) -> tuple[Item, Item]:
    """An app's two items: ``app#<id>`` for uniqueness and ``key#<sha256>`` for authentication."""
    return ({"pk": {"S": f"app#{name}"}, "sk": {"S": "app"}, "name": {"S": name}, "role": {"S": role},
             "key_hash": {"S": digest}, "created_at": {"S": created_at}},
            {"pk": {"S": f"key#{digest}"}, "sk": {"S": "key"}, "app_id": {"S": name}, "name": {"S": name},
             "role": {"S": role}})
