"""What the guard costs: CPU per error event, memory per session.

CPU: every error event is timed on its own (``perf_counter_ns``) after a warm-up, so the
table shows the median and the tail (p95), not a mean that hides outliers. Two views:

* ``Guard._on_model_error`` alone, fed the real livekit ``ErrorEvent``/``LLMError`` objects
  livekit would hand it, wrapping real openai SDK errors (``benchmarks/_errors.py``);
* the real session path, ``llm.emit("error", ...)`` -> ``AgentActivity._on_error`` ->
  ``AgentSession.emit`` -> listeners -> ``AgentSession._on_error``, guarded and not: the
  difference is what a guarded session pays per event in production.

Memory: ``tracemalloc`` current size around started, room-less sessions, unguarded and
guarded, idle and after an error storm.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import openai as openai_sdk
import structlog
from livekit.agents import Agent, AgentSession, ErrorEvent, llm
from livekit.plugins import openai

from agent_guard import GuardPolicy, Kind, Tolerance, guard
from agent_guard.testing import GatewaySimulator
from benchmarks import _errors
from benchmarks._report import environment, percentile, table

__all__ = ["new_session", "run"]

WARMUP = 200
SAMPLES = 3000
TERMINAL_SAMPLES = 400
MEMORY_SESSIONS = 10
MEMORY_ROUNDS = 3
STORM_SESSIONS = 5
STORM_EVENTS = 1500


# -- sessions -------------------------------------------------------------------------------


def new_session(client: openai_sdk.AsyncClient) -> AgentSession[Any]:
    """A room-less, text-only session whose LLM shares ``client``.

    A shared SDK client keeps session creation cheap (an ``openai.AsyncClient`` builds an
    SSL context, ~25 ms) and out of the per-session memory figures: a worker can share
    one too, and it is not what the guard adds.
    """
    return AgentSession(
        llm=openai.LLM(model="gpt-4o-mini", client=client),
        vad=None,
        turn_handling={"turn_detection": "manual"},
    )


def sdk_client(base_url: str) -> openai_sdk.AsyncClient:
    return openai_sdk.AsyncClient(api_key="sk-bench", base_url=base_url, max_retries=0)


# -- logging configurations ------------------------------------------------------------------


_DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process


def _configure_logs(level: int) -> None:
    """structlog at ``level``, rendering JSON lines (as production would) to /dev/null."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=_DEVNULL),
        wrapper_class=structlog.make_filtering_bound_logger(level),
    )


@contextmanager
def logs(level: int) -> Iterator[None]:
    """structlog at ``level`` (see _configure_logs), restored afterwards."""
    previous = structlog.get_config()
    _configure_logs(level)
    try:
        yield
    finally:
        structlog.configure(**previous)


# -- timing ----------------------------------------------------------------------------------


@dataclass
class Probe:
    """One row of the CPU table: a list of prepared calls, each timed on its own."""

    what: str
    event: str
    calls: Sequence[Callable[[], object]]
    level: int = logging.WARNING
    """structlog level while this probe's calls run."""
    samples: list[float] = field(default_factory=list)


#: Distinct provider errors each row cycles through. In production every event brings a
#: new exception; classify() remembers its last answer for the very same exception (the
#: fleet gate and the guard both classify each event), so a row must never hand it the
#: error of the previous event. A fresh one per event would cost ~6 KB and ~1.4 ms each.
POOL = 256

ErrorFactory = Callable[[], Exception]


def _pool(make: ErrorFactory, size: int = POOL) -> list[Exception]:
    return [make() for _ in range(size)]


def _events(make: ErrorFactory, n: int, *, recoverable: bool, source: Any) -> list[Any]:
    # A fresh ErrorEvent/LLMError per call, as livekit emits: the guard flips
    # LLMError.recoverable in place, so objects cannot be reused between calls.
    errors = _pool(make)
    return [
        ErrorEvent(
            error=_errors.llm_error(errors[i % POOL], recoverable=recoverable), source=source
        )
        for i in range(n)
    ]


def guard_probe(
    what: str,
    event: str,
    client: openai_sdk.AsyncClient,
    policy: GuardPolicy,
    error: ErrorFactory,
    *,
    recoverable: bool,
    n: int,
    level: int = logging.WARNING,
) -> Probe:
    """``Guard._on_model_error`` per event, one guarded (not started) session."""
    session = new_session(client)
    g = guard(session, policy)
    events = _events(error, n, recoverable=recoverable, source=session.llm)
    return Probe(
        what, event, [functools.partial(g._on_model_error, ev.error) for ev in events], level
    )


def terminal_probe(client: openai_sdk.AsyncClient, error: ErrorFactory, n: int) -> Probe:
    """The first terminal event of a fresh guard: classify, decide, spawn the teardown."""
    policy = GuardPolicy(hooks=())
    calls: list[Callable[[], object]] = []
    errors = _pool(error)
    for i in range(n):
        g = guard(new_session(client), policy)
        err = _errors.llm_error(errors[i % POOL], recoverable=True)
        calls.append(functools.partial(g._on_model_error, err))
    return Probe(
        "`Guard._on_model_error`, no hooks, fresh guard", "credits 429 → close decision", calls
    )


async def session_probe(
    what: str,
    client: openai_sdk.AsyncClient,
    error: ErrorFactory,
    *,
    guarded: bool,
    n: int,
    pool: int = POOL,
) -> tuple[Probe, AgentSession[Any]]:
    """``llm.emit("error", LLMError)`` on a started session: livekit's path end to end.

    ``pool=1``: every event wraps the same provider exception, so ``classify()`` answers
    from its one-entry memo: what the guard costs besides recognising the failure.
    """
    session = new_session(client)
    if guarded:
        guard(session)
    await session.start(Agent(instructions="Be brief."))
    model = session.llm
    assert isinstance(model, llm.LLM)
    errors = _pool(error, pool)
    errs = [_errors.llm_error(errors[i % pool], recoverable=True) for i in range(n)]
    calls = [functools.partial(model.emit, "error", e) for e in errs]
    return Probe(what, "rate-limit 429, retry attempt", calls), session


def run_interleaved(probes: Sequence[Probe], *, warmup: int) -> None:
    """Time call i of every probe, then call i+1 of every probe, and so on.

    Interleaving per event puts every row under the same machine conditions: on a
    noisy 2-core box the speed drifts by ~1.5x for seconds at a time, which would
    otherwise land on whichever row happened to run then.
    """
    clock = time.perf_counter_ns
    level: int | None = None
    longest = max(len(p.calls) for p in probes)
    gc.collect()
    for i in range(longest):
        for probe in probes:
            if i >= len(probe.calls):
                continue
            if probe.level != level:
                level = probe.level
                _configure_logs(level)
            call = probe.calls[i]
            start = clock()
            call()
            elapsed = (clock() - start) / 1000
            if i >= warmup:
                probe.samples.append(elapsed)


def stats(samples: Sequence[float]) -> tuple[str, str]:
    return f"{statistics.median(samples):.1f}", f"{percentile(samples, 95):.1f}"


async def _alone(
    client: openai_sdk.AsyncClient, error: ErrorFactory, n: int, pool: int, how: str
) -> list[tuple[str, ...]]:
    """A fresh stock and guarded session timed against each other, nothing else between."""
    pair = [
        await session_probe(
            f"session path, {name}, {how}", client, error, guarded=guarded, n=n, pool=pool
        )
        for name, guarded in (("stock", False), ("guarded (default policy, INFO filtered)", True))
    ]
    run_interleaved([probe for probe, _ in pair], warmup=WARMUP)
    rows: list[tuple[str, ...]] = []
    for probe, session in pair:
        await session.aclose()
        rows.append((probe.what, probe.event, *stats(probe.samples)))
    return rows + _compare(pair[0][0], pair[1][0], how)


def _compare(stock: Probe, guarded: Probe, how: str) -> list[tuple[str, ...]]:
    """What the guard adds to the session path, in µs and as a multiple of stock."""
    s, g = statistics.median(stock.samples), statistics.median(guarded.samples)
    return [
        (f"session path, {how}: guarded − stock (medians)", "", f"{g - s:.1f}", ""),
        (f"session path, {how}: guarded ÷ stock (medians)", "", f"{g / s:.2f}×", ""),
    ]


# -- memory ----------------------------------------------------------------------------------


async def _settle() -> None:
    await asyncio.sleep(0.1)
    gc.collect()


async def _batch(
    client: openai_sdk.AsyncClient, sim: GatewaySimulator, n: int, *, guarded: bool
) -> tuple[float, list[AgentSession[Any]]]:
    """Start ``n`` sessions; (traced bytes per session, the sessions)."""
    await _settle()
    sim.requests.clear()
    before = tracemalloc.get_traced_memory()[0]
    sessions = []
    for _ in range(n):
        s = new_session(client)
        if guarded:
            guard(s)
        await s.start(Agent(instructions="Be brief."))
        sessions.append(s)
    await _settle()
    sim.requests.clear()  # the plugins' connection prewarm, not the sessions' memory
    return (tracemalloc.get_traced_memory()[0] - before) / n, sessions


async def _close(sessions: Sequence[AgentSession[Any]]) -> None:
    for s in sessions:
        await s.aclose()


async def memory_idle(client: openai_sdk.AsyncClient, sim: GatewaySimulator) -> tuple[float, float]:
    """Median bytes per started session (stock, guarded), over interleaved batches.

    The first batch of each kind is discarded: first-use allocations (imports, caches,
    interned strings) would otherwise be charged to whichever kind ran first.
    """
    per: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(MEMORY_ROUNDS + 1):
        for guarded in (False, True):
            size, sessions = await _batch(client, sim, MEMORY_SESSIONS, guarded=guarded)
            await _close(sessions)
            if round_ > 0:
                per[guarded].append(size)
    return statistics.median(per[False]), statistics.median(per[True])


async def memory_storm(
    client: openai_sdk.AsyncClient, sim: GatewaySimulator, *, guarded: bool
) -> float:
    """Bytes each started session grows by over STORM_EVENTS transient error events."""
    errors = _pool(_errors.rate_limit_429)
    _, sessions = await _batch(client, sim, STORM_SESSIONS, guarded=guarded)
    await _settle()
    before = tracemalloc.get_traced_memory()[0]
    for s in sessions:
        model = s.llm
        assert isinstance(model, llm.LLM)
        for i in range(STORM_EVENTS):
            model.emit("error", _errors.llm_error(errors[i % POOL], recoverable=True))
    await _settle()
    grown = (tracemalloc.get_traced_memory()[0] - before) / STORM_SESSIONS
    await _close(sessions)
    return grown


# -- report ----------------------------------------------------------------------------------


async def run() -> str:
    started = time.monotonic()
    logging.getLogger("livekit").setLevel(logging.CRITICAL)
    rate_limit, credits, cancel = _errors.rate_limit_429, _errors.credits_429, _errors.client_cancel
    bare = GuardPolicy(hooks=())
    counted = GuardPolicy(hooks=(), tolerances={Kind.LLM: Tolerance.allow(10**9)})
    rows: list[tuple[str, ...]] = [("what is timed", "event", "median (µs)", "p95 (µs)")]
    n = WARMUP + SAMPLES
    async with GatewaySimulator() as sim:
        client = sdk_client(sim.base_url)
        stock_probe, stock_session = await session_probe(
            "session path, stock", client, rate_limit, guarded=False, n=n
        )
        guarded_probe, guarded_session = await session_probe(
            "session path, guarded (default policy, INFO filtered)",
            client,
            rate_limit,
            guarded=True,
            n=n,
        )
        probes = [
            guard_probe(
                "`Guard._on_model_error`, no hooks",
                "rate-limit 429, retry attempt",
                client,
                bare,
                rate_limit,
                recoverable=True,
                n=n,
            ),
            guard_probe(
                "`Guard._on_model_error`, no hooks",
                "rate-limit 429, final (counted)",
                client,
                counted,
                rate_limit,
                recoverable=False,
                n=n,
            ),
            guard_probe(
                "`Guard._on_model_error`, no hooks",
                "mid-stream 499 (client cancel)",
                client,
                bare,
                cancel,
                recoverable=True,
                n=n,
            ),
            terminal_probe(client, credits, WARMUP // 4 + TERMINAL_SAMPLES),
            guard_probe(
                "`Guard._on_model_error`, default policy, INFO filtered",
                "rate-limit 429, retry attempt",
                client,
                GuardPolicy(),
                rate_limit,
                recoverable=True,
                n=n,
            ),
            guard_probe(
                "`Guard._on_model_error`, default policy, INFO as JSON to /dev/null",
                "rate-limit 429, retry attempt",
                client,
                GuardPolicy(),
                rate_limit,
                recoverable=True,
                n=n,
                level=logging.INFO,
            ),
            stock_probe,
            guarded_probe,
        ]
        previous = structlog.get_config()
        try:
            # Synchronous on purpose: nothing else runs on the loop while calls are timed.
            run_interleaved(probes, warmup=WARMUP)
        finally:
            structlog.configure(**previous)
        await asyncio.sleep(0.1)  # the close decisions' teardown tasks run out
        for session in (stock_session, guarded_session):
            await session.aclose()
        for probe in probes:
            rows.append((probe.what, probe.event, *stats(probe.samples)))
        rows.extend(_compare(stock_probe, guarded_probe, "among the rows above"))
        # The same pair again with nothing timed between them: the rows above evict each
        # other's code and data from the CPU caches, which costs stock's short path
        # proportionally more. Neither view alone is the ratio.
        rows.extend(await _alone(client, rate_limit, n, POOL, "alone"))
        # And once more with one provider exception for every event: the guard's own
        # cost, every step but recognising the failure.
        rows.extend(await _alone(client, rate_limit, n, 1, "alone, one exception"))
        tracemalloc.start()
        try:
            with logs(logging.WARNING):
                stock_idle, guard_idle = await memory_idle(client, sim)
                stock_storm = await memory_storm(client, sim, guarded=False)
                guard_storm = await memory_storm(client, sim, guarded=True)
        finally:
            tracemalloc.stop()
        await client.close()

    def kb(x: float) -> str:
        return f"{x / 1024:,.1f} KB"

    memory = [
        ("per session", "stock", "guarded", "guard's share"),
        ("started, idle (no room)", kb(stock_idle), kb(guard_idle), kb(guard_idle - stock_idle)),
        (
            f"growth after {STORM_EVENTS:,} transient error events",
            kb(stock_storm),
            kb(guard_storm),
            kb(guard_storm - stock_storm),
        ),
    ]
    return "\n".join(
        [
            "# Overhead: CPU per error event, memory per session",
            "",
            "Generated by `python -m benchmarks` (section `overhead`). Do not edit by hand.",
            "",
            environment(
                repeat=f"{SAMPLES:,} timed events per row after {WARMUP} warm-up events "
                f"({TERMINAL_SAMPLES} for the close decision), rows interleaved event by event"
            ),
            f"- wall time of this section: {time.monotonic() - started:.0f} s",
            "",
            "## CPU per error event",
            "",
            table(rows, align_right_from=2),
            "",
            "- Errors are real: openai SDK `RateLimitError`s built from a gateway 429 response",
            "  and wrapped as livekit's plugin does (full JSON only on `__context__`), inside",
            "  fresh `LLMError`/`ErrorEvent` objects, one per event. Each row cycles through",
            f"  its own {POOL} distinct provider errors: `classify()` remembers its last answer",
            "  for the very same exception (the fleet gate and the guard both classify an",
            "  event), which consecutive events must not hit.",
            "- Events with `recoverable=True` (retry attempts, the close decision) carry one",
            "  identical response per row, as livekit's retry attempts of one request do: from",
            "  the second on, `classify()` answers from its retry cache (a digest of what it",
            "  reads, see `classify_cost.md` for a full classification and for a cache hit).",
            "  Events with `recoverable=False` (*final (counted)*) are classified in full.",
            "- *no hooks*: `GuardPolicy(hooks=())`, i.e. classification + decision only.",
            "  *final (counted)* uses an unlimited tolerance so every event takes the",
            "  counting path instead of closing. *close decision*: one fresh guard per event;",
            "  the time includes creating the teardown task (not running it).",
            "- *default policy* runs the `log_verdict` hook: with INFO filtered (structlog's",
            "  filtering bound logger drops the call) or rendered as JSON to /dev/null.",
            '- *session path*: `session.llm.emit("error", LLMError(recoverable=True))` on a',
            "  started session: `AgentActivity._on_error`, `AgentSession.emit` (which also",
            "  appends to `_recorded_events`), the listeners, `AgentSession._on_error`.",
            "  *among the rows above*: interleaved with every other row; *alone*: a second",
            "  pass of a fresh stock and guarded session timed with nothing else between",
            "  their events. The other rows evict each other's code and data from the CPU",
            "  caches, which costs stock's short path proportionally more: a production",
            "  worker does other work between two error events, so expect the ratio",
            "  between the two. *alone, one exception*: a third pass where every event",
            "  wraps the same provider exception, so `classify()` answers from its",
            "  one-entry memo: what the guard costs besides recognising the failure",
            "  (listeners, fleet gate, watchdog, tolerance, the filtered log hook).",
            "",
            "## Memory per session (tracemalloc)",
            "",
            table(memory),
            "",
            "- Sessions are started without a room, text-only (openai LLM on a shared SDK",
            "  client). *idle*: median over "
            f"{MEMORY_ROUNDS} interleaved batches of {MEMORY_SESSIONS} sessions per kind (a",
            "  first batch of each is discarded) of the `tracemalloc` current-size growth",
            "  after `gc.collect()`, divided by the batch size.",
            f"- *growth*: {STORM_SESSIONS} sessions per kind, {STORM_EVENTS:,}"
            " `LLMError(recoverable=True)` events each",
            "  through the session path. *stock* grows because livekit keeps every",
            "  `ErrorEvent` in `AgentSession._recorded_events` (unbounded, for the session",
            "  report). The guard keeps counters and its latest",
            f"  `recent_verdicts = {GuardPolicy().recent_verdicts}` verdicts per session.",
        ]
    )
