"""CloudFormation custom resource ``Custom::AthenaViews``: creates the Athena views, in order, and drops them.

Properties: ``Database``, ``WorkGroup``, ``Tables`` (the refresh's state tables: ``{"Name", "Sql"}``
with complete ``CREATE TABLE IF NOT EXISTS`` statements) and ``Views`` (a list of ``{"Name", "Sql"}`` in
dependency order, the files of ``athena_sql/``). Create and Update create the tables that do not exist
(never dropping one: it holds state), then run ``CREATE OR REPLACE VIEW`` for each view and drop the
views an update removed; Delete drops the views in reverse order. Standard library
and boto3 only, so it runs on any Python Lambda runtime.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from typing import Any

import boto3

log = logging.getLogger("streamboard.athena_views")
log.setLevel(logging.INFO)

DONE = {"SUCCEEDED", "FAILED", "CANCELLED"}


def _body(sql: str) -> str:
    """The view's query without whole-line comments (the files start with a comment block)."""
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--")).strip().rstrip(";")


def _quote(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"invalid view name {name!r}")
    return f'"{name}"'


def run(athena: Any, sql: str, database: str, workgroup: str, deadline: float) -> None:
    """Run one statement to completion; raise with Athena's reason if it does not succeed."""
    query_id = athena.start_query_execution(QueryString=sql, QueryExecutionContext={"Database": database},
                                            WorkGroup=workgroup)["QueryExecutionId"]
    delay = 0.5
    while True:
        status = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]
        if status["State"] in DONE:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"query {query_id} still {status['State']}: {sql[:80]}")
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
    if status["State"] != "SUCCEEDED":
        raise RuntimeError(f"{sql.splitlines()[0][:80]}: {status['State']}: {status.get('StateChangeReason', '')}")


def apply(event: dict[str, Any], athena: Any, deadline: float) -> None:
    props = event["ResourceProperties"]
    database, workgroup, views = props["Database"], props["WorkGroup"], props["Views"]
    if event["RequestType"] == "Delete":
        for view in reversed(views):
            try:
                run(athena, f"DROP VIEW IF EXISTS {_quote(view['Name'])}", database, workgroup, deadline)
            except Exception:  # noqa: BLE001 - a failed drop must not block deleting the stack
                log.exception("could not drop view %s; leaving it", view["Name"])
        return
    for table in props.get("Tables", []):
        log.info("creating table %s unless it exists", table["Name"])
        run(athena, table["Sql"], database, workgroup, deadline)
    for view in views:
        log.info("creating view %s", view["Name"])
        run(athena, f"CREATE OR REPLACE VIEW {_quote(view['Name'])} AS\n{_body(view['Sql'])}", database, workgroup,
            deadline)
    if event["RequestType"] == "Update":
        kept = {v["Name"] for v in views}
        for view in reversed(event.get("OldResourceProperties", {}).get("Views", [])):
            if view["Name"] not in kept:
                run(athena, f"DROP VIEW IF EXISTS {_quote(view['Name'])}", database, workgroup, deadline)


def respond(event: dict[str, Any], status: str, physical_id: str, reason: str = "") -> None:
    body = json.dumps({
        "Status": status,
        "Reason": reason[:1000] or "see the function's log",
        "PhysicalResourceId": physical_id,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
    }).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT",
                                     headers={"content-type": "", "content-length": str(len(body))})
    with urllib.request.urlopen(request, timeout=30) as resp:  # the pre-signed CloudFormation URL
        resp.read()


def handler(event: dict[str, Any], context: Any) -> None:
    physical_id = event.get("PhysicalResourceId") or f"{event['ResourceProperties']['Database']}/views"
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - 30
    try:
        apply(event, boto3.client("athena"), deadline)
    except Exception as exc:  # noqa: BLE001 - CloudFormation must always get an answer
        log.exception("%s of the Athena views failed", event["RequestType"])
        respond(event, "FAILED", physical_id, str(exc))
        return
    respond(event, "SUCCESS", physical_id)
