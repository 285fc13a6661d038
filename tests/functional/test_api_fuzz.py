"""Schemathesis against both OpenAPI documents of a running stack on loopback: no request it can make
gets a 5xx, and every 202 accounts for each event of its body (accepted or rejected with a reason)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
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


def fuzz(openapi_url: str, check: Callable[[Any], Any]) -> dict[int, int]:
    """Run ``check(case)`` on generated cases of every operation; each response must be a non-5xx without a
    trace. Returns how many responses had each status."""
    schema = schemathesis.openapi.from_url(openapi_url)
    statuses: dict[int, int] = {}
    for operation in schema.get_all_operations():

        @FUZZ
        @hypothesis.given(case=operation.ok().as_strategy())
        def run(case: Any) -> None:
            response = check(case)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code < 500, (response.status_code, response.text)
            assert "Traceback" not in response.text

        run()
    return statuses


def test_ingest_api_never_fails_with_5xx(stack: LocalStack) -> None:
    calls = 0

    def check(case: Any) -> Any:
        nonlocal calls
        calls += 1
        if case.headers and "x-api-key" in case.headers and calls % 3:
            case.headers["x-api-key"] = "local-dev-key"  # mostly a valid key, so validation is reached
        response = case.call()
        if response.status_code == 202:
            got = response.json()
            n = _count_events(case.body)
            assert n is not None and got["accepted"] + len(got["rejected"]) == n, (case.body, got)
            assert all(r["error"] for r in got["rejected"])
        return response

    statuses = fuzz(f"{stack.ingest_url}/openapi.json", check)
    assert sum(statuses.values()) > 50
    # The fuzzing reached both sides of validation: accepted bodies and refused ones.
    assert statuses.get(202, 0) > 5 and sum(v for k, v in statuses.items() if 400 <= k < 500) > 5, statuses


def test_read_api_never_fails_with_5xx(stack: LocalStack) -> None:
    def check(case: Any) -> Any:
        response = case.call()
        if case.path == "/" and response.status_code == 200:  # the web console's page
            assert response.text.startswith("<!doctype html>")
        else:
            assert isinstance(json.loads(response.text), dict)
        return response

    statuses = fuzz(f"{stack.api_url}/openapi.json", check)
    assert sum(statuses.values()) > 50
