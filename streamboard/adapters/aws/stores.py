"""DynamoDB behind the board store, the profile store and the app registry."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re
import time
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

from streamboard.adapters.aws.clients import Clients
from streamboard.adapters.aws.items import BOARD_PK, app_items, board_item, challenge_item, seen_item
from streamboard.errors import BadRequest, SinkError
from streamboard.keys import hash_key, new_key
from streamboard.ports import App, Board, BoardEntry, Profile

log = logging.getLogger("streamboard.dynamodb")
TOTAL = "TOTAL"  # every call asks for its ConsumedCapacity, logged per batch (_Billing)


# Events without a challenge counted per transaction: a marker each, the total and at most one update per
# category stay within DynamoDB's 100 items.
PLAIN_PER_TRANSACTION = 40


class _Billing:
    """The capacity a batch of calls consumed, as DynamoDB reports it (``ReturnConsumedCapacity``): one
    structured log line per batch. A call that failed on a condition is billed too, but its error reports no
    capacity: those are counted apart (``unreported_calls``)."""

    def __init__(self, operation: str, table: str) -> None:
        self.operation, self.table = operation, table
        self.calls, self.unreported, self.units = 0, 0, 0.0

    def add(self, response: dict[str, Any]) -> dict[str, Any]:
        consumed = response.get("ConsumedCapacity")
        self.calls += 1
        for c in consumed if isinstance(consumed, list) else [consumed] if consumed else []:
            self.units += float(c.get("CapacityUnits", 0.0))
        return response

    def failed(self) -> None:
        self.calls += 1
        self.unreported += 1

    def line(self) -> str:
        return json.dumps({"dynamodb_consumed": {"operation": self.operation, "table": self.table,
                                                 "calls": self.calls, "capacity_units": self.units,
                                                 "unreported_calls": self.unreported}}, separators=(",", ":"))


@contextlib.contextmanager
def _billing(operation: str, table: str, level: int = logging.INFO) -> Iterator[_Billing]:
    """Log what a batch of calls consumed when it ends (also when it fails half way)."""
    bill = _Billing(operation, table)
    try:
        yield bill
    finally:
        if bill.calls:
            log.log(level, bill.line())


def _cancelled_by_condition(exc: Exception, index: int) -> bool:
    reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
    return len(reasons) > index and reasons[index].get("Code") == "ConditionalCheckFailed"


class DynamoBoardStore:
    """One item per board holding its whole top-K snapshot (compressed): a PutItem replaces it atomically."""

    def __init__(self, clients: Clients, table: str) -> None:
        self.clients = clients
        self.table = table

    def replace_boards(self, boards: Sequence[Board]) -> None:
        ddb = self.clients("dynamodb")
        with _billing("boards.replace", self.table) as bill:
            for b in boards:
                bill.add(ddb.put_item(TableName=self.table, Item=board_item(b), ReturnConsumedCapacity=TOTAL))

    @staticmethod
    def _board(item: dict[str, Any], limit: int | None = None) -> Board:
        entries = json.loads(zlib.decompress(item["entries"]["B"]))
        if limit is not None:
            entries = entries[:limit]
        return Board(item["scope"]["S"], item["window"]["S"], item.get("as_of", {}).get("S"),
                     item.get("refreshed_at", {}).get("S"), tuple(BoardEntry(*e) for e in entries))

    def get_board(self, scope: str, window: str, limit: int) -> Board | None:
        with _billing("boards.get", self.table, logging.DEBUG) as bill:
            resp = bill.add(self.clients("dynamodb").get_item(
                TableName=self.table, Key={"pk": {"S": BOARD_PK}, "sk": {"S": f"{scope}#{window}"}},
                ReturnConsumedCapacity=TOTAL))
        item = resp.get("Item")
        return None if item is None else self._board(item, limit)

    def _all(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        pages = self.clients("dynamodb").get_paginator("query").paginate(
            TableName=self.table, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": BOARD_PK}},
            ConsistentRead=True, ReturnConsumedCapacity=TOTAL)
        with _billing("boards.query", self.table, logging.DEBUG) as bill:
            for page in pages:
                items.extend(bill.add(page)["Items"])
        return items

    def scopes(self) -> list[str]:
        return sorted({i["scope"]["S"] for i in self._all()})

    def ranks_for(self, user_id: str) -> list[dict[str, Any]]:
        out = []
        for item in self._all():
            board = self._board(item)
            for e in board.entries:
                if e.user_id == user_id:
                    out.append({"scope": board.scope, "window": board.window, "rank": e.rank, "score": e.score})
                    break
        return sorted(out, key=lambda r: (r["scope"], r["window"]))


class DynamoProfileStore:
    """Near-real-time totals; an event_id counts once (a conditional put in the same transaction), and a
    challenge counts only its first completion, compared as ``ts#event_id``."""

    def __init__(self, clients: Clients, table: str, max_attempts: int = 5, dedupe_days: int = 30) -> None:
        self.clients = clients
        self.table = table
        self.max_attempts = max_attempts
        # Dedupe markers expire (DynamoDB TTL on expires_at): longer than Kinesis's and SQS's retention,
        # so every redelivery still finds its marker; the lake's views dedupe exactly, for ever.
        self.dedupe_seconds = dedupe_days * 86400

    def apply(self, events: Sequence[dict[str, Any]], now: str) -> int:
        """Apply a batch, user by user: a stream record carries a whole request, so a batch can hold many
        events of one user, and those share transactions (see :meth:`_apply_user`)."""
        by_user: dict[str, list[dict[str, Any]]] = {}
        for ev in events:
            if ev.get("event_type") == "score":
                by_user.setdefault(ev["user_id"], []).append(ev)
        with _billing("profiles.apply", self.table) as bill:
            return sum(self._apply_user(evs, now, bill) for evs in by_user.values())

    def _apply_user(self, events: list[dict[str, Any]], now: str, bill: _Billing) -> int:
        """One user's events. Those without a challenge go in few transactions (a dedupe marker each, then the
        summed totals); a challenge needs a read first, so those go one by one; the name is written once."""
        plain: list[dict[str, Any]] = []
        challenged: list[dict[str, Any]] = []
        ids: set[str] = set()
        for ev in events:
            if ev["event_id"] not in ids:  # the same event twice in one batch counts once
                ids.add(ev["event_id"])
                (plain if ev.get("challenge_id") is None else challenged).append(ev)
        applied = 0
        for i in range(0, len(plain), PLAIN_PER_TRANSACTION):
            applied += self._apply_plain(plain[i:i + PLAIN_PER_TRANSACTION], now, bill)
        for ev in challenged:
            for _ in range(self.max_attempts):
                outcome = self._apply_one(ev, now, bill)
                if outcome is not None:
                    applied += outcome
                    break
            else:
                raise SinkError(f"profile update of event {ev['event_id']} kept conflicting; retry the batch")
        named = [ev for ev in events if ev.get("user_name") is not None]
        if named:
            self._name(max(named, key=lambda ev: (ev["ts"], ev["event_id"])), bill)  # only the latest name wins
        return applied

    def _apply_plain(self, events: list[dict[str, Any]], now: str, bill: _Billing) -> int:
        """Count events without a challenge in one transaction; the ones delivered before drop out."""
        ddb = self.clients("dynamodb")
        user_pk = {"S": f"user#{events[0]['user_id']}"}
        pending = events
        while pending:
            expires = str(int(time.time()) + self.dedupe_seconds)
            items: list[dict[str, Any]] = [
                {"Put": {"TableName": self.table, "Item": seen_item(ev["event_id"], expires),
                         "ConditionExpression": "attribute_not_exists(pk)"}} for ev in pending]
            deltas: dict[str, int] = {}
            for ev in pending:
                deltas[ev["category"]] = deltas.get(ev["category"], 0) + int(ev["points"])
            items.extend(self._total_updates(user_pk, deltas, now))
            try:
                bill.add(ddb.transact_write_items(TransactItems=items, ReturnConsumedCapacity=TOTAL))
                return len(pending)
            except ddb.exceptions.TransactionCanceledException as exc:
                bill.failed()
                seen_before = {i for i in range(len(pending)) if _cancelled_by_condition(exc, i)}
                if not seen_before:
                    raise
                pending = [ev for i, ev in enumerate(pending) if i not in seen_before]
        return 0

    def _total_updates(self, user_pk: dict[str, str], deltas: dict[str, int], now: str) -> list[dict[str, Any]]:
        """Add ``deltas`` (points by category) to the user's total and category items."""
        items: list[dict[str, Any]] = [{"Update": {
            "TableName": self.table, "Key": {"pk": user_pk, "sk": {"S": "profile"}},
            "UpdateExpression": "ADD #total :d SET #updated = :now",
            "ExpressionAttributeNames": {"#total": "total", "#updated": "updated_at"},
            "ExpressionAttributeValues": {":d": {"N": str(sum(deltas.values()))}, ":now": {"S": now}}}}]
        for cat, d in deltas.items():
            items.append({"Update": {
                "TableName": self.table, "Key": {"pk": user_pk, "sk": {"S": f"cat#{cat}"}},
                "UpdateExpression": "ADD #points :d", "ExpressionAttributeNames": {"#points": "points"},
                "ExpressionAttributeValues": {":d": {"N": str(d)}}}})
        return items

    def _apply_one(self, ev: dict[str, Any], now: str, bill: _Billing) -> int | None:
        """1 if counted, 0 if a duplicate or a later completion; None to retry after a race."""
        ddb = self.clients("dynamodb")
        user_pk = {"S": f"user#{ev['user_id']}"}
        points, category = int(ev["points"]), ev["category"]
        expires = str(int(time.time()) + self.dedupe_seconds)
        seen = {"Put": {"TableName": self.table, "Item": seen_item(ev["event_id"], expires),
                        "ConditionExpression": "attribute_not_exists(pk)"}}
        items: list[dict[str, Any]] = [seen]
        deltas = {category: points}
        challenge = ev.get("challenge_id")
        if challenge is not None:
            key = f"{ev['ts']}#{ev['event_id']}"
            prev = bill.add(ddb.get_item(TableName=self.table, ConsistentRead=True, ReturnConsumedCapacity=TOTAL,
                                         Key={"pk": user_pk, "sk": {"S": f"challenge#{challenge}"}})).get("Item")
            if prev is not None and prev["key"]["S"] <= key:
                deltas = {}  # a later completion: only remember the event_id
            else:
                cond = "attribute_not_exists(pk)" if prev is None else "#k = :old"
                put: dict[str, Any] = {"Put": {
                    "TableName": self.table,
                    "Item": challenge_item(ev["user_id"], challenge, key, category, points),
                    "ConditionExpression": cond}}
                if prev is not None:
                    put["Put"]["ExpressionAttributeNames"] = {"#k": "key"}
                    put["Put"]["ExpressionAttributeValues"] = {":old": prev["key"]}
                    prev_points = int(prev["points"]["N"])
                    deltas[prev["category"]["S"]] = deltas.get(prev["category"]["S"], 0) - prev_points
                items.append(put)
        if deltas:
            items.extend(self._total_updates(user_pk, deltas, now))
        try:
            bill.add(ddb.transact_write_items(TransactItems=items, ReturnConsumedCapacity=TOTAL))
        except ddb.exceptions.TransactionCanceledException as exc:
            bill.failed()
            if _cancelled_by_condition(exc, 0):
                return 0  # delivered before
            if len(items) > 1 and _cancelled_by_condition(exc, 1):
                return None  # another completion of the challenge won a race: read again
            raise
        return 1 if deltas else 0

    def _name(self, ev: dict[str, Any], bill: _Billing) -> None:
        if ev.get("user_name") is None:
            return
        ddb = self.clients("dynamodb")
        try:
            bill.add(ddb.update_item(
                TableName=self.table,
                Key={"pk": {"S": f"user#{ev['user_id']}"}, "sk": {"S": "profile"}},
                UpdateExpression="SET #uname = :n, #nkey = :k ADD #total :zero",
                ConditionExpression="attribute_not_exists(#nkey) OR #nkey < :k",
                ExpressionAttributeNames={"#uname": "user_name", "#nkey": "name_key", "#total": "total"},
                ExpressionAttributeValues={":n": {"S": ev["user_name"]}, ":k": {"S": f"{ev['ts']}#{ev['event_id']}"},
                                           ":zero": {"N": "0"}},
                ReturnConsumedCapacity=TOTAL,
            ))
        except ddb.exceptions.ConditionalCheckFailedException:  # a later name is there already
            bill.failed()

    def get(self, user_id: str) -> Profile | None:
        with _billing("profiles.get", self.table, logging.DEBUG) as bill:
            resp = bill.add(self.clients("dynamodb").query(
                TableName=self.table, KeyConditionExpression="pk = :pk", ConsistentRead=True,
                ExpressionAttributeValues={":pk": {"S": f"user#{user_id}"}}, ReturnConsumedCapacity=TOTAL))
        profile: Profile | None = None
        cats: dict[str, int] = {}
        for item in resp["Items"]:
            sk = item["sk"]["S"]
            if sk == "profile":
                profile = Profile(user_id, int(item.get("total", {"N": "0"})["N"]), {},
                                  item.get("updated_at", {}).get("S"), item.get("user_name", {}).get("S"))
            elif sk.startswith("cat#") and int(item["points"]["N"]) != 0:
                cats[sk[4:]] = int(item["points"]["N"])
        if profile is None:
            return None
        profile.categories = dict(sorted(cats.items()))
        return profile


_APP_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class DynamoAppRegistry:
    """Two items per app: ``key#<sha256>`` for authentication and ``app#<id>`` for uniqueness."""

    def __init__(self, clients: Clients, table: str) -> None:
        self.clients = clients
        self.table = table

    def create(self, name: str, role: str = "app", key: str | None = None) -> tuple[App, str]:
        if not _APP_ID.match(name):
            raise BadRequest(f"app name {name!r} must match [a-z0-9][a-z0-9_-]{{0,63}}")
        if role not in ("app", "admin"):
            raise BadRequest(f"role must be 'app' or 'admin', not {role!r}")
        ddb = self.clients("dynamodb")
        provision = key is not None
        key = key or new_key()
        digest = hash_key(key)
        with _billing("apps.create", self.table) as bill:
            existing = bill.add(ddb.get_item(TableName=self.table, ConsistentRead=True, ReturnConsumedCapacity=TOTAL,
                                             Key={"pk": {"S": f"app#{name}"}, "sk": {"S": "app"}})).get("Item")
            if existing is not None and not provision:
                raise BadRequest(f"an app named {name!r} exists already")
            now = dt.datetime.now(dt.UTC).isoformat()
            items: list[dict[str, Any]] = [{"Put": {"TableName": self.table, "Item": item}}
                                           for item in app_items(name, role, digest, now)]
            if existing is not None and existing["key_hash"]["S"] != digest:
                items.append({"Delete": {"TableName": self.table, "Key": {
                    "pk": {"S": f"key#{existing['key_hash']['S']}"}, "sk": {"S": "key"}}}})
            bill.add(ddb.transact_write_items(TransactItems=items, ReturnConsumedCapacity=TOTAL))
        return App(name, name, role), key

    def authenticate(self, key: str) -> App | None:
        with _billing("apps.authenticate", self.table, logging.DEBUG) as bill:
            item = bill.add(self.clients("dynamodb").get_item(
                TableName=self.table, Key={"pk": {"S": f"key#{hash_key(key)}"}, "sk": {"S": "key"}},
                ReturnConsumedCapacity=TOTAL)).get("Item")
        return None if item is None else App(item["app_id"]["S"], item["name"]["S"], item["role"]["S"])

    def list(self) -> list[App]:
        apps: list[App] = []
        pages = self.clients("dynamodb").get_paginator("scan").paginate(TableName=self.table,
                                                                          ReturnConsumedCapacity=TOTAL)
        with _billing("apps.list", self.table, logging.DEBUG) as bill:
            for page in pages:
                for item in bill.add(page)["Items"]:
                    if item["pk"]["S"].startswith("app#"):
                        apps.append(App(item["pk"]["S"][4:], item["name"]["S"], item["role"]["S"]))
        return sorted(apps, key=lambda a: a.app_id)
