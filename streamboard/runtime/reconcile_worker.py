"""The local refresh's profiles written on worker processes, while the refresh goes on with the ranks' query
and write: the per-player writes of a batch side by side on two cores (README "Profiles and ranks side by
side").

Started with a refresh's first large part (``Settings.profile_reconcile_worker_rows``), up to ``processes``
of them, each taking one part at a time (a full build's 8 parts two at a time; an incremental batch's one
part on one). A worker is a plain ``python -c`` child: it inherits nothing of the refresh's DuckDB, and
imports nothing of the caller's main module (as ``multiprocessing``'s spawn would). It opens its own
connections to the profile store's and the usage counters' SQLite files; the local reconcile computes
without the write lock and rechecks each item under it (:meth:`LocalProfileStore.reconcile`), so two parts
compute at once and only their writes take turns.

Each part crosses a pipe as a pickle of the reconcile query's rows, and comes back as (players, seconds, peak
RSS) or as the part's error, raised in the refresh when it waits for the part. A worker dies with the
refresh (``PR_SET_PDEATHSIG`` on Linux; elsewhere at the end of its part, its input closed): a refresh killed
leaves no writer behind, and its batch, not recorded done, is reconciled again by the rerun (the reconcile's
batch condition makes that idempotent)."""

from __future__ import annotations

import concurrent.futures
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from streamboard.errors import SinkError

_HEADER = struct.Struct("<Q")
_ROOT = Path(__file__).resolve().parents[2]  # the checkout the refresh runs from: the worker imports the same code


def _send(stream: IO[bytes], obj: Any) -> None:
    _write(stream, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def _write(stream: IO[bytes], blob: bytes) -> None:
    stream.write(_HEADER.pack(len(blob)))
    stream.write(blob)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(head)
    blob = stream.read(size)
    if len(blob) < size:
        raise EOFError
    return pickle.loads(blob)


class ReconcileWorker:
    """Worker processes for one profile store (and usage counters): :meth:`submit` a part, get a future. Up to
    ``processes`` parts are written at once, each on a process of its own (started when first needed); the
    local reconcile computes without the database's write lock (:meth:`LocalProfileStore.reconcile`), so two
    parts compute side by side and only their writes take turns."""

    def __init__(self, profiles_db: Path, usage_db: Path | None, processes: int = 1) -> None:
        self.processes = max(1, processes)
        self._argv = [sys.executable, "-c", "from streamboard.runtime.reconcile_worker import main; main()",
                      str(profiles_db), "" if usage_db is None else str(usage_db), str(os.getpid())]
        self._env = {**os.environ,
                     "PYTHONPATH": os.pathsep.join([str(_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        self._procs: list[subprocess.Popen[bytes]] = []
        self._idle: queue.SimpleQueue[subprocess.Popen[bytes]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(self.processes)  # a part in flight per process: the rows held stay bounded
        # a part is sent and its answer awaited on one of these threads (blocked on the pipes, without the GIL)
        self._io = concurrent.futures.ThreadPoolExecutor(self.processes, thread_name_prefix="reconcile-worker")

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def submit(self, rows: list[dict[str, Any]], batch: int, cut: int) -> concurrent.futures.Future[Any]:
        """A future of (players, seconds, the worker's peak RSS in KB); its error: the part failed. Waits while
        every process has a part. The rows are let go once sent (the caller's reference aside): a part the
        workers hold is not held here too."""
        self._slots.acquire()
        with self._lock:
            if self._idle.empty() and len(self._procs) < self.processes:
                proc = subprocess.Popen(self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self._env,
                                        cwd=str(_ROOT))
                self._procs.append(proc)
                self._idle.put(proc)
        return self._io.submit(self._call, [rows], batch, cut)

    def _call(self, box: list[list[dict[str, Any]]], batch: int, cut: int) -> tuple[int, float, int]:
        proc = self._idle.get()  # a thread per process: one is idle when a part's turn comes
        assert proc.stdin is not None and proc.stdout is not None
        try:
            blob = pickle.dumps((box.pop(), batch, cut), protocol=pickle.HIGHEST_PROTOCOL)
            _write(proc.stdin, blob)
            del blob
            ok, value = _receive(proc.stdout)
        except (OSError, EOFError) as exc:
            raise SinkError(f"the profiles' reconcile worker stopped (exit {proc.poll()})") from exc
        finally:
            self._idle.put(proc)
            self._slots.release()
        if not ok:
            raise SinkError(f"the profiles' reconcile failed in its worker: {value}")
        return value  # type: ignore[no-any-return]

    def close(self) -> None:
        """Let the parts sent end, then stop the workers (their input closed)."""
        self._io.shutdown(wait=True)
        for proc in self._procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in self._procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def main() -> None:
    """The worker: parts from stdin, answers to stdout, until its input closes."""
    import ctypes
    import datetime as dt
    import signal
    import traceback

    from streamboard.adapters.local.stores import LocalProfileStore
    from streamboard.profiles import bases_from_rows
    from streamboard.refresh import gc_paused
    from streamboard.registry import format_ts
    from streamboard.usage import Usage

    if sys.platform.startswith("linux"):  # killed when the refresh's process dies
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != int(sys.argv[3]):  # it died before that: nothing to work for
        return
    profiles_db, usage_db = sys.argv[1], sys.argv[2]
    store = LocalProfileStore(Path(profiles_db), usage=Usage(Path(usage_db)) if usage_db else None)
    stdin = sys.stdin.buffer
    stdout = os.fdopen(os.dup(1), "wb")  # the answers' own pipe: anything printed goes to stderr instead
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    while True:
        try:
            rows, batch, cut = _receive(stdin)
        except EOFError:
            return
        started = time.monotonic()
        try:
            with gc_paused():
                bases = bases_from_rows(rows)
                del rows  # the part's rows, once grouped by user
                players = store.reconcile(bases, batch=batch, cut=cut, now=format_ts(dt.datetime.now(dt.UTC)))
            del bases
            answer: tuple[bool, Any] = (True, (players, time.monotonic() - started, _peak_kb()))
        except Exception as exc:  # noqa: BLE001 - any error of the part: the refresh raises it when it waits
            answer = (False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}")
        _send(stdout, answer)


def _peak_kb() -> int:
    """This process's peak RSS in KB: ``VmHWM`` (``ru_maxrss`` is kept across fork and exec on Linux, so a
    child started from a large refresh would report the refresh's)."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
