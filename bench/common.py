"""What the HTTP benchmarks share: free ports, CPU pinning, a server's RSS and CPU time, running wrk and
reading its ``--latency`` output."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

# The server gets the first CPU and the load generator the second, so they never take turns on one core;
# with a single CPU nothing is pinned (and the figures say less).
CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
SERVER_CPU = CPUS[0] if len(CPUS) >= 2 else None
CLIENT_CPU = CPUS[1] if len(CPUS) >= 2 else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cpu: int | None, argv: list[str]) -> list[str]:
    """``argv`` under ``taskset -c CPU`` (which execs it: the child's PID is the program's own)."""
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None else argv


def pinning_text() -> str:
    if SERVER_CPU is None:
        return "nothing pinned (fewer than 2 CPUs)"
    return f"server pinned to CPU {SERVER_CPU}, load generator to CPU {CLIENT_CPU} (taskset)"


def rss_kb(pid: int, field: str = "VmRSS") -> int | None:
    """Resident memory from /proc (Linux only): ``VmRSS`` now, ``VmHWM`` the peak so far."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return None


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def lifespan(receive: Any, send: Any) -> None:
    """Answer uvicorn's lifespan messages until shutdown, so that a bare ASGI app starts and stops quietly."""
    while True:
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def server(argv: list[str], ready: Callable[[], bool], log_path: Path, env: dict[str, str] | None = None,
           timeout: float = 60) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server pinned to the server CPU, wait until ``ready()`` is true, and stop it on the way out
    whatever happened."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(pinned(SERVER_CPU, argv), cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{' '.join(argv)} did not come up:\n{tail}")
            time.sleep(0.1)
        yield proc
    finally:
        stop(proc)


# --- wrk --------------------------------------------------------------------------------------------------

_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_LATENCY = re.compile(r"^\s*Latency\s+[\d.]+\w+\s+[\d.]+\w+\s+([\d.]+)(us|ms|s|m|h)", re.MULTILINE)


def wrk_version() -> str:
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    lines = (done.stdout or done.stderr).splitlines()
    return lines[0].strip() if lines else "unknown"


def parse_wrk(text: str) -> dict[str, Any]:
    """The figures of ``wrk --latency`` output; raises when they are missing (say, wrk could not connect)."""
    quantiles = {f"p{q}_ms": round(float(v) * _UNITS_MS[unit], 3) for q, v, unit in _PERCENTILE.findall(text)}
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", text, re.MULTILINE)
    if not rps or not total or not {"p50_ms", "p90_ms", "p99_ms"} <= quantiles.keys():
        raise ValueError(f"unexpected wrk output:\n{text}")
    latency_max = _LATENCY.search(text)
    if latency_max:
        quantiles["max_ms"] = round(float(latency_max.group(1)) * _UNITS_MS[latency_max.group(2)], 3)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {"requests_per_s": round(float(rps.group(1)), 1), **quantiles, "requests": int(total.group(1)),
            "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
            "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0}


def run_wrk(cmd: list[str], seconds: float) -> dict[str, Any]:
    """Run one wrk command (already pinned) to completion and return its figures plus the CPU it used
    (``load_generator_cpus``: CPU seconds per wall second, from ``os.wait4``). A run with errors or non-2xx
    answers measured something else, so it raises. wrk stops by itself after ``-d``; past ``seconds`` + 30 s
    it is killed."""
    with open(os.devnull, "rb") as devnull, tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=devnull, stdout=out, stderr=subprocess.STDOUT)
        killer = threading.Timer(seconds + 30, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - started
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {text}")
    figures = parse_wrk(text)
    if figures["non_2xx"] or figures["socket_errors"]:
        raise RuntimeError(f"{' '.join(cmd)}: {figures['non_2xx']} non-2xx answers, "
                           f"{figures['socket_errors']} socket errors:\n{text}")
    figures["load_generator_cpus"] = round((usage.ru_utime + usage.ru_stime) / elapsed, 2)
    return {"command": " ".join(cmd), **figures}


def median_round(entries: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The round with the median ``key`` (the upper middle one for an even count), with every round's."""
    median = sorted(entries, key=lambda e: e[key])[len(entries) // 2]
    return {**median, f"rounds_{key}": [e[key] for e in entries]}


def exit_on_sigterm(signum: int, frame: Any) -> None:
    """A SIGTERM handler that unwinds through the finally blocks that stop the servers."""
    raise SystemExit(128 + signum)
