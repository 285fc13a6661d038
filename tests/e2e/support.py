"""Run `streamboard` as a subprocess on 127.0.0.1 for the end-to-end tests: start, wait, stop, kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
API_KEY = "local-dev-key"
ADMIN_KEY = "local-admin-key"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


def cli_env() -> dict[str, str]:
    """The environment for a CLI subprocess: no STREAMBOARD_* overrides, no proxies, unbuffered output."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("STREAMBOARD_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``streamboard ARGS`` to completion and capture its output; past ``timeout`` it gets SIGTERM, then
    SIGKILL, and the test fails."""
    argv = [sys.executable, "-m", "streamboard.cli", *args]
    with subprocess.Popen(argv, cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                out, err = proc.communicate(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate(timeout=10)
            raise AssertionError(f"streamboard {' '.join(args)} ran over {timeout} s:\n{out}\n{err}") from None
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def two_free_ports() -> tuple[int, int]:
    for _ in range(20):
        a, b = free_port(), free_port()
        if a != b:
            return a, b
    raise RuntimeError("could not find two distinct free ports")


def http_client() -> httpx.Client:
    return httpx.Client(timeout=120, trust_env=False)


class StackProcess:
    """``streamboard up --data-dir D --ingest-port P --api-port Q [extra]`` as a child process."""

    def __init__(self, data_dir: Path, log_path: Path, extra: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.data_dir, self.log_path, self.extra = data_dir, log_path, extra
        self.env = env or {}
        self.ingest_port, self.api_port = two_free_ports()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.ingest_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self) -> StackProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _close_log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamboard.cli", "up", "--data-dir", str(self.data_dir),
             "--ingest-port", str(self.ingest_port), "--api-port", str(self.api_port), *self.extra],
            cwd=REPO, env={**cli_env(), **self.env}, stdout=self._log, stderr=subprocess.STDOUT,
        )
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> StackProcess:
        """Poll GET /healthz on both ports until both answer 200 (bounded in time and attempts)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2, trust_env=False) as client:
            for _ in range(int(timeout / 0.1) + 1):
                if self.proc.poll() is not None:
                    raise AssertionError(f"streamboard up exited with {self.proc.returncode}:\n{self.output()}")
                try:
                    codes = [client.get(f"{url}/healthz").status_code for url in (self.ingest_url, self.api_url)]
                except httpx.TransportError:
                    codes = []
                if codes == [200, 200]:
                    return self
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        raise AssertionError(f"streamboard up was not ready within {timeout} s:\n{self.output()}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            return self.proc.returncode
        finally:
            self._close_log()

    def kill9(self) -> int | None:
        assert self.proc is not None
        try:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            return self.proc.returncode
        finally:
            self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def no_server_error(resp: httpx.Response) -> Any:
    """Assert an error answer is a 4xx JSON {"error": ...} without a trace; return its body."""
    assert resp.status_code < 500, (resp.status_code, resp.text)
    assert "Traceback" not in resp.text and 'File "' not in resp.text, resp.text
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
    return body
