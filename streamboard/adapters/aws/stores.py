"""DynamoDB behind the board store, the profile store and the app registry."""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import datetime as dt
import json
import logging
import random
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from streamboard.adapters.aws.clients import Clients
from streamboard.adapters.aws.items import app_items
from streamboard.boards import PagedBoards
from streamboard.errors import BadRequest, SinkError
from streamboard.keys import hash_key, new_key
from streamboard.ports import App, Profile
from streamboard.profiles import (
    CHALLENGE_SK,
    PROFILE_SK,
    Base,
    Update,
    first_item,
    from_dynamo,
    live_updates,
    needs_write,
    pending_challenges,
    reconcile_update,
    resolve,
    to_dynamo,
)

log = logging.getLogger("streamboard.dynamodb")
TOTAL = "TOTAL"  # every call asks for its ConsumedCapacity, logged per batch (_Billing)



class _Billing:
    """The capacity a batch of calls consumed, as DynamoDB reports it (``ReturnConsumedCapacity``): one
    structured log line per batch. A call that failed on a condition is billed too, but its error reports no
    capacity: those are counted apart (``unreported_calls``)."""

    def __init__(self, operation: str, table: str) -> None:
        self.operation, self.table = operation, table
        self.calls, self.unreported, self.units = 0, 0, 0.0
        self._lock = threading.Lock()  # a reconcile's calls run in threads

    def add(self, response: dict[str, Any]) -> dict[str, Any]:
        consumed = response.get("ConsumedCapacity")
        with self._lock:
            self.calls += 1
            for c in consumed if isinstance(consumed, list) else [consumed] if consumed else []:
                self.units += float(c.get("CapacityUnits", 0.0))
        return response

    def failed(self) -> None:
        with self._lock:
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


class DynamoItems:
    """The boards table through boto3: each call asks for its consumed capacity, and the calls of one store
    operation (``operation``) are logged as one line."""

    def __init__(self, clients: Clients, table: str) -> None:
        self.clients = clients
        self.table = table
        # the operation a call belongs to: a context variable, so that calls a caller runs in worker threads
        # with its context (contextvars.copy_context) count in its line too
        self._bill: contextvars.ContextVar[_Billing | None] = contextvars.ContextVar(f"bill-{id(self)}",
                                                                                     default=None)

    @contextlib.contextmanager
    def operation(self, name: str, write: bool = False) -> Iterator[None]:
        if self._bill.get() is not None:  # inside another operation: its line counts these
            yield
            return
        with _billing(name, self.table, logging.INFO if write else logging.DEBUG) as bill:
            token = self._bill.set(bill)
            try:
                yield
            finally:
                self._bill.reset(token)

    def _add(self, response: dict[str, Any]) -> dict[str, Any]:
        bill = self._bill.get()
        return response if bill is None else bill.add(response)

    @staticmethod
    def _key(key: tuple[str, str]) -> dict[str, Any]:
        return {"pk": {"S": key[0]}, "sk": {"S": key[1]}}

    def get(self, key: tuple[str, str], *, consistent: bool) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self._add(self.clients("dynamodb").get_item(
            TableName=self.table, Key=self._key(key), ConsistentRead=consistent,
            ReturnConsumedCapacity=TOTAL)).get("Item")
        return item

    def get_many(self, keys: Sequence[tuple[str, str]], *, consistent: bool) -> dict[tuple[str, str], dict[str, Any]]:
        ddb = self.clients("dynamodb")
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for i in range(0, len(keys), 100):  # BatchGetItem takes 100 keys
            pending: dict[str, Any] = {self.table: {"Keys": [self._key(k) for k in keys[i:i + 100]],
                                                    "ConsistentRead": consistent}}
            for attempt in range(_BATCH_ATTEMPTS):
                resp = self._add(ddb.batch_get_item(RequestItems=pending, ReturnConsumedCapacity=TOTAL))
                for item in resp.get("Responses", {}).get(self.table, []):
                    found[(item["pk"]["S"], item["sk"]["S"])] = item
                pending = resp.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(_backoff(attempt))
            else:
                raise SinkError(f"DynamoDB left keys of {self.table} unread after {_BATCH_ATTEMPTS} attempts")
        return found

    def query(self, pk: str, *, consistent: bool) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        pages = self.clients("dynamodb").get_paginator("query").paginate(
            TableName=self.table, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": pk}},
            ConsistentRead=consistent, ReturnConsumedCapacity=TOTAL)
        for page in pages:
            items.extend(self._add(page)["Items"])
        return items

    def put(self, item: dict[str, Any]) -> None:
        self._add(self.clients("dynamodb").put_item(TableName=self.table, Item=item, ReturnConsumedCapacity=TOTAL))

    def put_if(self, item: dict[str, Any], version: str | None) -> bool:
        ddb = self.clients("dynamodb")
        condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(#v)"} if version is None else {
            "ConditionExpression": "#v = :v", "ExpressionAttributeValues": {":v": {"S": version}}}
        try:
            self._add(ddb.put_item(TableName=self.table, Item=item, ExpressionAttributeNames={"#v": "version"},
                                   ReturnConsumedCapacity=TOTAL, **condition))
            return True
        except ddb.exceptions.ConditionalCheckFailedException:
            bill = self._bill.get()
            if bill is not None:
                bill.failed()
            return False

    def write_many(self, puts: Sequence[dict[str, Any]], deletes: Sequence[tuple[str, str]]) -> None:
        ddb = self.clients("dynamodb")
        requests = [{"PutRequest": {"Item": i}} for i in puts] + \
                   [{"DeleteRequest": {"Key": self._key(k)}} for k in deletes]
        for i in range(0, len(requests), 25):  # BatchWriteItem takes 25 requests
            pending: dict[str, Any] = {self.table: requests[i:i + 25]}
            for attempt in range(_BATCH_ATTEMPTS):
                resp = self._add(ddb.batch_write_item(RequestItems=pending, ReturnConsumedCapacity=TOTAL))
                pending = resp.get("UnprocessedItems") or {}
                if not pending:
                    break
                time.sleep(_backoff(attempt))
            else:
                raise SinkError(f"DynamoDB left writes to {self.table} undone after {_BATCH_ATTEMPTS} attempts")


_BATCH_ATTEMPTS = 8


def _backoff(attempt: int) -> float:
    """Seconds before retrying a batch's unprocessed part (throttled): exponential, jittered, under 2 s."""
    return float(min(2.0, 0.05 * 2 ** attempt) * random.uniform(0.5, 1.0))


class DynamoBoardStore(PagedBoards):
    """The paged boards (``streamboard.boards``) in DynamoDB: a head item per board (and copy) with its top
    entries, pages of the rest under a version, the previous version kept for readers in flight."""

    def __init__(self, clients: Clients, table: str, *, copies: int = 2, cache_seconds: float = 1.0,
                 **options: Any) -> None:
        super().__init__(DynamoItems(clients, table), copies=copies, cache_seconds=cache_seconds, **options)
        self.clients = clients


class DynamoProfileStore:
    """The profile items of :mod:`streamboard.profiles`: the router's one ``UpdateItem`` per user per batch
    (no transaction, no item per event), the reconcile's ``GetItem`` and ``UpdateItem`` per user it covers
    (conditioned on the batch, so an older batch never overwrites a later one), and a read's ``GetItem``
    (plus a ``BatchGetItem`` of the challenge firsts it needs, only when live completions wait)."""

    def __init__(self, clients: Clients, table: str, workers: int = 16) -> None:
        self.clients = clients
        self.table = table
        self.workers = workers  # a reconcile's calls run this many at a time

    def _key(self, user_id: str, sk: str) -> dict[str, Any]:
        return {"pk": {"S": f"user#{user_id}"}, "sk": {"S": sk}}

    def _update(self, user_id: str, sk: str, upd: Update, bill: _Billing) -> bool:
        """One UpdateItem; False when its condition (no later batch wrote the item) failed."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}

        def ref(name: str) -> str:
            names[f"#a{len(names)}"] = name
            return f"#a{len(names) - 1}"

        def val(value: Any) -> str:
            values[f":v{len(values)}"] = to_dynamo(value)
            return f":v{len(values) - 1}"

        clauses = []
        if upd.sets:
            clauses.append("SET " + ", ".join(f"{ref(n)} = {val(v)}" for n, v in upd.sets.items()))
        if upd.adds:
            clauses.append("ADD " + ", ".join(f"{ref(n)} {val(v)}" for n, v in upd.adds.items()))
        if upd.removes:
            clauses.append("REMOVE " + ", ".join(ref(n) for n in sorted(upd.removes)))
        call: dict[str, Any] = {"TableName": self.table, "Key": self._key(user_id, sk),
                                "UpdateExpression": " ".join(clauses), "ReturnConsumedCapacity": TOTAL}
        if upd.batch is not None:
            call["ConditionExpression"] = f"attribute_not_exists({ref('rb')}) OR {ref('rb')} <= {val(upd.batch)}"
        call["ExpressionAttributeNames"] = names
        if values:
            call["ExpressionAttributeValues"] = values
        ddb = self.clients("dynamodb")
        try:
            bill.add(ddb.update_item(**call))
            return True
        except ddb.exceptions.ConditionalCheckFailedException:
            bill.failed()
            return False

    def apply(self, events: Sequence[dict[str, Any]], now: str) -> int:
        """The router's batch: one non-transactional UpdateItem per user with score events."""
        updates = live_updates(events, now)
        with _billing("profiles.apply", self.table) as bill:
            for user, upd in updates.items():
                self._update(user, PROFILE_SK, upd, bill)
        return len(updates)

    def reconcile(self, bases: Mapping[str, Base], *, batch: int, cut: int, now: str) -> int:
        """A refresh's reconcile, ``workers`` users at a time: the challenge firsts the batch changed, then the
        profile item (read first, eventually consistent, for the names of what the lake now holds)."""
        ddb = self.clients("dynamodb")

        def one(user: str, base: Base, bill: _Billing) -> None:
            for challenge, first in base.firsts.items():
                self._update(user, CHALLENGE_SK + challenge,
                             Update(sets=dict(first_item(first, batch)), batch=batch), bill)
            got = bill.add(ddb.get_item(TableName=self.table, Key=self._key(user, PROFILE_SK),
                                        ConsistentRead=False, ReturnConsumedCapacity=TOTAL)).get("Item")
            existing = None if got is None else {k: from_dynamo(v) for k, v in got.items() if k not in ("pk", "sk")}
            upd = reconcile_update(base, existing, batch=batch, cut=cut, now=now)
            if base.firsts or needs_write(user, existing, upd):
                self._update(user, PROFILE_SK, upd, bill)

        with _billing("profiles.reconcile", self.table) as bill, \
                concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            for future in [pool.submit(one, user, base, bill) for user, base in bases.items()]:
                future.result()  # the first failure fails the reconcile (the writer retries it whole)
        return len(bases)

    def get(self, user_id: str) -> Profile | None:
        ddb = self.clients("dynamodb")
        with _billing("profiles.get", self.table, logging.DEBUG) as bill:
            got = bill.add(ddb.get_item(TableName=self.table, Key=self._key(user_id, PROFILE_SK),
                                        ConsistentRead=False, ReturnConsumedCapacity=TOTAL)).get("Item")
            if got is None:
                return None
            item = {k: from_dynamo(v) for k, v in got.items() if k not in ("pk", "sk")}
            firsts: dict[str, tuple[str, str, str, int]] = {}
            keys = [self._key(user_id, CHALLENGE_SK + c) for c in sorted(pending_challenges(item))]
            for i in range(0, len(keys), 100):  # BatchGetItem takes 100 keys
                pending: dict[str, Any] = {self.table: {"Keys": keys[i:i + 100]}}
                while pending:
                    resp = bill.add(ddb.batch_get_item(RequestItems=pending, ReturnConsumedCapacity=TOTAL))
                    for found in resp.get("Responses", {}).get(self.table, []):
                        ts, event_id, category, points = from_dynamo(found["first"])
                        firsts[found["sk"]["S"][len(CHALLENGE_SK):]] = (ts, event_id, category, int(points))
                    pending = resp.get("UnprocessedKeys") or {}
        return resolve(user_id, item, firsts)


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
