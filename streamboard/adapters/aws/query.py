"""Athena behind the QueryEngine port: start in a workgroup, poll, page through typed results."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable
from typing import Any

from streamboard.adapters.aws.clients import Clients
from streamboard.errors import QueryFailed
from streamboard.ports import QueryStatus, wait_for_query


def _timestamp(text: str) -> dt.datetime:
    text = text.replace(" UTC", "").strip()
    parsed = dt.datetime.fromisoformat(text.replace("T", " ").replace("Z", "+00:00"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


_CONVERT: dict[str, Callable[[str], Any]] = {
    "tinyint": int, "smallint": int, "integer": int, "int": int, "bigint": int,
    "double": float, "float": float, "real": float,
    "decimal": decimal.Decimal,
    "boolean": lambda v: v.lower() == "true",
    "date": dt.date.fromisoformat,
    "timestamp": _timestamp,
    "timestamp with time zone": _timestamp,
}


def convert(value: str | None, athena_type: str) -> Any:
    """One result cell (Athena returns text) to the Python value of its column type."""
    if value is None:
        return None
    base = athena_type.lower().split("(")[0].strip()
    fn = _CONVERT.get(base)
    return fn(value) if fn else value


class AthenaQueryEngine:
    def __init__(self, clients: Clients, workgroup: str, database: str, output_location: str | None = None) -> None:
        self.clients = clients
        self.workgroup = workgroup
        self.database = database
        self.output_location = output_location

    def start_query(self, sql: str) -> str:
        kwargs: dict[str, Any] = {
            "QueryString": sql,
            "QueryExecutionContext": {"Database": self.database},
            "WorkGroup": self.workgroup,
        }
        if self.output_location:
            kwargs["ResultConfiguration"] = {"OutputLocation": self.output_location}
        return str(self.clients("athena").start_query_execution(**kwargs)["QueryExecutionId"])

    def status(self, query_id: str) -> QueryStatus:
        ex = self.clients("athena").get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
        st = ex["Status"]
        return QueryStatus(query_id, st["State"], st.get("StateChangeReason"), ex.get("Query"))

    def results(self, query_id: str) -> list[dict[str, Any]]:
        names, rows = self.table(query_id)
        return [dict(zip(names, row, strict=True)) for row in rows]

    def table(self, query_id: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """A finished query's column names and typed rows (every page of them)."""
        status = self.status(query_id)
        if status.state != "SUCCEEDED":
            raise QueryFailed(f"query {query_id} {status.state}: {status.reason}")
        athena = self.clients("athena")
        names: list[str] = []
        rows: list[tuple[Any, ...]] = []
        kwargs: dict[str, Any] = {"QueryExecutionId": query_id, "MaxResults": 1000}
        first_page = True
        while True:
            page = athena.get_query_results(**kwargs)
            columns = page["ResultSet"].get("ResultSetMetadata", {}).get("ColumnInfo", [])
            names = [c["Name"] for c in columns] or names
            types = [c.get("Type", "varchar") for c in columns]
            data = page["ResultSet"].get("Rows", [])
            for i, row in enumerate(data):
                values = [cell.get("VarCharValue") for cell in row["Data"]]
                if first_page and i == 0 and values == names:
                    continue  # a SELECT's first row is the header
                rows.append(tuple(convert(v, t) for v, t in zip(values, types, strict=False)))
            first_page = False
            token = page.get("NextToken")
            if not token:
                return names, rows
            kwargs["NextToken"] = token

    def run(self, sql: str, poll_seconds: float = 0.5, timeout: float = 1800,
            on_wait: Callable[[QueryStatus], None] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one query to its end (an analyst's, from the CLI): its column names and rows."""
        query_id = self.start_query(sql)
        try:
            wait_for_query(self, query_id, poll_seconds=poll_seconds, timeout=timeout, on_wait=on_wait)
        except TimeoutError as exc:
            raise QueryFailed(f"Athena {exc}") from None
        except QueryFailed as exc:
            raise QueryFailed(f"Athena {exc}") from None
        return self.table(query_id)
