"""Requests a FallbackAdapter sends, and what the guard hears, stock versus guarded.

Run from the repository root::

    python -m benchmarks.fallback_requests

Each scenario runs twice, once behind livekit's stock ``llm``/``tts.FallbackAdapter`` and
once behind agent_guard's ``FallbackLLM``/``FallbackTTS``, in a real room-less
``AgentSession`` guarded by :func:`agent_guard.guard` (classifiers
``(carried_verdict, *DEFAULT_CLASSIFIERS)`` for both), whose models are the real openai
plugins talking HTTP to one ``GatewaySimulator`` per provider. Session options are
livekit's defaults (``max_retry=3``) except a short ``retry_interval``; the guarded
adapters keep their default ``probe_backoff`` (1, 2, 4, ... s, at most 30). The caller
pauses between turns, so that backoff-held probes get their chance as in a real call.

Columns:

* requests to primary / fallback: requests each provider's simulator received for the
  model under test, probes included;
* wasted on terminal instances: requests to an out-of-credits instance after its first
  answer had already said so;
* false blacklistings: ``*_availability_changed(available=False)`` events for an
  instance whose only failures were client cancellations;
* session-level verdicts: what the guard classified from the session's error events,
  and whether it closed.

The table is printed and written to ``benchmarks/results/fallback_requests.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog
from livekit.agents import Agent, AgentSession, APIConnectOptions, llm, tts
from livekit.agents.voice.agent_session import SessionConnectOptions
from livekit.plugins import openai

from agent_guard import GuardPolicy, guard
from agent_guard.classifiers import DEFAULT_CLASSIFIERS, carried_verdict
from agent_guard.fallback import FallbackLLM, FallbackTTS
from agent_guard.testing import (
    CaptureAudioOutput,
    GatewaySimulator,
    HttpError,
    QuotaExceeded,
    Reply,
    StreamError,
)

API_KEY = "sk-bench-not-a-real-key"
TURNS = 4
#: The caller's pause between turns, longer than the default probe backoff's first step.
PAUSE = 1.2
TURN_TIMEOUT = 30.0
CONN = APIConnectOptions(max_retry=3, retry_interval=0.05, timeout=5.0)
POLICY = GuardPolicy(classifiers=(carried_verdict, *DEFAULT_CLASSIFIERS))
RESULTS = Path(__file__).parent / "results" / "fallback_requests.md"

Endpoint = Literal["llm", "tts"]


@dataclass(frozen=True)
class Scenario:
    """A fault script for the primary and fallback providers of one model.

    Attributes:
        name: The table's scenario column.
        endpoint: Which model sits behind the adapter.
        script: Scripts both simulators ``(primary, fallback)``.
        out_of_credits: Instances (0 primary, 1 fallback) answering with exhausted credits.
        cancel_only: Instances whose only failures are client cancellations.
    """

    name: str
    endpoint: Endpoint
    script: Callable[[GatewaySimulator, GatewaySimulator], None]
    out_of_credits: frozenset[int] = frozenset()
    cancel_only: frozenset[int] = frozenset()


def _mid_stream_499(primary: GatewaySimulator, fallback: GatewaySimulator) -> None:
    body = {"message": "Client closed request", "code": 499}
    primary.llm.script(StreamError(after_chunks=1, body=body))
    primary.llm.default = Reply("From primary.")
    fallback.llm.default = Reply("From fallback.")


def _llm_primary_credits(primary: GatewaySimulator, fallback: GatewaySimulator) -> None:
    primary.llm.default = QuotaExceeded()
    fallback.llm.default = Reply("From fallback.")


def _llm_all_credits(primary: GatewaySimulator, fallback: GatewaySimulator) -> None:
    primary.llm.default = QuotaExceeded()
    fallback.llm.default = QuotaExceeded()


def _llm_primary_500_once(primary: GatewaySimulator, fallback: GatewaySimulator) -> None:
    primary.llm.script(HttpError(status=500))
    primary.llm.default = Reply("From primary.")
    fallback.llm.default = Reply("From fallback.")


def _llm_primary_500_always(primary: GatewaySimulator, fallback: GatewaySimulator) -> None:
    primary.llm.default = HttpError(status=500)
    fallback.llm.default = Reply("From fallback.")


def _tts_primary_credits(primary: GatewaySimulator, fallback: GatewaySimulator) -> None:
    primary.tts.default = QuotaExceeded(quota_type="tts")


SCENARIOS = (
    Scenario("LLM mid-stream 499 on primary", "llm", _mid_stream_499, cancel_only=frozenset({0})),
    Scenario(
        "LLM primary out of credits", "llm", _llm_primary_credits, out_of_credits=frozenset({0})
    ),
    Scenario("LLM both out of credits", "llm", _llm_all_credits, out_of_credits=frozenset({0, 1})),
    Scenario("LLM primary 500 once", "llm", _llm_primary_500_once),
    Scenario("LLM primary 500 always", "llm", _llm_primary_500_always),
    Scenario(
        "TTS primary out of credits", "tts", _tts_primary_credits, out_of_credits=frozenset({0})
    ),
)


@dataclass(frozen=True)
class Row:
    scenario: str
    adapter: str
    primary: int
    fallback: int
    wasted: int
    false_blacklistings: int
    verdicts: str


def _summary(verdicts: Counter[str], closed_with: str | None) -> str:
    counted = ", ".join(f"{category} ×{n}" for category, n in verdicts.items()) or "none"
    return f"{counted}; closed: {closed_with}" if closed_with else counted


def _adapter(
    endpoint: Endpoint, guarded: bool, primary: GatewaySimulator, fallback: GatewaySimulator
) -> tuple[llm.LLM[Any] | tts.TTS[Any], list[object]]:
    if endpoint == "llm":
        llms = [
            openai.LLM(model="gpt-4o-mini", base_url=sim.base_url, api_key=API_KEY)
            for sim in (primary, fallback)
        ]
        return (FallbackLLM(list(llms)) if guarded else llm.FallbackAdapter(list(llms))), [*llms]
    voices = [
        openai.TTS(model="gpt-4o-mini-tts", voice="alloy", base_url=sim.base_url, api_key=API_KEY)
        for sim in (primary, fallback)
    ]
    # livekit's default max_retry_per_tts=2 for both: retries inside an instance count too.
    adapter = FallbackTTS(list(voices)) if guarded else tts.FallbackAdapter(list(voices))
    return adapter, [*voices]


async def run(scenario: Scenario, *, guarded: bool) -> Row:
    """Run ``scenario`` for ``TURNS`` caller turns (or until the guard closes the session)."""
    async with (
        GatewaySimulator() as primary,
        GatewaySimulator() as fallback,
        GatewaySimulator() as other,
    ):
        scenario.script(primary, fallback)
        adapter, instances = _adapter(scenario.endpoint, guarded, primary, fallback)
        other_url = other.base_url
        session: AgentSession[Any] = AgentSession(
            llm=adapter
            if isinstance(adapter, llm.LLM)
            else openai.LLM(model="gpt-4o-mini", base_url=other_url, api_key=API_KEY),
            tts=adapter
            if isinstance(adapter, tts.TTS)
            else openai.TTS(
                model="gpt-4o-mini-tts", voice="alloy", base_url=other_url, api_key=API_KEY
            ),
            vad=None,
            turn_handling={"turn_detection": "manual"},
            conn_options=SessionConnectOptions(llm_conn_options=CONN, tts_conn_options=CONN),
        )
        g = guard(session, POLICY)
        blacklisted: Counter[int] = Counter()

        def on_change(ev: Any) -> None:
            model = ev.llm if isinstance(ev, llm.AvailabilityChangedEvent) else ev.tts
            if not ev.available:
                blacklisted[next(i for i, m in enumerate(instances) if m is model)] += 1

        adapter.on(f"{scenario.endpoint}_availability_changed", on_change)
        session.output.audio = CaptureAudioOutput(realtime=False)
        await session.start(Agent(instructions="Be brief."))

        for turn in range(TURNS):
            if g.decision is not None:
                break
            with contextlib.suppress(Exception):
                async with asyncio.timeout(TURN_TIMEOUT):
                    await session.run(user_input=f"turn {turn}")
            await asyncio.sleep(PAUSE)
        if g.decision is not None:
            async with asyncio.timeout(TURN_TIMEOUT):
                await g.wait_closed()
        else:
            await session.aclose()

        counts = [len(sim.requests_for(scenario.endpoint)) for sim in (primary, fallback)]
        decision = g.decision
        return Row(
            scenario=scenario.name,
            adapter="agent_guard" if guarded else "livekit stock",
            primary=counts[0],
            fallback=counts[1],
            wasted=sum(max(counts[i] - 1, 0) for i in scenario.out_of_credits),
            false_blacklistings=sum(blacklisted[i] for i in scenario.cancel_only),
            verdicts=_summary(
                Counter(v.category.value for v in g.verdicts),
                decision.verdict.category.value if decision is not None else None,
            ),
        )


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| scenario | adapter | requests to primary | requests to fallback "
        "| wasted on terminal instances | false blacklistings | session-level verdicts |",
        "|---|---|--:|--:|--:|--:|---|",
    ]
    lines += [
        f"| {r.scenario} | {r.adapter} | {r.primary} | {r.fallback} | {r.wasted} "
        f"| {r.false_blacklistings} | {r.verdicts} |"
        for r in rows
    ]
    return "\n".join(lines)


async def run_all() -> list[Row]:
    """Every scenario, stock then guarded."""
    return [
        await run(scenario, guarded=guarded) for scenario in SCENARIOS for guarded in (False, True)
    ]


def main() -> None:
    # Both adapters log every failure at warning/error level: keep the table readable.
    logging.basicConfig(level=logging.CRITICAL)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    started = time.monotonic()
    markdown = table(asyncio.run(run_all()))
    header = (
        f"# FallbackAdapter requests: livekit stock vs agent_guard\n\n"
        f"{TURNS} caller turns per scenario ({PAUSE} s apart, fewer once the guard closes), "
        f"session max_retry={CONN.max_retry}, retry_interval={CONN.retry_interval} s; "
        "generated by `python -m benchmarks.fallback_requests`.\n\n"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(header + markdown + "\n")
    print(markdown)
    print(f"\n({time.monotonic() - started:.1f} s; written to {RESULTS})")


if __name__ == "__main__":
    main()
