"""Synthetic traffic for demos and tests: players scoring in categories over more than a year,
with challenges completed more than once, retried (duplicate) deliveries and some invalid events."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

from streamboard.registry import format_ts

CATEGORIES = ("arcade", "puzzle", "racing", "strategy")
ADJECTIVES = ("swift", "quiet", "bold", "lucky", "clever", "brave", "sly", "calm")
ANIMALS = ("otter", "falcon", "lynx", "heron", "badger", "gecko", "mole", "orca")


def generate(count: int, *, users: int = 150, seed: int = 7, now: dt.datetime | None = None,
             invalid_every: int = 50, duplicate_every: int = 20) -> list[dict[str, Any]]:
    """``count`` events to post, in order; about 1 in ``duplicate_every`` repeats an earlier event_id and
    1 in ``invalid_every`` breaks the contract (the server must reject it)."""
    rng = random.Random(seed)
    now = now or dt.datetime.now(dt.UTC)
    names = {f"user-{i:04d}": f"{rng.choice(ADJECTIVES)}_{rng.choice(ANIMALS)}_{i}" for i in range(users)}
    user_ids = list(names)
    weights = [1 / (1 + i) ** 0.7 for i in range(users)]  # a few heavy players, a long tail
    events: list[dict[str, Any]] = []
    for n in range(count):
        if events and n % duplicate_every == duplicate_every - 1:
            events.append(dict(rng.choice(events)))
            continue
        if n % invalid_every == invalid_every - 1:
            events.append(_invalid(rng, now))
            continue
        user = rng.choices(user_ids, weights)[0]
        age = dt.timedelta(seconds=rng.uniform(0, 420 * 86400)) if rng.random() < 0.6 else \
            dt.timedelta(seconds=rng.uniform(0, 20 * 86400))
        ev: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "event_type": "score",
            "user_id": user,
            "ts": format_ts(now - age),
            "category": rng.choice(CATEGORIES),
            "points": rng.randint(1, 1000),
        }
        if rng.random() < 0.25:
            ev["challenge_id"] = f"challenge-{rng.randint(1, 12)}"
        if rng.random() < 0.5:
            ev["user_name"] = names[user] if rng.random() < 0.9 else names[user] + "_v2"
        if rng.random() < 0.1:
            ev = {"event_id": ev["event_id"], "event_type": "action", "user_id": user, "ts": ev["ts"],
                  "name": rng.choice(("login", "purchase", "share")), "properties": {"platform": "web"}}
        events.append(ev)
    return events


def _invalid(rng: random.Random, now: dt.datetime) -> dict[str, Any]:
    base = {"event_id": str(uuid.uuid4()), "event_type": "score", "user_id": "user-0001",
            "ts": format_ts(now), "category": "arcade", "points": 10}
    breakage = rng.choice(("points", "category", "ts", "future", "type", "extra"))
    if breakage == "points":
        base["points"] = 0
    elif breakage == "category":
        base["category"] = "Not A Slug!"
    elif breakage == "ts":
        base["ts"] = "yesterday"
    elif breakage == "future":
        base["ts"] = format_ts(now + dt.timedelta(days=2))
    elif breakage == "type":
        base["event_type"] = "unknown"
    else:
        base["cheat"] = True
    return base


def traffic_mix(requests: int, *, events_per_request: int, score_share: float, users: int, seed: int = 11,
                now: dt.datetime | None = None, players_per_request: int = 1) -> list[list[dict[str, Any]]]:
    """Request bodies of a given traffic shape, for measuring billable units per event (``streamboard
    capacity``'s documented defaults come from such a run): every ``1 / score_share``-th event a ``score``
    (a named player, no challenge), the rest ``action`` events with two properties; each request carries the
    events of ``players_per_request`` players drawn uniformly (in turn)."""
    rng = random.Random(seed)
    now = now or dt.datetime.now(dt.UTC)
    every = max(1, round(1 / score_share)) if score_share > 0 else 0
    out: list[list[dict[str, Any]]] = []
    for r in range(requests):
        body: list[dict[str, Any]] = []
        players = [f"user-{rng.randrange(users):07d}" for _ in range(players_per_request)]
        for e in range(events_per_request):
            n = r * events_per_request + e
            user = players[e % players_per_request]
            base = {"event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "user_id": user,
                    "ts": format_ts(now - dt.timedelta(seconds=rng.uniform(0, 3600)))}
            if every and n % every == 0:
                body.append({**base, "event_type": "score", "category": rng.choice(CATEGORIES),
                             "points": rng.randint(1, 1000), "user_name": f"player_{user[5:]}"})
            else:
                body.append({**base, "event_type": "action", "name": rng.choice(("login", "purchase", "share")),
                             "properties": {"platform": "web", "screen": rng.choice(("home", "shop", "lobby"))}})
        out.append(body)
    return out
