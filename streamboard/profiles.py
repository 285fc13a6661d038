"""Near-real-time profiles without an item per event: what the router adds, what a refresh reconciles, and how
a read combines them (shared/DESIGN.md section 5; README "Profiles"). Both profile stores (DynamoDB, and
SQLite locally) keep the same items and apply the same updates; this module is the logic between them.

One item per user (``pk = user#<id>``, ``sk = profile``):

- the **base**, written by the reconcile of each refresh from the lake's state: ``bc`` = counted points per
  category (the ``all`` board's rules, plus counted points whose ts is after the refresh's as_of), ``bn`` =
  the latest name ``[ts, event_id, name]``, ``bcut`` = the first routing slot whose live points still count,
  ``rb`` = the refresh batch that wrote it (a reconcile never overwrites a later batch's);
- **live points** by routing slot (``SLOT_SECONDS`` of the router's clock, stamped on every event as
  ``routed_at`` and stored in the lake): ``p<slot>_<category>``, added by the router, one ``UpdateItem`` per
  user per router batch, *before* the batch is delivered;
- **points the lake already holds** of those slots: ``l<slot>_<category>`` = the points of the lake's rows of
  that slot (one per routing of a delivery: event_id, received_at, routed_at), set by the reconcile. Each of
  those rows was added to ``p`` of its slot first, so ``p - l`` is what was routed and is not in the lake yet;
- **live challenge completions** ``c_<event_id>`` = ``[challenge_id, ts, category, points, slot]``: keyed by
  the event, so a redelivery changes nothing; a read resolves them against the user's first completions in the
  lake (items ``sk = ch#<challenge_id>``, written by the reconcile), so one the lake holds already counts once;
  a reconcile drops them with their routing slot, like the live points;
- ``nm`` = the latest name of the user's last router batch, ``updated_at``.

A read: points per category = ``bc`` + the sum over slots ``>= bcut`` of ``p - l`` + the challenge
completions the lake does not hold yet that beat its first ones. An event the router processed is counted
once: in ``p - l`` while the lake does not hold it, in the base once it does. A profile never counts less
than what was routed. It counts more only for a routing whose delivery failed (its record is retried, and
routed again) until that slot falls behind ``bcut``: a reconcile drops the slots older than its cut,
``LIVE_LAG`` behind its as_of, since by then every event routed in them is in the lake (Firehose buffers for
at most 15 minutes).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamboard.ports import Profile
from streamboard.registry import format_ts, parse_ts

SLOT_SECONDS = 300
# How far behind a refresh's as_of its cut lies: the longest a routed event takes to reach the lake (Firehose's
# largest buffer interval, 900 s) and a margin. Events routed in slots before the cut are in the lake.
LIVE_LAG = dt.timedelta(minutes=20)
PROFILE_SK = "profile"
CHALLENGE_SK = "ch#"

Item = dict[str, Any]  # attribute -> value: str, int, list or dict (DynamoDB's S, N, L and M)


@functools.lru_cache(maxsize=65_536)
def slotted(name: str) -> tuple[str, int, str] | None:
    """``(kind, slot, category)`` of a live slot attribute (``p<slot>_<category>``, ``l<slot>_<category>``),
    or None for any other attribute. Called for every attribute of every item a read or a reconcile sees: the
    same few names (a slot's categories) over and over, so each is parsed once (cached)."""
    return _parse_slotted(name)


def _parse_slotted(name: str) -> tuple[str, int, str] | None:
    if name[:1] not in ("p", "l"):
        return None
    digits, sep, category = name[1:].partition("_")
    if not sep or not category or not digits.isdigit():
        return None
    return name[0], int(digits), category


def slot_of(when: str | dt.datetime) -> int:
    """The routing slot of a time (an ISO timestamp, as ``routed_at``)."""
    moment = parse_ts(when) if isinstance(when, str) else when
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() // SLOT_SECONDS)


def cut_slot(as_of: dt.datetime) -> int:
    """The first slot whose live points a reconcile at ``as_of`` keeps (the older ones are in the lake)."""
    return slot_of(as_of - LIVE_LAG)


def slot_start(slot: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(slot * SLOT_SECONDS, dt.UTC).replace(tzinfo=None)


@dataclass
class Update:
    """One ``UpdateItem`` of a profile item: ``ADD`` numbers, ``SET`` values, ``REMOVE`` attributes, and, for a
    reconcile, the condition that no later batch wrote the item (``rb <= batch``)."""

    adds: dict[str, int] = field(default_factory=dict)
    sets: dict[str, Any] = field(default_factory=dict)
    removes: set[str] = field(default_factory=set)
    batch: int | None = None

    def apply(self, item: Item | None) -> Item | None:
        """The item after this update (DynamoDB's semantics), or None when the condition fails."""
        out = dict(item or {})
        if self.batch is not None and int(out.get("rb", self.batch)) > self.batch:
            return None
        for name in self.removes:
            out.pop(name, None)
        for name, value in self.sets.items():
            out[name] = value
        for name, value in self.adds.items():
            out[name] = int(out.get(name, 0)) + value
        return out


def live_updates(events: Iterable[Mapping[str, Any]], now: str) -> dict[str, Update]:
    """The router's updates for a batch of delivered events: one per user with score events. Points go to the
    slot of each event's ``routed_at`` (``now`` when it has none). Every delivery counts, as the lake has it: a
    delivery is one (event_id, received_at), so two copies of one delivery in the batch count once."""
    out: dict[str, Update] = {}
    names: dict[str, tuple[str, str, str]] = {}
    seen: set[tuple[str, Any]] = set()
    default_slot = _slot_or_now(now)
    for ev in events:
        delivery = (ev["event_id"], ev.get("received_at"))
        if ev.get("event_type") != "score" or delivery in seen:
            continue
        seen.add(delivery)
        user = ev["user_id"]
        upd = out.setdefault(user, Update())
        upd.sets["updated_at"] = now
        points, category = int(ev["points"]), ev["category"]
        slot = slot_of(ev["routed_at"]) if ev.get("routed_at") else default_slot
        if ev.get("challenge_id") is not None:
            upd.sets[f"c_{ev['event_id']}"] = [ev["challenge_id"], ev["ts"], category, points, slot]
        else:
            name = f"p{slot}_{category}"
            upd.adds[name] = upd.adds.get(name, 0) + points
        if ev.get("user_name") is not None:
            key = (ev["ts"], ev["event_id"], ev["user_name"])
            if user not in names or key[:2] > names[user][:2]:
                names[user] = key
    for user, key in names.items():
        out[user].sets["nm"] = list(key)
    return out


def _slot_or_now(now: str) -> int:
    try:
        return slot_of(now)
    except ValueError:
        return slot_of(dt.datetime.now(dt.UTC))


@dataclass
class Base:
    """What a refresh found in the lake for one user (the rows of ``athena_sql/queries/profile_reconcile*.sql``)."""

    categories: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    in_lake: dict[tuple[int, str], int] = field(default_factory=dict)  # (slot, category) -> points
    name: tuple[str, str, str] | None = None  # (ts, event_id, name)
    firsts: dict[str, tuple[str, str, str, int]] = field(default_factory=dict)  # challenge -> (ts, id, cat, pts)


def bases_from_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, Base]:
    """Group the reconcile query's rows (``kind`` says what each is) by user: a ``user`` row (its totals, slots
    and latest name) and a ``challenge`` row per first completion. A full build reads a row per player and per
    challenge first of the whole lake: this loop is kept lean. (The per-fact kinds the statement returned
    before, ``total``, ``slot`` and ``name``, are read too: a batch resumed across an upgrade.)"""
    out: dict[str, Base] = {}
    for row in rows:
        user = str(row["user_id"])
        base = out.get(user)
        if base is None:
            base = out[user] = Base()
        kind = row["kind"]
        if kind == "user":
            totals, slots, name = row["totals"], row["slots"], row["name"]
            if totals:
                categories = base.categories
                for part in totals.split(";"):
                    category, _, points = part.rpartition(":")
                    categories[category] += int(points)
            if slots:
                in_lake = base.in_lake
                for part in slots.split(";"):
                    slot, category, points = part.split(":")
                    in_lake[(int(slot), category)] = int(points)
            if name is not None:
                base.name = (_ts_text(row["ts"]), str(row["event_id"]), str(name))
        elif kind == "challenge":
            base.firsts[str(row["item_key"])] = (_ts_text(row["ts"]), str(row["event_id"]), str(row["name"]),
                                                 int(row["points"]))
        elif kind == "total":
            base.categories[str(row["item_key"])] += int(row["points"])
        elif kind == "name":
            base.name = (_ts_text(row["ts"]), str(row["event_id"]), str(row["name"]))
        elif kind == "slot":
            base.in_lake[(int(row["slot"]), str(row["item_key"]))] = int(row["points"])
        else:
            raise ValueError(f"unknown reconcile row kind {kind!r}")
    return out


def _ts_text(value: Any) -> str:
    """A timestamp as the events carry it (``2026-12-01T15:45:33.123Z``), whatever the engine returned."""
    if isinstance(value, str) and len(value) == 24 and value[10] == "T" and value[-1] == "Z":
        return value  # as the reconcile query writes it
    if isinstance(value, str):
        value = parse_ts(value) if "T" in value else dt.datetime.fromisoformat(value)
    return format_ts(value)


def reconcile_update(base: Base, existing: Item | None, *, batch: int, cut: int, now: str) -> Update:
    """The reconcile's update of one profile item: the base, the lake's points of the live slots, and the
    removal of what the lake now holds whole (the points and challenge completions of slots before the cut)."""
    upd = Update(batch=batch)
    upd.sets["bc"] = {k: v for k, v in sorted(base.categories.items()) if v != 0}
    upd.sets["bcut"] = cut
    upd.sets["rb"] = batch
    if base.name is not None:
        upd.sets["bn"] = list(base.name)
    for (slot, category), points in base.in_lake.items():
        if slot >= cut:
            upd.sets[f"l{slot}_{category}"] = points
    for name, value in (existing or {}).items():
        m = slotted(name)
        stale = (
            (m is not None and m[1] < cut)  # a slot the lake holds whole
            or (m is not None and m[0] == "l" and name not in upd.sets)  # no lake points left in it
            or (name.startswith("c_") and (len(value) < 5 or int(value[4]) < cut))  # a completion the lake holds
            or (name == "nm" and base.name is not None and _name_key(value) <= base.name[:2])  # not newer
        )
        if stale:
            upd.removes.add(name)
    if existing is None or "updated_at" not in existing:
        upd.sets["updated_at"] = now
    return upd


# A reconcile that changes nothing a read shows is skipped while the item is this small: a leftover slot
# attribute or two then costs the router's updates nothing (DynamoDB bills writes per KB of the item).
SKIP_BELOW_BYTES = 512


def needs_write(user_id: str, existing: Item | None, upd: Update, *, json_bytes: int | None = None) -> bool:
    """Whether a reconcile's update must be written: not when the profile reads the same with it or without
    it (now, and after any live update, which adds the same to both) and the item is small. A user seen once,
    whose one routing the lake now holds, costs the reconcile a read and no write. ``json_bytes``: the length
    of the existing item's JSON, when the caller has it (it bounds the item's size without sizing it)."""
    if existing is None or any(k.startswith("c_") for k in existing):
        return True  # challenge completions are resolved against the lake's firsts: always write
    if "bn" in upd.sets and upd.sets["bn"] != existing.get("bn") and upd.sets["bn"] != existing.get("nm"):
        return True  # the live name is not the lake's latest: set it (a live name is set, not added)
    if "bc" in upd.sets and not any(slotted(k) for k in existing) and not any(slotted(k) for k in upd.sets) \
            and _nonzero(existing.get("bc")) != _nonzero(upd.sets["bc"]):
        # no live points in the item or the update (and no completions, above): a read's categories are bc's
        # nonzero ones, and they change (what resolve would find, without resolving twice; the usual case
        # of a player who scored since the last refresh, whose points reached the lake before any live slot)
        return True
    after = upd.apply(existing)
    if after is None:
        return True  # a later batch wrote the item: the conditional write fails (and is billed)
    if resolve(user_id, existing, {}) != resolve(user_id, after, {}):
        return True
    if json_bytes is not None and item_bytes_at_most(user_id, PROFILE_SK, json_bytes) <= SKIP_BELOW_BYTES:
        return False
    return item_bytes(user_id, PROFILE_SK, existing) > SKIP_BELOW_BYTES


def _nonzero(points: Mapping[str, Any] | None) -> dict[str, int]:
    return {k: int(v) for k, v in (points or {}).items() if int(v) != 0}


def _name_key(value: Sequence[Any]) -> tuple[str, str]:
    return str(value[0]), str(value[1])


def resolve(user_id: str, item: Item, firsts: Mapping[str, tuple[str, str, str, int]]) -> Profile:
    """A user's profile from the profile item and the user's first challenge completions in the lake (only
    those of challenges with live completions are needed: :func:`pending_challenges`)."""
    cats: dict[str, int] = defaultdict(int)
    for category, points in (item.get("bc") or {}).items():
        cats[category] += int(points)
    cut = int(item.get("bcut", 0))
    pending: dict[str, list[tuple[str, str, str, int]]] = defaultdict(list)
    for name, value in item.items():
        m = slotted(name)
        if m is not None and m[1] >= cut:
            cats[m[2]] += int(value) if m[0] == "p" else -int(value)
        elif name.startswith("c_"):
            challenge, ts, category, points = value[:4]
            pending[str(challenge)].append((str(ts), name[2:], str(category), int(points)))
    for challenge, completions in pending.items():
        current = firsts.get(challenge)
        best = min(completions + ([current] if current else []), key=lambda c: (c[0], c[1]))
        if current is None or best[1] != current[1]:
            cats[best[2]] += best[3]
            if current is not None:
                cats[current[2]] -= current[3]
    names = [tuple(v) for v in (item.get("bn"), item.get("nm")) if v]
    latest = max(names, key=lambda v: (v[0], v[1])) if names else None
    categories = {k: v for k, v in sorted(cats.items()) if v != 0}
    return Profile(user_id, sum(categories.values()), categories, item.get("updated_at"),
                   None if latest is None else str(latest[2]))


def pending_challenges(item: Item) -> set[str]:
    """The challenges with live completions in a profile item (whose firsts a read needs)."""
    return {str(v[0]) for k, v in item.items() if k.startswith("c_")}


def to_dynamo(value: Any) -> dict[str, Any]:
    """A plain value as a DynamoDB attribute value (S, N, L, M, NULL)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, Mapping):
        return {"M": {str(k): to_dynamo(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"L": [to_dynamo(v) for v in value]}
    raise TypeError(f"no DynamoDB type for {type(value).__name__}")


def from_dynamo(value: Mapping[str, Any]) -> Any:
    """A DynamoDB attribute value as a plain value (the inverse of :func:`to_dynamo`)."""
    (kind, inner), = value.items()
    if kind == "N":
        return int(inner)
    if kind == "M":
        return {k: from_dynamo(v) for k, v in inner.items()}
    if kind == "L":
        return [from_dynamo(v) for v in inner]
    if kind == "NULL":
        return None
    return inner


def _plain_size(value: Any) -> int:
    """What :func:`streamboard.usage.attribute_size` gives for ``to_dynamo(value)``, without building it."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, int):
        digits = str(abs(value)).strip("0")
        return (len(digits) + 1) // 2 + 1
    if isinstance(value, Mapping):
        return 3 + sum(1 + len(str(k).encode()) + _plain_size(v) for k, v in value.items())
    return 3 + sum(1 + _plain_size(v) for v in value)


def item_bytes(user_id: str, sk: str, item: Item) -> int:
    """A profile store item's size by DynamoDB's rule (keys included): ``item_size(dynamo_item(...))``."""
    return (2 + len(f"user#{user_id}".encode()) + 2 + len(sk.encode())
            + sum(len(k.encode()) + _plain_size(v) for k, v in item.items()))


def item_bytes_at_most(user_id: str, sk: str, json_bytes: int) -> int:
    """A bound of :func:`item_bytes` from the length of the item's compact JSON (as msgspec writes it, UTF-8):
    DynamoDB sizes no value above twice its JSON (a one-digit number: 2 bytes for 1; a list or a map: 3 bytes
    and 1 an element, for 2 and a comma; a string: its bytes without the quotes), the attribute names inside
    the JSON already. A store that keeps items as JSON bills most writes from this, without sizing them."""
    return 2 * json_bytes + len(user_id.encode()) + len(sk.encode()) + 9


def dynamo_item(user_id: str, sk: str, item: Item) -> dict[str, Any]:
    """The whole DynamoDB item (keys included), to size it by DynamoDB's rule."""
    return {"pk": {"S": f"user#{user_id}"}, "sk": {"S": sk}, **{k: to_dynamo(v) for k, v in item.items()}}


def first_item(first: tuple[str, str, str, int], batch: int) -> Item:
    """A user's first completion of a challenge in the lake, as the reconcile writes it."""
    return {"first": list(first), "rb": batch}
