"""Stock livekit-agents vs agent-guard, side by side, fully offline.

Both sessions are real ``AgentSession``s with the real ``livekit-plugins-openai`` LLM
and TTS, talking HTTP to the bundled gateway simulator. Each has one normal exchange,
then the LiveKit Inference credits run out (HTTP 429 ``MaxGatewayCredits``) and the
user keeps talking. Both scenarios run concurrently in one process.

Run: ``make demo`` (or ``python -m examples.demo [--out DIR]``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livekit.agents import Agent, AgentSession, CloseEvent, ErrorEvent
from livekit.plugins import openai

from agent_guard import Guard, guard
from agent_guard.testing import CaptureAudioOutput, GatewaySimulator, QuotaExceeded, Reply

USER_TURNS = ["Hi, can you help me book a table?", "Hello?", "Are you there?", "Hello??", "Hi?"]
PAUSE_BETWEEN_TURNS = 0.2
TURN_TIMEOUT = 30.0


@dataclass
class Run:
    """What one scenario recorded (times are time.monotonic())."""

    name: str
    sim: GatewaySimulator
    out: CaptureAudioOutput
    guard: Guard | None = None
    events: list[tuple[float, str]] = field(default_factory=list)
    turns: list[tuple[float, float, int]] = field(default_factory=list)
    """(started, ended, frames captured during the turn) per user turn."""
    errors: list[ErrorEvent] = field(default_factory=list)
    close: CloseEvent | None = None
    closed_at: float | None = None

    def note(self, text: str) -> None:
        self.events.append((time.monotonic(), text))

    # -- measured figures -------------------------------------------------------------

    @property
    def quota_at(self) -> float | None:
        """When the simulator sent the first quota response."""
        for r in self.sim.requests_for("llm"):
            if r.status == 429:
                return r.responded_at
        return None

    @property
    def first_farewell_frame(self) -> float | None:
        q = self.quota_at
        if q is None:
            return None
        return next((f.at for f in self.out.frames if f.at > q), None)

    @property
    def dead_turns(self) -> int:
        """User turns after credits ran out that got no audio at all."""
        q = self.quota_at
        return sum(
            1 for start, _, frames in self.turns if q is not None and start >= q - 1 and frames == 0
        )

    @property
    def failed_requests(self) -> int:
        return sum(1 for r in self.sim.requests_for("llm") if r.status == 429)


async def scenario(run: Run, session: AgentSession[Any]) -> None:
    closed = asyncio.Event()

    def on_error(ev: ErrorEvent) -> None:
        run.errors.append(ev)
        err = ev.error
        verdict = ""
        decision = run.guard.decision if run.guard is not None else None
        if decision is not None and not err.recoverable:
            # The guard shows an app's listeners the deciding error once more, final,
            # before it closes (as livekit's last attempt would have been).
            v = decision.verdict
            verdict = f" -> verdict {v.category.value}{' (terminal)' if v.terminal else ''}"
        status = getattr(err.error, "status_code", "?")
        run.note(f"error event: {err.type} HTTP {status}, recoverable={err.recoverable}{verdict}")

    def on_close(ev: CloseEvent) -> None:
        run.close, run.closed_at = ev, time.monotonic()
        err = f", error={type(ev.error.error).__name__}" if ev.error is not None else ""
        run.note(f"session closed: reason={ev.reason.value}{err}")
        closed.set()

    session.on("error", on_error)
    session.on("close", on_close)

    session.output.audio = run.out
    await session.start(Agent(instructions="You are a friendly restaurant host. Be brief."))

    for i, text in enumerate(USER_TURNS):
        if closed.is_set():
            break
        if i == 1:
            run.sim.llm.default = QuotaExceeded(category="MaxGatewayCredits")
            run.note("-- LiveKit Inference credits run out --")
        before = len(run.out.frames)
        start = time.monotonic()
        run.note(f"user turn {i + 1}: {text!r}")
        with contextlib.suppress(Exception):
            async with asyncio.timeout(TURN_TIMEOUT):
                await session.run(user_input=text)
        # A caller waits for the agent to finish speaking (or the call to end), then
        # pauses briefly before talking again.
        await _first(closed.wait(), _quiet(run.out, since=start), limit=TURN_TIMEOUT)
        run.turns.append((start, time.monotonic(), len(run.out.frames) - before))
        if not closed.is_set() and len(run.out.frames) == before:
            run.note(f"user turn {i + 1}: the agent said nothing (dead turn)")
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(TURN_TIMEOUT):
            await closed.wait()
    if not closed.is_set():
        await session.aclose()


async def _quiet(out: CaptureAudioOutput, *, since: float) -> None:
    """Until the agent has been silent for PAUSE_BETWEEN_TURNS (since ``since`` at least)."""
    while True:
        last = out.segments[-1] if out.segments else None
        if last is None or last.finished_at is not None:
            ended = max(since, last.finished_at if last and last.finished_at else 0.0)
            if time.monotonic() - ended >= PAUSE_BETWEEN_TURNS:
                return
        await asyncio.sleep(0.02)


async def _first(*aws: Any, limit: float) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


def make_session(sim: GatewaySimulator) -> AgentSession[Any]:
    return AgentSession(
        llm=openai.LLM(model="gpt-4o-mini", base_url=sim.base_url, api_key="sk-demo"),
        tts=openai.TTS(
            model="gpt-4o-mini-tts", voice="alloy", base_url=sim.base_url, api_key="sk-demo"
        ),
        vad=None,
        turn_handling={"turn_detection": "manual"},
    )


def timeline(run: Run) -> str:
    t0 = run.events[0][0] if run.events else 0.0
    lines = [f"== {run.name} =="]
    q = run.quota_at
    marks = list(run.events)
    for r in run.sim.requests:
        if r.endpoint != "other":  # the plugin's connection warm-up (GET /v1/models)
            marks.append((r.at, f"provider request: {r.endpoint} -> HTTP {r.status}"))
    if (f := run.first_farewell_frame) is not None:
        marks.append((f, "first farewell audio frame"))
    for at, text in sorted(marks, key=lambda m: m[0]):
        rel = f"{at - t0:7.3f}s"
        if q is not None and at >= q:
            rel += f"  (quota +{at - q:6.3f}s)"
        lines.append(f"  {rel}  {text}")
    return "\n".join(lines)


def summary(runs: list[Run]) -> str:
    def secs(v: float | None) -> str:
        return "never" if v is None else f"{v:.3f} s"

    rows: list[tuple[str, ...]] = [("", *(r.name for r in runs))]
    rows.append(
        (
            "quota response -> first farewell frame",
            *(
                secs(
                    None
                    if (f := r.first_farewell_frame) is None or (q := r.quota_at) is None
                    else f - q
                )
                for r in runs
            ),
        )
    )
    rows.append(("dead user turns", *(str(r.dead_turns) for r in runs)))
    rows.append(
        ("provider requests after credits ran out", *(str(r.failed_requests) for r in runs))
    )
    rows.append(("error events seen by the app's listener", *(str(len(r.errors)) for r in runs)))
    rows.append(
        (
            "quota response -> session closed",
            *(
                secs(None if r.closed_at is None or (q := r.quota_at) is None else r.closed_at - q)
                for r in runs
            ),
        )
    )
    rows.append(("close reason", *((r.close.reason.value if r.close else "-") for r in runs)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


async def main(out_dir: Path) -> list[Run]:
    async with GatewaySimulator() as stock_sim, GatewaySimulator() as guarded_sim:
        for sim in (stock_sim, guarded_sim):
            sim.llm.script(Reply("Of course! For how many people, and when?"))
        stock = Run("stock livekit-agents", stock_sim, CaptureAudioOutput())
        guarded = Run("agent-guard", guarded_sim, CaptureAudioOutput())
        stock_session = make_session(stock_sim)
        guarded_session = make_session(guarded_sim)
        guarded.guard = guard(guarded_session)  # the one line agent-guard asks for
        print("Running both scenarios concurrently (stock takes ~17 s to give up)...\n")
        await asyncio.gather(scenario(stock, stock_session), scenario(guarded, guarded_session))

    runs = [stock, guarded]
    for run in runs:
        print(timeline(run), end="\n\n")
    print(summary(runs), end="\n\n")
    wav = out_dir / "farewell.wav"
    await asyncio.to_thread(_write_farewell, guarded, wav)
    print(f"Guarded farewell audio written to {wav}")
    return runs


def _write_farewell(run: Run, wav: Path) -> None:
    wav.parent.mkdir(parents=True, exist_ok=True)
    run.out.write_wav(wav, since=run.quota_at)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("out"), help="where to write WAV files")
    args = parser.parse_args()
    # livekit logs each retry and the close at WARNING/ERROR; the timeline says it better.
    logging.basicConfig(level=logging.CRITICAL)
    asyncio.run(main(args.out))


if __name__ == "__main__":
    cli()
