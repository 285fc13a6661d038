"""The Athena adapter: query in the workgroup, typed rows, pagination, failures with their reason.

moto runs no SQL: results are queued through moto's backend, and a fake client stands in where moto cannot
go (several result pages, a failed query)."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws
from moto.athena.models import QueryResults, athena_backends

from streamboard.adapters.aws.clients import Clients
from streamboard.adapters.aws.query import AthenaQueryEngine, convert
from streamboard.errors import QueryFailed

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def athena(fake_aws_credentials: None) -> Iterator[AthenaQueryEngine]:
    with mock_aws():
        clients = Clients("us-east-1")
        clients("athena").create_work_group(
            Name="streamboard", Configuration={"ResultConfiguration": {"OutputLocation": "s3://results/"}})
        yield AthenaQueryEngine(clients, "streamboard", "streamboard")


def _cell(v: str | None) -> dict[str, str]:
    return {} if v is None else {"VarCharValue": v}


def test_results_are_typed_and_the_header_row_is_skipped(athena: AthenaQueryEngine) -> None:
    columns = [("scope", "varchar"), ("board_rank", "bigint"), ("as_of", "timestamp"), ("user_name", "varchar")]
    rows = [[c for c, _ in columns], ["overall", "1", "2026-06-01 12:00:00.000", "Ann"],
            ["overall", "2", "2026-06-01 12:00:00.000", None]]
    backend = athena_backends["123456789012"]["us-east-1"]
    backend.query_results_queue.append(QueryResults(
        rows=[{"Data": [_cell(v) for v in r]} for r in rows],
        column_info=[{"Name": n, "Type": t} for n, t in columns]))
    qid = athena.start_query("SELECT * FROM leaderboards")
    execution = athena.clients("athena").get_query_execution(QueryExecutionId=qid)["QueryExecution"]
    assert execution["WorkGroup"] == "streamboard"
    assert execution["QueryExecutionContext"]["Database"] == "streamboard"
    assert athena.status(qid).state == "SUCCEEDED"
    assert athena.results(qid) == [
        {"scope": "overall", "board_rank": 1, "as_of": dt.datetime(2026, 6, 1, 12), "user_name": "Ann"},
        {"scope": "overall", "board_rank": 2, "as_of": dt.datetime(2026, 6, 1, 12), "user_name": None},
    ]


@pytest.mark.parametrize(("value", "athena_type", "expected"), [
    ("42", "bigint", 42), ("7", "integer", 7), ("2.5", "double", 2.5), ("true", "boolean", True),
    ("1.10", "decimal(10,2)", decimal.Decimal("1.10")), ("2026-01-02", "date", dt.date(2026, 1, 2)),
    ("2026-01-02 03:04:05.678", "timestamp", dt.datetime(2026, 1, 2, 3, 4, 5, 678000)),
    ("2026-01-02 03:04:05.000 UTC", "timestamp with time zone", dt.datetime(2026, 1, 2, 3, 4, 5)),
    ("x", "varchar", "x"), (None, "bigint", None), ('{"a":1}', "json", '{"a":1}'),
])
def test_cells_convert_by_column_type(value: str | None, athena_type: str, expected: Any) -> None:
    assert convert(value, athena_type) == expected


class _PagedAthena:
    """get_query_results in pages of two rows, as Athena pages large results."""

    def __init__(self, state: str = "SUCCEEDED", reason: str | None = None, rows: int = 5) -> None:
        self.state, self.reason = state, reason
        self.rows = [["n"]] + [[str(i)] for i in range(rows)]
        self.tokens: list[str | None] = []

    def get_query_execution(self, QueryExecutionId: str) -> dict[str, Any]:  # noqa: N803
        status = {"State": self.state}
        if self.reason:
            status["StateChangeReason"] = self.reason
        return {"QueryExecution": {"Status": status}}

    def get_query_results(self, QueryExecutionId: str, MaxResults: int, NextToken: str | None = None  # noqa: N803
                          ) -> dict[str, Any]:
        self.tokens.append(NextToken)
        start = int(NextToken or 0)
        page = self.rows[start:start + 2]
        out: dict[str, Any] = {"ResultSet": {"Rows": [{"Data": [{"VarCharValue": v} for v in r]} for r in page],
                                             "ResultSetMetadata": {"ColumnInfo": [{"Name": "n", "Type": "bigint"}]}}}
        if start + 2 < len(self.rows):
            out["NextToken"] = str(start + 2)
        return out


def _engine(fake: Any) -> AthenaQueryEngine:
    clients = Clients("us-east-1")
    clients._clients["athena"] = fake
    return AthenaQueryEngine(clients, "streamboard", "streamboard")


def test_results_follow_every_page() -> None:
    fake = _PagedAthena(rows=5)
    assert _engine(fake).results("q") == [{"n": i} for i in range(5)]
    assert fake.tokens == [None, "2", "4"]


def test_a_failed_query_raises_with_athenas_reason() -> None:
    engine = _engine(_PagedAthena(state="FAILED", reason="TABLE_NOT_FOUND: line 1:15: Table 'x' does not exist"))
    assert engine.status("q").reason is not None
    with pytest.raises(QueryFailed, match="TABLE_NOT_FOUND"):
        engine.results("q")


def test_sql_with_the_aws_backend_runs_on_athena_and_prints_every_page(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fake_aws_credentials: None) -> None:
    """`streamboard sql --backend aws`: the query in the settings' workgroup and database, results in their
    output location, polled to its end, every page printed (a stubbed Athena client)."""
    import json

    import boto3
    from botocore.stub import Stubber

    from streamboard.cli import main

    client = boto3.client("athena", region_name="us-east-1")
    stub = Stubber(client)
    sql = "SELECT scope, count(*) AS n FROM leaderboards GROUP BY scope"
    stub.add_response("start_query_execution", {"QueryExecutionId": "q-1"}, {
        "QueryString": sql, "QueryExecutionContext": {"Database": "game_db"}, "WorkGroup": "analysts",
        "ResultConfiguration": {"OutputLocation": "s3://results-bucket/athena/"}})
    for state in ("RUNNING", "SUCCEEDED", "SUCCEEDED"):
        stub.add_response("get_query_execution", {"QueryExecution": {
            "QueryExecutionId": "q-1", "Query": sql, "Status": {"State": state}}}, {"QueryExecutionId": "q-1"})
    meta = {"ColumnInfo": [{"Name": "scope", "Type": "varchar"}, {"Name": "n", "Type": "bigint"}]}
    stub.add_response("get_query_results", {"NextToken": "page-2", "ResultSet": {"ResultSetMetadata": meta, "Rows": [
        {"Data": [_cell("scope"), _cell("n")]}, {"Data": [_cell("arcade"), _cell("30")]}]}},
        {"QueryExecutionId": "q-1", "MaxResults": 1000})
    stub.add_response("get_query_results", {"ResultSet": {"ResultSetMetadata": meta, "Rows": [
        {"Data": [_cell("overall"), _cell("90")]}]}}, {"QueryExecutionId": "q-1", "MaxResults": 1000,
                                                        "NextToken": "page-2"})
    stub.activate()
    monkeypatch.setattr(Clients, "__call__", lambda self, service: client)
    for var, value in {"STREAMBOARD_ATHENA_WORKGROUP": "analysts", "STREAMBOARD_GLUE_DATABASE": "game_db",
                       "STREAMBOARD_ATHENA_OUTPUT": "s3://results-bucket/athena/"}.items():
        monkeypatch.setenv(var, value)
    assert main(["sql", "--backend", "aws", sql, "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line) for line in out.splitlines()] == [{"scope": "arcade", "n": 30},
                                                              {"scope": "overall", "n": 90}]
    assert "q-1" in err and "analysts" in err  # it said what it waits for
    stub.assert_no_pending_responses()


def test_sql_with_the_aws_backend_reports_a_failed_query_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fake_aws_credentials: None) -> None:
    import boto3
    from botocore.stub import Stubber

    from streamboard.cli import main

    client = boto3.client("athena", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_response("start_query_execution", {"QueryExecutionId": "q-2"})
    stub.add_response("get_query_execution", {"QueryExecution": {"QueryExecutionId": "q-2", "Status": {
        "State": "FAILED", "StateChangeReason": "line 1:8: Column 'nope' cannot be resolved"}}})
    stub.activate()
    monkeypatch.setattr(Clients, "__call__", lambda self, service: client)
    assert main(["sql", "--backend", "aws", "SELECT nope FROM score"]) == 1
    err = capsys.readouterr().err.strip()
    assert "Column 'nope' cannot be resolved" in err and "Traceback" not in err
