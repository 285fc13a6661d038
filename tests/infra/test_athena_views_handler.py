"""The custom resource that creates the Athena views: order, DDL, drops, and an answer to CloudFormation always."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streamboard.sql import load_views
from streamboard_infra.handlers import athena_views


class FakeAthena:
    def __init__(self, fail_on: str | None = None) -> None:
        self.statements: list[tuple[str, str, str]] = []
        self.fail_on = fail_on

    def start_query_execution(self, QueryString: str, QueryExecutionContext: dict[str, str],  # noqa: N803
                              WorkGroup: str) -> dict[str, str]:  # noqa: N803
        self.statements.append((QueryString, QueryExecutionContext["Database"], WorkGroup))
        return {"QueryExecutionId": str(len(self.statements))}

    def get_query_execution(self, QueryExecutionId: str) -> dict[str, Any]:  # noqa: N803
        sql = self.statements[int(QueryExecutionId) - 1][0]
        if self.fail_on and self.fail_on in sql:
            return {"QueryExecution": {"Status": {"State": "FAILED", "StateChangeReason": "line 1: boom"}}}
        return {"QueryExecution": {"Status": {"State": "SUCCEEDED"}}}


class Context:
    def get_remaining_time_in_millis(self) -> int:
        return 600_000


def _event(request_type: str, views: list[dict[str, str]], old: list[dict[str, str]] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "RequestType": request_type, "ResponseURL": "https://cloudformation.invalid/response",
        "StackId": "stack", "RequestId": "req", "LogicalResourceId": "Views",
        "ResourceProperties": {"Database": "streamboard", "WorkGroup": "wg", "Views": views},
    }
    if request_type != "Create":
        event["PhysicalResourceId"] = "streamboard/views"
    if old is not None:
        event["OldResourceProperties"] = {"Views": old}
    return event


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> Any:
    responses: list[dict[str, Any]] = []
    monkeypatch.setattr(athena_views, "respond",
                        lambda event, status, physical, reason="": responses.append(
                            {"Status": status, "PhysicalResourceId": physical, "Reason": reason}))
    monkeypatch.setattr(athena_views.time, "sleep", lambda s: None)

    def _run(event: dict[str, Any], athena: FakeAthena) -> dict[str, Any]:
        monkeypatch.setattr(athena_views.boto3, "client", lambda service: athena)
        athena_views.handler(event, Context())
        (response,) = responses[-1:]
        return response

    return _run


VIEWS = [{"Name": v.name, "Sql": v.sql} for v in load_views()]


def test_create_replaces_every_view_in_order_without_comments(run: Any) -> None:
    athena = FakeAthena()
    response = run(_event("Create", VIEWS), athena)
    assert response["Status"] == "SUCCESS"
    assert [s[0].split()[4] for s in athena.statements] == [f'"{v["Name"]}"' for v in VIEWS]
    assert all(s[0].startswith("CREATE OR REPLACE VIEW") and "\n--" not in s[0] for s in athena.statements)
    assert {(s[1], s[2]) for s in athena.statements} == {("streamboard", "wg")}


def test_update_drops_the_views_that_were_removed(run: Any) -> None:
    athena = FakeAthena()
    response = run(_event("Update", VIEWS[:1], old=VIEWS[:3]), athena)
    assert response == {"Status": "SUCCESS", "PhysicalResourceId": "streamboard/views", "Reason": ""}
    assert [s[0] for s in athena.statements[1:]] == [
        f'DROP VIEW IF EXISTS "{VIEWS[2]["Name"]}"', f'DROP VIEW IF EXISTS "{VIEWS[1]["Name"]}"']


def test_a_failing_view_fails_the_resource_with_athenas_reason(run: Any) -> None:
    response = run(_event("Create", VIEWS), FakeAthena(fail_on=VIEWS[1]["Name"]))
    assert response["Status"] == "FAILED"
    assert "boom" in response["Reason"] and VIEWS[1]["Name"] in response["Reason"]


def test_delete_drops_in_reverse_order_and_never_blocks_the_stack(run: Any) -> None:
    athena = FakeAthena(fail_on=VIEWS[-1]["Name"])
    response = run(_event("Delete", VIEWS), athena)
    assert response["Status"] == "SUCCESS"
    assert [s[0] for s in athena.statements] == [f'DROP VIEW IF EXISTS "{v["Name"]}"' for v in reversed(VIEWS)]


def test_respond_puts_the_cloudformation_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[Any] = []

    class Response:
        def __enter__(self) -> Response:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def read(self) -> bytes:
            return b""

    monkeypatch.setattr(athena_views.urllib.request, "urlopen", lambda req, timeout: sent.append(req) or Response())
    athena_views.respond(_event("Create", VIEWS), "SUCCESS", "streamboard/views")
    (request,) = sent
    assert request.get_method() == "PUT"
    body = json.loads(request.data)
    assert body["Status"] == "SUCCESS" and body["RequestId"] == "req" and body["LogicalResourceId"] == "Views"
