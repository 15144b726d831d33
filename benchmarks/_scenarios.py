"""Scripted failure scenarios, run against the gateway simulator by each contender.

Every run is a real room-less ``AgentSession`` with the real openai LLM/TTS plugins
talking HTTP to its own ``GatewaySimulator``, a caller who keeps talking, and a
``CaptureAudioOutput(realtime=True)`` that "plays" audio at its real duration, so what
is measured is what a caller would hear and when. Session options are livekit's
defaults (``max_retry=3``, ``retry_interval=2.0``, ``max_unrecoverable_errors=3``):
the point is to compare behaviour as shipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from livekit.agents import NOT_GIVEN, Agent, AgentSession, CloseEvent, llm, stt
from livekit.agents._exceptions import APIError, APIStatusError
from livekit.plugins import openai

from agent_guard import GuardPolicy, guard
from agent_guard._audio import presynthesized
from agent_guard._policy import DEFAULT_ERROR_MESSAGE, DEFAULT_FAREWELL_AUDIO
from agent_guard.testing import (
    CaptureAudioOutput,
    GatewaySimulator,
    QuotaExceeded,
    RateLimited,
    RecordedRequest,
    Reply,
    StreamError,
)
from benchmarks._proposal import ProposalEmulation

__all__ = ["CONTENDERS", "SCENARIOS", "Contender", "Outcome", "Scenario", "run_all"]

API_KEY = "sk-bench-not-a-real-key"
HEALTHY = Reply("Sure.")
#: A caller who hears nothing waits this long before talking again.
PATIENCE = 2.0
#: ... and after the agent stops speaking, pauses this long before the next turn.
PAUSE = 0.2
TURN_TIMEOUT = 30.0
#: After the last turn, how long a terminal scenario waits for the session to close by
#: itself (the proposal bounds its farewell at 16 s).
CLOSE_WAIT = 20.0
SETTLE = 0.3
#: Pause before the provider recovers in the transient scenarios.
RECOVERY_PAUSE = 1.0


# -- contenders ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    key: str
    title: str
    attach: Callable[[AgentSession[Any]], object]
    presynth: bool = False


def _stock(session: AgentSession[Any]) -> object:
    return None


CONTENDERS: tuple[Contender, ...] = (
    Contender("stock", "stock", _stock),
    Contender("proposal", "PR #6012 (emulated)", ProposalEmulation),
    # Spoken by TTS at failure time: the default policy would also presynthesise the
    # farewell, and play that whenever synthesis had finished before the failure.
    Contender("guard", "guard: spoken", lambda s: guard(s, GuardPolicy(presynthesize=False))),
    Contender(
        "guard_presynth",
        "guard: presynthesised",
        lambda s: guard(s, GuardPolicy(presynthesize=True)),
        presynth=True,
    ),
    Contender(
        "guard_recorded",
        "guard: recorded",
        lambda s: guard(s, GuardPolicy(farewell_audio=DEFAULT_FAREWELL_AUDIO)),
    ),
)


# -- scenarios ------------------------------------------------------------------------------


@dataclass
class Ctx:
    """One run's moving parts, handed to the scenario's callables."""

    sim: GatewaySimulator
    session: AgentSession[Any]
    recognizer: openai.STT | None
    armed_at: float = 0.0
    recovered_at: float = float("inf")
    injected_at: float | None = None

    def inject(self, emitter: Any, error: Any) -> None:
        if self.injected_at is None:
            self.injected_at = time.monotonic()
        # Through the real activity path: AgentActivity listens to the model's "error".
        emitter.emit("error", error)


TurnFn = Callable[[Ctx, int], Awaitable[None]]


async def text_turn(ctx: Ctx, i: int) -> None:
    """The caller says something; the turn is over once livekit's run() is."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(TURN_TIMEOUT):
            await ctx.session.run(user_input=f"Hello? (turn {i + 1})")


async def stt_failing_turn(ctx: Ctx, i: int) -> None:
    """The caller speaks; the STT rejects the key (non-streaming recognize: one event)."""
    assert ctx.recognizer is not None
    ctx.inject(
        ctx.recognizer,
        stt.STTError(
            timestamp=time.time(),
            label=ctx.recognizer.label,
            recoverable=False,
            error=APIStatusError("Incorrect API key provided", status_code=401, body=None),
        ),
    )


def gateway_quota_error() -> APIError:
    """A gateway credits error the way realtime/websocket paths deliver it (body kept)."""
    return APIError(
        "LiveKit Inference returned an error",
        body={
            "type": "inference_quota_exceeded",
            "category": "MaxGatewayCredits",
            "quota_type": "llm",
            "error": "quota exceeded, category: MaxGatewayCredits",
            "hint": "Wait for the next billing cycle or upgrade your plan.",
        },
        retryable=False,
    )


async def realtime_turn(ctx: Ctx, i: int) -> None:
    """The first failing turn: the realtime model gives up (fatal quota, no reconnect).

    Later turns: the caller talks to a dead model, nothing comes back.
    """
    if ctx.injected_at is None:
        model = ctx.session.llm
        assert isinstance(model, llm.LLM)
        ctx.inject(
            model,
            llm.RealtimeModelError(
                timestamp=time.time(),
                label="livekit.plugins.openai.realtime.RealtimeModel",
                recoverable=False,
                error=gateway_quota_error(),
            ),
        )


def _arm_llm_credits(ctx: Ctx) -> None:
    ctx.sim.llm.default = QuotaExceeded(category="MaxGatewayCredits")


def _arm_tts_quota(ctx: Ctx) -> None:
    ctx.sim.tts.default = QuotaExceeded(category="MaxGatewayCredits", quota_type="tts")


def _arm_rate_limit(ctx: Ctx) -> None:
    ctx.sim.llm.default = RateLimited()


def _arm_client_cancel(ctx: Ctx) -> None:
    # A mid-stream 499 before any word: livekit wraps it in APIConnectionError (it only
    # swallows an HTTP-status 499), retries it like any connection error, and counts the
    # failed turn toward max_unrecoverable_errors (nothing was spoken to reset it).
    ctx.sim.llm.default = StreamError(
        after_chunks=0, body={"message": "Client closed request", "code": 499}
    )


def _recover(ctx: Ctx) -> None:
    ctx.sim.llm.default = HEALTHY


def _error_status(r: RecordedRequest) -> bool:
    return r.status is not None and r.status >= 400


def _any_llm(r: RecordedRequest) -> bool:
    return r.endpoint == "llm"


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    description: str
    arm: Callable[[Ctx], None] | None
    failing_turn: TurnFn
    failing_turns: int
    terminal: bool
    """The provider will not come back: the call should end, audibly."""
    is_failure: Callable[[RecordedRequest], bool] = _error_status
    recover: Callable[[Ctx], None] | None = None
    """Called before one last healthy turn (transient scenarios)."""
    tts: bool = True
    stt: bool = False


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "llm_credits",
        "LLM credits exhausted",
        "One healthy turn, then every LLM request gets the gateway's 429 "
        "`MaxGatewayCredits`; the caller tries 4 more times.",
        _arm_llm_credits,
        text_turn,
        4,
        terminal=True,
    ),
    Scenario(
        "tts_quota",
        "TTS quota exhausted",
        "One healthy turn, then every TTS request gets the gateway's 429 "
        "`MaxGatewayCredits` (quota_type tts); the LLM keeps answering; 4 more turns.",
        _arm_tts_quota,
        text_turn,
        4,
        terminal=True,
    ),
    Scenario(
        "stt_auth",
        "STT auth failure (401)",
        "One healthy turn, then each caller utterance fails at the STT with a 401 "
        f"(injected `STTError`, recoverable=False); 4 utterances, {PATIENCE:g} s apart.",
        None,
        stt_failing_turn,
        4,
        terminal=True,
        stt=True,
    ),
    Scenario(
        "realtime_quota",
        "Realtime quota (no TTS)",
        "Session without TTS. One healthy turn, then the realtime model reports a fatal "
        "gateway `MaxGatewayCredits` error (injected `RealtimeModelError`, "
        "recoverable=False) and stops; the caller waits 3 turns.",
        None,
        realtime_turn,
        3,
        terminal=True,
        tts=False,
    ),
    Scenario(
        "rate_limit_storm",
        "Rate-limit storm",
        "One healthy turn, 3 turns where every LLM request gets a gateway RPM 429 "
        "(`RateLimited`, retried 3× by livekit), then the gateway recovers and one more "
        "turn is answered. Must not close.",
        _arm_rate_limit,
        text_turn,
        3,
        terminal=False,
        is_failure=_error_status,
        recover=_recover,
    ),
    Scenario(
        "client_cancel_storm",
        "Client-cancel storm",
        "One healthy turn, 4 turns whose LLM stream breaks with a mid-stream 499 "
        "(`StreamError`), then one healthy turn. A 499 is ours, not the provider's: "
        "must not count nor close.",
        _arm_client_cancel,
        text_turn,
        4,
        terminal=False,
        is_failure=_any_llm,
        recover=_recover,
    ),
)


# -- one run ------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one (scenario, contender) run measured. Times are seconds."""

    scenario: str
    contender: str
    repeat: int
    latency: float | None
    """First failing provider response (or injection) -> first audio frame after it."""
    audio_after: float
    """Seconds of audio the caller heard after the failure."""
    dead_turns: int
    requests: int
    """Provider requests (LLM + TTS) from the failure on."""
    failed_requests: int
    close_after: float | None
    """Failure -> CloseEvent, when the session closed by itself."""
    closed: bool
    reason: str | None
    wall: float
    errors: int
    """``"error"`` events the session emitted."""


def make_session(
    sim: GatewaySimulator, scenario: Scenario
) -> tuple[AgentSession[Any], openai.STT | None]:
    recognizer = openai.STT(base_url=sim.base_url, api_key=API_KEY) if scenario.stt else None
    session: AgentSession[Any] = AgentSession(
        llm=openai.LLM(model="gpt-4o-mini", base_url=sim.base_url, api_key=API_KEY),
        tts=(
            openai.TTS(
                model="gpt-4o-mini-tts", voice="alloy", base_url=sim.base_url, api_key=API_KEY
            )
            if scenario.tts
            else NOT_GIVEN
        ),
        stt=recognizer if recognizer is not None else NOT_GIVEN,
        vad=None,
        turn_handling={"turn_detection": "manual"},
    )
    return session, recognizer


async def _until_quiet(out: CaptureAudioOutput, closed: asyncio.Event, since: float) -> None:
    """Until the agent has been silent for PAUSE (and PATIENCE since ``since`` if it never
    spoke), or the session closed."""
    deadline = since + TURN_TIMEOUT
    while not closed.is_set() and time.monotonic() < deadline:
        now = time.monotonic()
        last = out.segments[-1] if out.segments else None
        spoke = last is not None and last.started_at >= since
        if last is None or last.finished_at is not None:
            ended = last.finished_at if last is not None and last.finished_at else 0.0
            if spoke and now - max(ended, since) >= PAUSE:
                return
            if not spoke and now - since >= PATIENCE and now - ended >= PAUSE:
                return
        await asyncio.sleep(0.02)


async def run_once(scenario: Scenario, contender: Contender, repeat: int) -> Outcome:
    wall0 = time.monotonic()
    async with GatewaySimulator() as sim:
        sim.llm.default = HEALTHY
        session, recognizer = make_session(sim, scenario)
        closed = asyncio.Event()
        close: list[tuple[float, CloseEvent]] = []
        errors: list[object] = []
        harness_closing = False

        def on_close(ev: CloseEvent) -> None:
            if not harness_closing:
                close.append((time.monotonic(), ev))
            closed.set()

        contender.attach(session)  # first: the guard must be the first "error" listener
        session.on("close", on_close)
        session.on("error", errors.append)
        out = CaptureAudioOutput(realtime=True)
        session.output.audio = out
        ctx = Ctx(sim=sim, session=session, recognizer=recognizer)
        await session.start(Agent(instructions="You are a helpful assistant. Be brief."))
        if contender.presynth and session.tts is not None:
            # Presynthesis runs in the background from guard(); a real worker has been up
            # for a while before credits run out, so wait for it (bounded).
            async with asyncio.timeout(10):
                while presynthesized(session.tts, DEFAULT_ERROR_MESSAGE) is None:  # noqa: ASYNC110 - no event to wait on
                    await asyncio.sleep(0.02)

        turns: list[tuple[float, float, int]] = []

        async def turn(fn: TurnFn, i: int) -> None:
            before, start = len(out.frames), time.monotonic()
            await fn(ctx, i)
            await _until_quiet(out, closed, start)
            turns.append((start, time.monotonic(), len(out.frames) - before))

        await turn(text_turn, 0)
        if scenario.arm is not None:
            scenario.arm(ctx)
        ctx.armed_at = time.monotonic()
        failing_from = len(turns)
        for i in range(scenario.failing_turns):
            if closed.is_set():
                break
            await turn(scenario.failing_turn, failing_from + i)
        failing_until = len(turns)
        if scenario.recover is not None and not closed.is_set():
            # A close decided in the last failing turn takes a moment to be announced
            # (teardown first): do not talk into a session that is going away.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECOVERY_PAUSE):
                    await closed.wait()
        if scenario.recover is not None and not closed.is_set():
            scenario.recover(ctx)
            ctx.recovered_at = time.monotonic()
            await turn(text_turn, len(turns))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_WAIT if scenario.terminal else SETTLE):
                await closed.wait()
        if not closed.is_set():
            harness_closing = True
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await session.aclose()

    failure_at = _failure_time(ctx, scenario)
    frames_after = [f for f in out.frames if failure_at is not None and f.at > failure_at]
    requests = [
        r
        for r in sim.requests
        if r.endpoint != "other" and failure_at is not None and r.at >= failure_at - 0.001
    ]
    closed_at, ev = close[0] if close else (None, None)
    return Outcome(
        scenario=scenario.key,
        contender=contender.key,
        repeat=repeat,
        latency=(frames_after[0].at - failure_at) if frames_after and failure_at else None,
        audio_after=sum(f.frame.duration for f in frames_after),
        dead_turns=sum(1 for _, _, n in turns[failing_from:failing_until] if n == 0),
        requests=len(requests),
        failed_requests=sum(
            1 for r in requests if r.at < ctx.recovered_at and scenario.is_failure(r)
        ),
        close_after=(closed_at - failure_at) if closed_at and failure_at else None,
        closed=ev is not None,
        reason=ev.reason.value if ev is not None else None,
        wall=time.monotonic() - wall0,
        errors=len(errors),
    )


def _failure_time(ctx: Ctx, scenario: Scenario) -> float | None:
    if ctx.injected_at is not None:
        return ctx.injected_at
    for r in ctx.sim.requests:
        if r.at >= ctx.armed_at and scenario.is_failure(r):
            return r.responded_at
    return None


# -- all runs -----------------------------------------------------------------------------


async def run_all(
    scenarios: Sequence[Scenario],
    contenders: Sequence[Contender],
    *,
    repeat: int,
    stock_repeat: int,
    jobs: int,
    progress: Callable[[Outcome, int, int], None] | None = None,
) -> list[Outcome]:
    """Every (scenario, contender, repeat), ``jobs`` runs at a time, in shuffled order.

    Shuffling (seeded) spreads each contender over quiet and busy moments alike, so the
    concurrency adds noise to every column, not a bias to one.
    """
    plan = [
        (s, c, r)
        for s in scenarios
        for c in contenders
        for r in range(stock_repeat if c.key == "stock" else repeat)
    ]
    random.Random(6012).shuffle(plan)
    # Longest first (stock runs take ~17 s), so the tail of the schedule is short runs.
    plan.sort(key=lambda p: p[1].key != "stock")
    gate = asyncio.Semaphore(jobs)
    done: list[Outcome] = []

    async def one(s: Scenario, c: Contender, r: int) -> None:
        async with gate:
            outcome = await run_once(s, c, r)
        done.append(outcome)
        if progress is not None:
            progress(outcome, len(done), len(plan))

    await asyncio.gather(*(one(*p) for p in plan))
    return done


# -- summary ------------------------------------------------------------------------------


def _median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def _duration(x: float) -> str:
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def _secs(xs: Sequence[float | None], n: int) -> str:
    present = [x for x in xs if x is not None]
    if not present:
        return "never"
    text = _duration(_median(present))
    return text if len(present) == n else f"{text} ({len(present)}/{n})"


def summarise(
    outcomes: Sequence[Outcome], scenario: Scenario, contenders: Sequence[Contender]
) -> list[tuple[str, ...]]:
    """Rows (metric, value per contender) of medians for one scenario."""
    by: dict[str, list[Outcome]] = {c.key: [] for c in contenders}
    for o in outcomes:
        if o.scenario == scenario.key and o.contender in by:
            by[o.contender].append(o)

    def row(label: str, fmt: Callable[[list[Outcome]], str]) -> tuple[str, ...]:
        return (label, *(fmt(by[c.key]) if by[c.key] else "—" for c in contenders))

    def reason(runs: list[Outcome]) -> str:
        reasons = Counter(o.reason or "not closed" for o in runs)
        ((top, k),) = reasons.most_common(1)
        return top if k == len(runs) else f"{top} ({k}/{len(runs)})"

    rows = [
        ("", *(c.title for c in contenders)),
        ("runs", *(str(len(by[c.key])) for c in contenders)),
    ]
    if scenario.terminal:
        rows.append(
            row(
                "failure → first farewell frame", lambda rs: _secs([o.latency for o in rs], len(rs))
            )
        )
    rows += [
        row(
            "audio heard after failure", lambda rs: f"{_median([o.audio_after for o in rs]):.1f} s"
        ),
        row("dead user turns", lambda rs: f"{_median([o.dead_turns for o in rs]):g}"),
        row(
            "provider requests after failure (failed)",
            lambda rs: (
                f"{_median([o.requests for o in rs]):g} "
                f"({_median([o.failed_requests for o in rs]):g})"
            ),
        ),
        row("error events", lambda rs: f"{_median([o.errors for o in rs]):g}"),
        row("failure → close", lambda rs: _secs([o.close_after for o in rs], len(rs))),
        row("closed by itself", lambda rs: f"{sum(o.closed for o in rs)}/{len(rs)}"),
        row("close reason", reason),
    ]
    return rows


def expectation_failures(outcomes: Sequence[Outcome]) -> list[str]:
    """What the guard must do, checked on every guarded run."""
    problems = []
    terminal = {s.key for s in SCENARIOS if s.terminal}
    for o in outcomes:
        if not o.contender.startswith("guard"):
            continue
        where = f"{o.contender} in {o.scenario} (run {o.repeat + 1})"
        if o.scenario in terminal:
            if not o.closed or o.reason != "error":
                problems.append(f"{where}: did not close with reason=error ({o.reason})")
            if o.latency is None:
                problems.append(f"{where}: no farewell audio")
        elif o.closed:
            problems.append(f"{where}: closed ({o.reason}) in a transient scenario")
    return problems
