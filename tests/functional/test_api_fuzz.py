"""Schemathesis against both OpenAPI documents of a running stack on loopback: no request it can make
gets a 5xx, and every 202 accounts for each event of its body (accepted or rejected with a reason)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis

from streamboard.runtime.stack import LocalStack
from streamboard.settings import Settings
from tests.conftest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

FUZZ = hypothesis.settings(max_examples=60, deadline=None, derandomize=True, database=None,
                           suppress_health_check=list(hypothesis.HealthCheck))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    data: Path = tmp_path_factory.mktemp("fuzz")
    s = LocalStack(Settings(data_dir=data, ingest_port=free_port(), api_port=free_port()))
    thread = threading.Thread(target=s.run, daemon=True)
    thread.start()
    assert s.ready.wait(30)
    yield s
    s.stop()
    thread.join(30)


def _count_events(body: Any) -> int | None:
    if isinstance(body, dict) and isinstance(body.get("events"), list):
        return len(body["events"])
    return 1 if isinstance(body, dict) else None


def test_ingest_api_never_fails_with_5xx(stack: LocalStack) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.ingest_url}/openapi.json")

    checked = 0
    statuses: dict[int, int] = {}
    for operation in schema.get_all_operations():
        op = operation.ok()

        @FUZZ
        @hypothesis.given(case=op.as_strategy())
        def check(case: Any) -> None:
            nonlocal checked
            if case.headers and "x-api-key" in case.headers and checked % 3:
                case.headers["x-api-key"] = "local-dev-key"  # mostly a valid key, so validation is reached
            response = case.call()
            checked += 1
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code < 500, (response.status_code, response.text)
            assert "Traceback" not in response.text
            if response.status_code == 202:
                got = response.json()
                n = _count_events(case.body)
                assert n is not None and got["accepted"] + len(got["rejected"]) == n, (case.body, got)
                assert all(r["error"] for r in got["rejected"])

        check()
    assert checked > 50
    # The fuzzing reached both sides of validation: accepted bodies and refused ones.
    assert statuses.get(202, 0) > 5 and sum(v for k, v in statuses.items() if 400 <= k < 500) > 5, statuses


def test_read_api_never_fails_with_5xx(stack: LocalStack) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.api_url}/openapi.json")
    checked = 0
    for operation in schema.get_all_operations():
        op = operation.ok()

        @FUZZ
        @hypothesis.given(case=op.as_strategy())
        def check(case: Any) -> None:
            nonlocal checked
            response = case.call()
            checked += 1
            assert response.status_code < 500, (response.status_code, response.text)
            body = json.loads(response.text)
            assert isinstance(body, dict)

        check()
    assert checked > 50
