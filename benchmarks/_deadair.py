"""Dead air: failures that raise nothing, or raise too late, stock vs guarded.

Every run is a real room-less ``AgentSession`` with the real openai LLM and TTS plugins
talking HTTP to its own ``GatewaySimulator``, livekit's default options (10 s request
timeout, ``max_retry=3``, ``retry_interval=2``, ``max_unrecoverable_errors=3``) and a
``CaptureAudioOutput(realtime=True)``. A caller says something, waits until the agent
has been quiet for :data:`QUIET` seconds (everything the turn set off, a stall notice
and a retry included, is over), then speaks again, for at most :data:`TURNS` turns.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import Agent, AgentSession, CloseEvent
from livekit.plugins import openai

from agent_guard import Category, guard
from agent_guard.testing import (
    CaptureAudioOutput,
    ClientCancelled,
    GatewaySimulator,
    Hang,
    Reply,
    SilentSpeech,
)
from agent_guard.testing._simulator import LLMResponse, TTSResponse
from benchmarks._report import environment, table

__all__ = ["FAULTS", "run"]

API_KEY = "sk-bench-not-a-real-key"
#: Turns a caller tries before giving up (the guard's default ends the call in 3).
TURNS = 4
#: The turn is over once the agent has been idle this long.
QUIET = 1.0
#: No turn lasts longer than this (stock on a hang: ~44 s per turn).
TURN_CAP = 75.0
STALL_TIMEOUT = 4.0


@dataclass(frozen=True)
class Fault:
    key: str
    title: str
    description: str
    llm: LLMResponse | None = None
    tts: TTSResponse | None = None
    once: bool = False
    """Only the first request fails (a one-off), else every request does."""


FAULTS: tuple[Fault, ...] = (
    Fault(
        "hang",
        "LLM accepts, never answers",
        "Every chat completion gets a 200 and event-stream headers, then nothing.",
        llm=Hang(after_headers=True),
    ),
    Fault(
        "empty",
        "LLM empty completion",
        "Every chat completion is a well-formed stream with no content.",
        llm=Reply(""),
    ),
    Fault(
        "swallowed_499",
        "LLM 499 (swallowed)",
        "Every chat completion gets HTTP 499, which livekit 1.8.9 ends silently.",
        llm=ClientCancelled(),
    ),
    Fault(
        "silent_tts",
        "TTS 200, no audio",
        "Every speech request gets a 200 with no audio in it.",
        tts=SilentSpeech(),
    ),
    Fault(
        "one_off_hang",
        "one hung request",
        "The first chat completion hangs after its headers; every later one answers.",
        llm=Hang(after_headers=True),
        once=True,
    ),
)


@dataclass
class Turn:
    dead_air: float | None
    """Seconds from the caller's turn to the first agent audio; None if none came."""
    llm: int
    tts: int
    """Requests the turn set off (retries, the notice and the farewell included)."""


@dataclass
class Outcome:
    fault: str
    contender: str
    turns: list[Turn] = field(default_factory=list)
    closed_after: int | None = None
    closed_in: float | None = None
    """Seconds from the first turn to the close."""
    close_reason: str | None = None
    stalled: int = 0


def _session(sim: GatewaySimulator) -> AgentSession[Any]:
    return AgentSession(
        llm=openai.LLM(model="gpt-4o-mini", base_url=sim.base_url, api_key=API_KEY),
        tts=openai.TTS(
            model="gpt-4o-mini-tts", voice="alloy", base_url=sim.base_url, api_key=API_KEY
        ),
        vad=None,
        turn_handling={"turn_detection": "manual"},
    )


async def _quiet(session: AgentSession[Any], closed: asyncio.Event, since: float) -> float:
    """Wait until the agent has been idle for QUIET seconds (or closed); return when."""
    loop = asyncio.get_running_loop()
    idle_since: float | None = None
    while not closed.is_set() and time.monotonic() - since < TURN_CAP:
        idle = session.current_speech is None and session.agent_state in ("listening", "idle")
        if idle and idle_since is None:
            idle_since = loop.time()
        elif not idle:
            idle_since = None
        if idle_since is not None and loop.time() - idle_since >= QUIET:
            return time.monotonic() - QUIET
        await asyncio.sleep(0.05)
    return time.monotonic()


async def one_run(fault: Fault, contender: str) -> Outcome:
    outcome = Outcome(fault=fault.key, contender=contender)
    async with GatewaySimulator() as sim:
        sim.llm.default = Reply("Sure, here you go.")
        if fault.llm is not None and fault.once:
            sim.llm.script(fault.llm)
        elif fault.llm is not None:
            sim.llm.default = fault.llm
        if fault.tts is not None and fault.once:
            sim.tts.script(fault.tts)
        elif fault.tts is not None:
            sim.tts.default = fault.tts
        session = _session(sim)
        g = guard(session) if contender == "guarded" else None
        closed = asyncio.Event()
        close: list[CloseEvent] = []

        def on_close(ev: CloseEvent) -> None:
            close.append(ev)
            outcome.closed_in = time.monotonic() - started
            closed.set()

        session.on("close", on_close)
        out = CaptureAudioOutput(realtime=True)
        session.output.audio = out
        await session.start(Agent(instructions="Be brief."))
        started = time.monotonic()
        try:
            for i in range(TURNS):
                if closed.is_set():
                    break
                llm_before = len(sim.requests_for("llm"))
                tts_before = len(sim.requests_for("tts"))
                at = time.monotonic()
                session.generate_reply(user_input=f"Hello? (turn {i + 1})")
                end = await _quiet(session, closed, at)
                first = next((f.at for f in out.frames if at < f.at <= end), None)
                outcome.turns.append(
                    Turn(
                        None if first is None else first - at,
                        len(sim.requests_for("llm")) - llm_before,
                        len(sim.requests_for("tts")) - tts_before,
                    )
                )
                if closed.is_set():
                    outcome.closed_after = i + 1
            if close:
                outcome.close_reason = close[0].reason.value
        finally:
            if g is not None:
                outcome.stalled = sum(v.category is Category.STALLED for v in g.verdicts)
            if not closed.is_set():
                await session.aclose()
                outcome.closed_in = None  # the harness closed it, not a failure
    return outcome


CONTENDERS = ("stock", "guarded")


async def run_all(repeat: int, progress: Callable[[Outcome], None]) -> list[Outcome]:
    jobs = [(f, c) for f in FAULTS for c in CONTENDERS for _ in range(repeat)]
    random.shuffle(jobs)

    async def job(f: Fault, c: str) -> Outcome:
        o = await one_run(f, c)
        progress(o)
        return o

    return list(await asyncio.gather(*(job(f, c) for f, c in jobs)))


def _median(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.1f} s" if values else "never"


def _heard(turns: Sequence[Turn]) -> list[float]:
    return [t.dead_air for t in turns if t.dead_air is not None]


def _fault_turns(o: Outcome, fault: Fault) -> list[Turn]:
    return o.turns[:1] if fault.once else o.turns


def _closed_after(os: list[Outcome]) -> str:
    """Median turns and seconds to the session's own close, or "never"."""
    closed = [o for o in os if o.closed_after is not None and o.closed_in is not None]
    if not closed:
        return "never"
    turns = statistics.median(o.closed_after or 0 for o in closed)
    seconds = statistics.median(o.closed_in or 0.0 for o in closed)
    some = "" if len(closed) == len(os) else f" ({len(closed)}/{len(os)} runs)"
    return f"turn {turns:g}, {seconds:.0f} s{some}"


def summarise(outcomes: list[Outcome], fault: Fault) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("", *CONTENDERS)]
    by = {c: [o for o in outcomes if o.fault == fault.key and o.contender == c] for c in CONTENDERS}

    def row(label: str, cell: Callable[[list[Outcome]], str]) -> None:
        rows.append((label, *(cell(by[c]) for c in CONTENDERS)))

    def turns(os: list[Outcome]) -> list[Turn]:
        return [t for o in os for t in _fault_turns(o, fault)]

    row("runs", lambda os: str(len(os)))
    row("dead air per fault turn (median)", lambda os: _median(_heard(turns(os))))
    row(
        "dead air per fault turn (max)",
        lambda os: f"{max(h):.1f} s" if (h := _heard(turns(os))) else "never",
    )
    row(
        "fault turns with nothing heard",
        lambda os: f"{sum(t.dead_air is None for t in turns(os))}/{len(turns(os))}",
    )
    row(
        "turns until close",
        lambda os: ", ".join(
            str(o.closed_after) if o.closed_after else f"never ({len(o.turns)})" for o in os
        ),
    )
    row(
        "first turn → close (median)",
        lambda os: _median([o.closed_in for o in os if o.closed_in is not None]),
    )
    row(
        "LLM / TTS requests per run (median)",
        lambda os: (
            f"{statistics.median(sum(t.llm for t in o.turns) for o in os):g} / "
            f"{statistics.median(sum(t.tts for t in o.turns) for o in os):g}"
        ),
    )
    row("close reason", lambda os: ", ".join(sorted({o.close_reason or "—" for o in os})))
    row("stalled verdicts (median)", lambda os: f"{statistics.median(o.stalled for o in os):g}")
    return rows


def report(outcomes: list[Outcome], *, repeat: int, elapsed: float) -> str:
    parts = [
        "# Dead air: stock vs agent-guard's watchdog",
        "",
        "Generated by `python -m benchmarks --sections deadair`. Do not edit by hand.",
        "",
        environment(repeat=f"{repeat} per (fault, contender), all runs at once"),
        f"- wall time of this section: {elapsed:.0f} s",
        "",
        "Each run is a real room-less `AgentSession` with livekit-plugins-openai LLM and",
        "TTS talking HTTP to its own `GatewaySimulator`, livekit's default options (10 s",
        "request timeout, `max_retry=3`, `retry_interval=2`, `max_unrecoverable_errors=3`)",
        "and a `CaptureAudioOutput(realtime=True)`. *stock* has no listener; *guarded* is",
        f"`guard(session)` with the default policy (`stall_timeout={STALL_TIMEOUT:g}`, the",
        'packaged "Sorry, one moment." notice, one retry). A caller speaks, waits until',
        f"the agent has been idle for {QUIET:g} s, and speaks again, {TURNS} turns at most.",
        "",
        "*dead air* is the time from the caller's turn to the first agent audio frame that",
        "reached the output (the reply, or the guard's stall notice); *never* when nothing",
        "was heard before the turn was over. Requests count everything the run sent to the",
        "provider: retries, the guard's retry, the farewell's synthesis (the stall notice is",
        "a recording).",
        "",
        "## Headline: dead air per fault turn, and the session's own close (medians)",
        "",
    ]
    headline: list[tuple[str, ...]] = [
        (
            "fault",
            "stock: dead air",
            "guarded: dead air",
            "stock: closed after",
            "guarded: closed after",
        )
    ]
    for f in FAULTS:
        rows = {r[0]: r[1:] for r in summarise(outcomes, f)[1:]}
        dead = rows["dead air per fault turn (median)"]
        closes = [
            _closed_after([o for o in outcomes if o.fault == f.key and o.contender == c])
            for c in CONTENDERS
        ]
        headline.append((f.title, *dead, *closes))
    parts += [table(headline), ""]
    for f in FAULTS:
        parts += [f"## {f.title}", "", f.description, "", table(summarise(outcomes, f)), ""]
    return "\n".join(parts)


async def run(*, repeat: int, progress: Callable[[Outcome], None]) -> str:
    start = time.monotonic()
    outcomes = await run_all(repeat, progress)
    return report(outcomes, repeat=repeat, elapsed=time.monotonic() - start)
