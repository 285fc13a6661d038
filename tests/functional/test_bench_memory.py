"""The refresh benchmark's memory figure counts every process of the refresh (a worker writing its profiles
meanwhile included), not only the largest one."""

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
    assert 150 < run["largest_process_peak_rss_mb"] < 250  # wait4: the largest process alone
    assert run["tree_peak_rss_mb"] > 300  # both at once
    assert run["peak_rss_mb"] == run["tree_peak_rss_mb"]
