"""The CLI on a data directory with no stack running: refresh in-process, then query the lake."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from streamboard.backend import build_local_backend
from streamboard.cli import main
from streamboard.registry import format_ts
from streamboard.runtime.stack import Pipeline
from streamboard.settings import Settings
from tests.conftest import stream_record


def test_offline_refresh_takes_pending_events_into_boards_and_sql(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    Pipeline(Settings(data_dir=data))  # a data directory as `up` leaves it
    backend = build_local_backend(Settings(data_dir=data))
    now = dt.datetime.now(dt.UTC)
    events = [{"event_id": f"00000000-0000-4000-8000-{i:012d}", "event_type": "score", "user_id": f"u{i % 3}",
               "ts": format_ts(now - dt.timedelta(days=i, minutes=1)), "category": "arcade", "points": 10 * (i + 1)}
              for i in range(6)]
    backend.stream.put_records([stream_record(events[:4], received_at=now), stream_record(events[4:], received_at=now)])

    assert main(["refresh", "--data-dir", str(data)]) == 0
    summary = json.loads(capsys.readouterr().out)
    # the first refresh builds the state from the whole lake; the next ones step it
    assert summary["routed"] == 2 and summary["delivered"] == 6 and summary["mode"] == "full"
    assert main(["refresh", "--data-dir", str(data)]) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == "incremental"
    assert main(["sql", "SELECT user_id, CAST(sum(points) AS bigint) AS total FROM counted_scores "
                        "GROUP BY user_id ORDER BY user_id", "--data-dir", str(data), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["user_id,total", "u0,50", "u1,70", "u2,90"]
    board = backend.boards.get_board("overall", "all", 10)
    assert board is not None and [(e.rank, e.user_id, e.score) for e in board.entries] == [
        (1, "u2", 90), (2, "u1", 70), (3, "u0", 50)]


def test_cli_errors_are_one_line_and_nonzero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "SELECT 1", "--data-dir", str(tmp_path / "nothing")]) == 1
    assert main(["refresh", "--data-dir", str(tmp_path / "nothing")]) == 1
    Pipeline(Settings(data_dir=tmp_path / "d"))
    assert main(["sql", "SELEC nonsense", "--data-dir", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("streamboard: error: ") for line in err), err


def test_an_offline_refresh_says_how_long_its_process_took_to_start(tmp_path: Path) -> None:
    """``process_age_s``: the process's age when the refresh began (what bench/refresh.py adds to
    ``boards_published_s`` for when the boards were served): within what the refresh's own clock leaves of
    the process's wall time, and not the exit after it."""
    import subprocess
    import sys
    import time

    data = tmp_path / "data"
    Pipeline(Settings(data_dir=data))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "streamboard.cli", "refresh", "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=120, check=True)
    wall = time.monotonic() - started
    summary = json.loads(done.stdout)
    assert 0.0 < summary["process_age_s"] <= wall - summary["seconds"] + 0.02  # /proc counts in 10 ms ticks
    assert summary["process_age_s"] + summary["boards_published_s"] < wall
