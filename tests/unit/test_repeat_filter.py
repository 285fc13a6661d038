"""Repeated errors are logged as rate-limited one-line summaries, never a traceback per request."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import pytest

from streamboard.serving import RepeatFilter, install_loop_error_handler


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, Clock]]:
    out, clock = io.StringIO(), Clock()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    handler.addFilter(RepeatFilter(every=10, clock=clock))
    logger = logging.getLogger("test.repeat")
    logger.addHandler(handler)
    logger.propagate = False
    yield logger, out, clock
    logger.removeHandler(handler)
    logger.propagate = True


def fail(n: int) -> None:
    raise ValueError(f"bad thing {n}")


def test_the_first_error_of_a_kind_passes_whole_and_repeats_are_held_back(
    captured: tuple[logging.Logger, io.StringIO, Clock]
) -> None:
    logger, out, clock = captured
    for i in range(1000):
        try:
            fail(i)
        except ValueError:
            logger.exception("request %d failed", i)
        clock.now += 0.001
    text = out.getvalue()
    assert text.count("Traceback") == 1
    assert text.count("request") == 1


def test_after_the_interval_one_line_says_how_many_were_held_back(
    captured: tuple[logging.Logger, io.StringIO, Clock]
) -> None:
    logger, out, clock = captured
    for i in range(51):
        try:
            fail(i)
        except ValueError:
            logger.exception("request %d failed", i)
    clock.now = 11
    try:
        fail(99)
    except ValueError:
        logger.exception("request %d failed", 99)
    last = out.getvalue().strip().splitlines()[-1]
    assert "request 99 failed (ValueError: bad thing 99)" in last
    assert "50 more like this" in last
    assert out.getvalue().count("Traceback") == 1


def test_different_errors_are_not_merged(captured: tuple[logging.Logger, io.StringIO, Clock]) -> None:
    logger, out, _ = captured
    logger.error("disk full")
    logger.error("queue down")
    logger.warning("disk full")
    assert out.getvalue().count("\n") == 3


def test_event_loop_errors_become_rate_limited_lines(caplog: pytest.LogCaptureFixture) -> None:
    """asyncio logs 'socket.accept() out of system resource' with a traceback each time by default."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RepeatFilter(every=10))
    logging.getLogger("asyncio").addHandler(handler)
    loop = asyncio.new_event_loop()
    try:
        install_loop_error_handler(loop)
        for _ in range(500):
            loop.call_exception_handler({"message": "socket.accept() out of system resource",
                                         "exception": OSError(24, "Too many open files")})
    finally:
        loop.close()
        logging.getLogger("asyncio").removeHandler(handler)
    assert out.getvalue().splitlines() == [
        "socket.accept() out of system resource: OSError: [Errno 24] Too many open files"]
