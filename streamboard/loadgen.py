"""Open-loop load for ``streamboard loadtest --rate``: requests sent on a fixed schedule whatever the server
does, each request's latency counted from the time it was *scheduled*, not sent.

A closed loop (each client waits for its answer before sending again) slows down with the server and never
sees the requests a real user would have sent meanwhile, so its latencies leave out the queueing
("coordinated omission"). Here a request due at t is sent at t even when earlier ones are still waiting;
when the client's connections are all busy it waits for one, and that wait counts too.

The schedule spans ``seconds``: ``rate`` requests/s, and with a spike ``FACTOR@SECONDS`` that many times the
rate for that long in the middle (phases ``before``, ``spike``, ``after``). At most ``max_requests`` are
scheduled. Nothing is sent, and nothing more is waited for, after ``seconds + timeout``: answers not in by
then count as errors, so the run always stops by itself.
"""

from __future__ import annotations

import asyncio
import collections
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

_SPIKE = re.compile(r"(\d+(?:\.\d+)?)@(\d+(?:\.\d+)?)s?")


@dataclass(frozen=True)
class Spike:
    factor: float  # times the base rate
    seconds: float  # how long


@dataclass(frozen=True)
class Phase:
    name: str
    start: float  # seconds from the start of the run
    end: float
    rate: float  # requests/s offered


def parse_spike(text: str) -> Spike:
    """``FACTOR@SECONDS`` (``5@10``: five times the rate for ten seconds); ValueError with a message a user
    can act on otherwise."""
    m = _SPIKE.fullmatch(text.strip())
    if not m or float(m.group(1)) <= 0 or float(m.group(2)) <= 0:
        raise ValueError(f"--spike takes FACTOR@SECONDS with both above 0, e.g. 5@10 (5x the rate for 10 s); "
                         f"got {text!r}")
    return Spike(float(m.group(1)), float(m.group(2)))


def phases(rate: float, seconds: float, spike: Spike | None = None) -> list[Phase]:
    """The run's phases: one ``steady`` phase, or ``before``, ``spike`` and ``after`` with the spike in the
    middle of ``seconds``."""
    if rate <= 0 or seconds <= 0:
        raise ValueError("--rate and --seconds must be above 0")
    if spike is None:
        return [Phase("steady", 0.0, seconds, rate)]
    if spike.seconds >= seconds:
        raise ValueError(f"the spike ({spike.seconds:g} s) must be shorter than --seconds ({seconds:g}), which "
                         "holds the steady phases before and after it")
    before = (seconds - spike.seconds) / 2
    return [Phase("before", 0.0, before, rate), Phase("spike", before, before + spike.seconds, rate * spike.factor),
            Phase("after", before + spike.seconds, seconds, rate)]


def schedule(plan: Sequence[Phase], max_requests: int | None = None) -> list[tuple[float, int]]:
    """(seconds from the start, phase index) of every request: evenly spaced at each phase's rate, from the
    phase's start to (not including) its end; at most ``max_requests`` in all."""
    out: list[tuple[float, int]] = []
    for i, ph in enumerate(plan):
        count = math.ceil((ph.end - ph.start) * ph.rate - 1e-9)
        out.extend((ph.start + k / ph.rate, i) for k in range(count))
    return out if max_requests is None else out[:max_requests]


@dataclass
class Outcome:
    phase: int
    status: int | None = None  # None: no answer (a transport error, a timeout, or still waiting at the end)
    latency: float | None = None  # seconds from the scheduled time to the answer
    accepted: int = 0
    error: str | None = None


@dataclass
class OpenLoopRun:
    plan: list[Phase]
    outcomes: list[Outcome]
    scheduled: list[tuple[float, int]]
    not_sent: int = 0  # scheduled, but the run's end came first
    max_send_lag: float = 0.0  # how far behind its schedule the sender ever was (seconds)
    elapsed: float = 0.0
    notes: list[str] = field(default_factory=list)


async def run_open_loop(url: str, key: str, bodies: Sequence[bytes], plan: list[Phase],
                        scheduled: list[tuple[float, int]], *, connections: int, timeout: float,
                        on_done: Callable[[], None] | None = None) -> OpenLoopRun:
    """Send ``bodies[i % len(bodies)]`` as request i at its scheduled time, over at most ``connections``
    keep-alive connections; every request and the whole run end by ``plan``'s end + ``timeout``."""
    clock = time.perf_counter
    result = OpenLoopRun(plan, [], scheduled)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"x-api-key": key, "content-type": "application/json"}
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout)) as client:
        start = clock()
        hard_end = start + plan[-1].end + timeout

        async def one(outcome: Outcome, body: bytes, due: float) -> None:
            try:
                async with asyncio.timeout(timeout):  # the whole request, waiting for a connection included
                    resp = await client.post(url, content=body, headers=headers)
                outcome.status = resp.status_code
                if 200 <= resp.status_code < 300:
                    answer = resp.json()
                    outcome.accepted = int(answer.get("accepted", 0)) if isinstance(answer, dict) else 0
            except (TimeoutError, httpx.TimeoutException):
                outcome.error = "timeout"
            except (httpx.HTTPError, ValueError) as exc:
                outcome.error = type(exc).__name__
            finally:
                if outcome.status is not None:
                    outcome.latency = clock() - due
                if on_done is not None:
                    on_done()

        tasks: list[asyncio.Task[None]] = []
        for n, (offset, phase) in enumerate(scheduled):
            due = start + offset
            now = clock()
            if due > now:
                await asyncio.sleep(due - now)
                now = clock()
            if now >= hard_end:
                result.not_sent = len(scheduled) - n
                break
            result.max_send_lag = max(result.max_send_lag, now - due)
            outcome = Outcome(phase)
            result.outcomes.append(outcome)
            tasks.append(asyncio.create_task(one(outcome, bodies[n % len(bodies)], due)))
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, hard_end - clock()))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for outcome in result.outcomes:
            if outcome.status is None and outcome.error is None:
                outcome.error = "unanswered at the end"
        result.elapsed = clock() - start
    return result


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of already sorted values; 0 for none."""
    if not sorted_values:
        return 0.0
    return sorted_values[max(0, math.ceil(q / 100 * len(sorted_values)) - 1)]


def _summary(name: str, seconds: float, rate: float, scheduled: int, outcomes: list[Outcome],
             not_sent: int) -> dict[str, Any]:
    latencies = sorted(o.latency for o in outcomes if o.latency is not None)
    statuses = [o.status for o in outcomes]
    counts = {"2xx": sum(1 for s in statuses if s is not None and 200 <= s < 300),
              "429": statuses.count(429), "503": statuses.count(503)}
    counts["other"] = sum(1 for s in statuses if s is not None) - sum(counts.values())
    counts["errors"] = sum(1 for o in outcomes if o.status is None)
    kinds = collections.Counter(o.error for o in outcomes if o.status is None)
    return {"phase": name, "seconds": round(seconds, 3), "offered_rate": round(rate, 3),
            "scheduled": scheduled, "sent": len(outcomes), "not_sent": not_sent, **counts,
            "errors_by_kind": dict(sorted(kinds.items(), key=lambda kv: str(kv[0]))),
            "events_accepted": sum(o.accepted for o in outcomes),
            "latency_ms": {f"p{q}": round(percentile(latencies, q) * 1000, 2) for q in (50, 90, 99)}
            | {"max": round(latencies[-1] * 1000, 2) if latencies else 0.0}}


def summarize(run: OpenLoopRun) -> list[dict[str, Any]]:
    """Per phase, then ``all`` (its offered rate the average): scheduled and sent requests, answers by
    status (2xx, 429, 503, other; errors had none, by kind), events accepted, latency percentiles from the
    schedule."""
    rows = []
    sent_by_phase = [0] * len(run.plan)
    for o in run.outcomes:
        sent_by_phase[o.phase] += 1
    for i, ph in enumerate(run.plan):
        scheduled = sum(1 for _, p in run.scheduled if p == i)
        rows.append(_summary(ph.name, ph.end - ph.start, ph.rate, scheduled,
                             [o for o in run.outcomes if o.phase == i], scheduled - sent_by_phase[i]))
    if len(run.plan) > 1:
        rows.append(_summary("all", run.plan[-1].end, len(run.scheduled) / run.plan[-1].end, len(run.scheduled),
                             run.outcomes, run.not_sent))
    return rows
