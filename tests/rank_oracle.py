"""DESIGN section 5's ranks in plain Python: every board in order, each user's rank, board size and percentile,
and the entries around a user, from each user's scores."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from streamboard.ports import BoardEntry

BoardKey = tuple[str, str]  # (scope, window)


def boards(scores: Mapping[str, Mapping[BoardKey, int]],
           names: Mapping[str, str | None] | None = None) -> dict[BoardKey, list[BoardEntry]]:
    """Every board with entries: score descending, ties by user_id, competition ranks (1, 2, 2, 4)."""
    per: dict[BoardKey, list[tuple[int, str]]] = defaultdict(list)
    for user, mine in scores.items():
        for board, score in mine.items():
            if score != 0:
                per[board].append((score, user))
    out = {}
    for board, rows in per.items():
        rows.sort(key=lambda r: (-r[0], r[1]))
        entries, rank = [], 0
        for i, (score, user) in enumerate(rows):
            if i == 0 or score != rows[i - 1][0]:
                rank = i + 1
            entries.append(BoardEntry(rank, user, (names or {}).get(user), score))
        out[board] = entries
    return out


def ranks(ordered: Mapping[BoardKey, list[BoardEntry]]) -> dict[str, list[dict[str, Any]]]:
    """Per user, what ``GET /v1/users/{id}`` lists: one entry per board the user is on, by scope and window;
    percentile = the share of the board ranked strictly below."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (scope, window), entries in sorted(ordered.items()):
        negs = [-e.score for e in entries]
        of = len(entries)
        for e in entries:
            below = of - bisect.bisect_right(negs, -e.score)
            out[e.user_id].append({"scope": scope, "window": window, "rank": e.rank, "score": e.score, "of": of,
                                   "percentile": below / of})
    return out


def around(entries: list[BoardEntry], user: str, limit: int) -> list[BoardEntry] | None:
    """The ``limit`` entries centred on the user ((limit - 1) // 2 before when there are), clipped at the first
    and the last place; None when the user is not on the board."""
    at = next((i for i, e in enumerate(entries) if e.user_id == user), None)
    if at is None:
        return None
    start = max(0, min(at - (limit - 1) // 2, len(entries) - limit))
    return entries[start:start + limit]
