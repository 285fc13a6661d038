"""The refresh benchmark's figures: its memory counts every process of the refresh (a worker writing its
profiles meanwhile included), not only the largest one; when boards were served counts the start-up, not
the exit."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from bench.refresh import measured


def test_a_measured_run_reports_the_memory_of_its_process_tree(tmp_path: Path) -> None:
    hold = "b = bytearray(150 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5)"
    code = textwrap.dedent(f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; {hold}"])
        {hold}
        child.wait()
    """)
    run = measured([sys.executable, "-c", code], 60, tmp_path, "tree")
    assert run["tree_processes"] == 2
    assert 150 < run["largest_process_peak_rss_mb"] < 250  # the largest process alone (its VmHWM)
    assert run["tree_peak_rss_mb"] > 300  # both at once
    assert run["peak_rss_mb"] == run["tree_peak_rss_mb"]


def test_the_memory_of_a_measured_run_is_not_its_launchers(tmp_path: Path) -> None:
    """Linux carries ru_maxrss over fork and exec: a small child of a large process must not report the large
    process's RSS as its own (the benchmark's figure is the process's VmHWM)."""
    ballast = bytearray(400 * 2**20)
    ballast[::4096] = b"x" * len(ballast[::4096])  # this process: 400 MB more
    run = measured([sys.executable, "-c", "import time; time.sleep(0.5)"], 60, tmp_path, "small")
    del ballast
    assert run["peak_rss_mb"] < 100, run


def test_boards_served_count_the_start_up_not_the_exit() -> None:
    """When a refresh's boards were served: its process's age at the start plus when it published them; for a
    summary without the age (a checkout before it), the wall time less the refresh's own clock."""
    from bench.refresh import boards_served

    summary = {"seconds": 10.0, "boards_published_s": 2.0, "process_age_s": 0.3}
    assert boards_served({"wall_seconds": 11.0}, summary) == 2.3  # 0.7 s of the wall time was the exit
    assert boards_served({"wall_seconds": 11.0}, {"seconds": 10.0, "boards_published_s": 2.0}) == 3.0
    assert boards_served({"wall_seconds": 11.0}, {"seconds": 10.0}) is None
