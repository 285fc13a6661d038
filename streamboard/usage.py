"""Billable units: what each call of the local stack would be billed on AWS, by the rule of the service its
adapter stands for, counted in ``<data-dir>/usage.db``.

The rules are pure functions (FACTS.md, "AWS billing and delivery rules"; KB = 1,024 bytes). The store is a
SQLite file in WAL mode: the ingest server, the pipeline's threads and the CLI all add to it, each addition
one ``UPDATE ... SET n = n + ?`` transaction, so concurrent writers never lose a count and a restart finds
every count again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

KB = 1024
KINESIS_PUT_UNIT = 25 * KB  # a PUT payload unit: 25 KB of a record
FIREHOSE_STEP = 5 * KB  # Firehose ingestion and format conversion are billed in 5 KB steps per record
DYNAMODB_WRITE_UNIT = 1 * KB
DYNAMODB_READ_UNIT = 4 * KB
ATHENA_MINIMUM = 10 * KB * KB  # Athena bills at least 10 MB per query

COUNTS = ("events_accepted", "score_events", "refreshes", "profile_updates", "profile_reconciles")
UNITS = ("kinesis_put_units", "firehose_records", "firehose_billed_bytes", "dynamodb_write_units",
         "dynamodb_write_units_ranks", "dynamodb_read_units", "athena_bytes_scanned",
         "athena_bytes_scanned_last_refresh", "lambda_invocations")
# dynamodb_write_units_ranks: of dynamodb_write_units, those of the rank store's writes (every player's rank,
# streamboard.ranks), so that the near-real-time path's units per event can be read with them and without
LAST_REFRESH = "athena_bytes_scanned_last_refresh"  # set by each refresh, not added to
FRACTIONAL = ("dynamodb_write_units", "dynamodb_read_units")  # an eventually consistent read is half a unit


def _steps(size: int, step: int) -> int:
    """``size`` bytes rounded up to whole ``step``s; an empty payload is still one."""
    return max(1, math.ceil(size / step))


def kinesis_put_units(record_bytes: int) -> int:
    """PUT payload units of one Kinesis record."""
    return _steps(record_bytes, KINESIS_PUT_UNIT)


def firehose_billed_bytes(record_bytes: int) -> int:
    """The bytes Firehose bills for one record: its size rounded up to 5 KB."""
    return _steps(record_bytes, FIREHOSE_STEP) * FIREHOSE_STEP


def dynamodb_write_units(item_bytes: int, *, transactional: bool = False) -> int:
    """Write units of one item write (put, update, delete, or a failed conditional write): 1 per KB, 2 in a
    transaction."""
    return _steps(item_bytes, DYNAMODB_WRITE_UNIT) * (2 if transactional else 1)


def dynamodb_read_units(read_bytes: int, *, consistent: bool = True, transactional: bool = False) -> float:
    """Read units of one read (a GetItem's item, or the items a Query or Scan read, summed): 1 per 4 KB
    strongly consistent, half that eventually consistent, twice that in a transaction. Reading nothing still
    costs the minimum."""
    units = float(_steps(read_bytes, DYNAMODB_READ_UNIT))
    return units * 2 if transactional else units if consistent else units / 2


def athena_billed_bytes(scanned: int) -> int:
    """The bytes Athena bills for one query: what it scanned, at least 10 MB."""
    return max(scanned, ATHENA_MINIMUM)


def _number_size(text: str) -> int:
    """DynamoDB: 1 byte per two significant digits, plus 1 (leading and trailing zeros trimmed)."""
    digits = text.lstrip("-+").replace(".", "").split("e")[0].split("E")[0].strip("0")
    return (len(digits) + 1) // 2 + 1


def attribute_size(value: Mapping[str, Any]) -> int:
    """The size of one DynamoDB attribute value (``{"S": ...}``, ``{"N": ...}``...), by DynamoDB's rule."""
    (kind, v), = value.items()
    if kind == "S":
        return len(str(v).encode())
    if kind == "N":
        return _number_size(str(v))
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "BS"):
        return sum(attribute_size({kind[0]: x}) for x in v)
    if kind == "NS":
        return sum(_number_size(str(x)) for x in v)
    if kind == "L":
        return 3 + sum(1 + attribute_size(x) for x in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + attribute_size(x) for k, x in v.items())
    raise ValueError(f"not a DynamoDB attribute value type: {kind!r}")


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """An item's size as DynamoDB counts it: every attribute's name (UTF-8) plus its value."""
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def transaction_write_units(items: Iterable[Mapping[str, Mapping[str, Any]]]) -> int:
    """Write units of one TransactWriteItems call over these items (also when a condition cancels it)."""
    return sum(dynamodb_write_units(item_size(i), transactional=True) for i in items)


_SCHEMA = "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, n REAL NOT NULL);"


class Usage:
    """The counters of one data directory, shared by every process that works on it."""

    def __init__(self, path: Path) -> None:
        from streamboard.adapters.local.sqlite import SqliteDB  # local only: the Lambda assets leave it out

        self.db = SqliteDB(path, _SCHEMA)

    def add(self, **counts: float) -> None:
        """Add to counters, all in one transaction (zeros are skipped)."""
        rows = [(name, n) for name, n in counts.items() if n]
        for name, _ in rows:
            if name not in COUNTS + UNITS or name == LAST_REFRESH:
                raise ValueError(f"no usage counter named {name!r}")
        if not rows:
            return
        with self.db.tx() as conn:
            for name, n in rows:
                conn.execute("INSERT OR IGNORE INTO counters VALUES (?, 0)", (name,))
                conn.execute("UPDATE counters SET n = n + ? WHERE name = ?", (n, name))

    def finish_refresh(self, athena_bytes: int, lambda_invocations: int) -> None:
        """A refresh ended: count it, its Lambda invocations, and keep what its statements scanned together."""
        with self.db.tx() as conn:
            for name, n in (("refreshes", 1), ("lambda_invocations", lambda_invocations)):
                conn.execute("INSERT OR IGNORE INTO counters VALUES (?, 0)", (name,))
                conn.execute("UPDATE counters SET n = n + ? WHERE name = ?", (n, name))
            conn.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET n = excluded.n",
                         (LAST_REFRESH, athena_bytes))

    def counters(self) -> dict[str, float]:
        return {name: n for name, n in self.db.conn().execute("SELECT name, n FROM counters")}

    def report(self) -> dict[str, Any]:
        """``streamboard usage --format json``: the counts, and the units by the AWS rule they stand for."""
        c = self.counters()

        def value(name: str) -> float | int:
            n = c.get(name, 0)
            return round(n, 1) if name in FRACTIONAL else int(n)

        return {**{name: value(name) for name in COUNTS}, "units": {name: value(name) for name in UNITS}}


def per_thousand_events(report: Mapping[str, Any]) -> dict[str, float]:
    """Each unit per 1,000 accepted events (empty before any event was accepted)."""
    events = report["events_accepted"]
    if not events:
        return {}
    return {name: n * 1000 / events for name, n in report["units"].items()}
