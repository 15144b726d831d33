"""Shared fixtures: a real AgentSession, the real openai plugin, the bundled simulator."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from livekit import rtc
from livekit.agents import (
    NOT_GIVEN,
    Agent,
    AgentSession,
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    llm,
)
from livekit.agents.voice.agent_session import SessionConnectOptions
from livekit.plugins import openai
from xdist.remote import Producer
from xdist.scheduler import LoadScopeScheduling, Scheduling

from agent_guard import Guard
from agent_guard.fleet import _registry as fleet_registry
from agent_guard.testing import (
    CaptureAudioOutput,
    GatewaySimulator,
    openai_status_error,
    openai_stream_error,
)

#: A key-shaped secret: tests assert it never leaks anywhere.
SECRET_KEY = "sk-proj-TESTSECRET0123456789abcdefABCDEF"


def pytest_configure(config: pytest.Config) -> None:
    # Every openai SDK client (two per session, ~800 in a run) builds an SSL context, and a
    # CA *file* (SSL_CERT_FILE, or OpenSSL's default bundle) is parsed each time: ~45 ms
    # each, a sixth of the suite's CPU. Nothing here speaks TLS (the simulator is plain
    # HTTP on loopback); the system's CA *directory* trusts the same roots and is read
    # lazily, at a handshake. Worker processes the tests start inherit it.
    os.environ.pop("SSL_CERT_FILE", None)
    os.environ["SSL_CERT_DIR"] = ssl.get_default_verify_paths().openssl_capath


#: Tests that share a fixture wider than a test (the Redis server and its worker processes;
#: one worker process logging at two levels): one pytest-xdist worker runs each group.
ONE_WORKER = ("tests/fleet/test_redis.py", "tests/test_log.py::TestLivekitWorker")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> Scheduling | None:
    """``--dist loadgroup`` (``make unit``): a test is a unit of work, except the groups.

    pytest-xdist's own grouping reads ``xdist_group`` marks through node ids, which pytest
    9.2 no longer lets it change (pytest-dev/pytest-xdist#1386): the groups are named here.
    """
    if config.getvalue("dist") != "loadgroup":
        return None

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return next((g for g in ONE_WORKER if nodeid.startswith(g + "::")), nodeid)

    return ByGroup(config, log)


#: The slowest tests' modules, longest first: the workers are handed tests in this order, so
#: these start at once and the workers finish together.
SLOW_FIRST = (
    "tests/test_log.py",  # a worker process per log level (class fixture)
    "tests/test_classify_fuzz.py",
    "tests/reliability/test_soak.py",
    "tests/test_examples.py",
    "tests/watchdog/test_stt.py",
    "tests/watchdog/test_llm.py",
    "tests/watchdog/test_exemptions.py",
    "tests/watchdog/test_tts.py",
    "tests/watchdog/test_realtime.py",
    "tests/reliability/test_faults.py",
    "tests/test_failsafe.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A stable sort: each module's tests keep their order.
    rank = {path: i for i, path in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


def pytest_collection_finish(session: pytest.Session) -> None:
    # Everything imported so far (livekit, openai, the provider SDKs, hypothesis) lives
    # until the end: out of the collector's way, a full collection (the leak checks run
    # several) takes a few milliseconds instead of ~0.5 s.
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _fresh_fleet() -> Iterator[None]:
    """Every test starts with no fleet breaker: the default ``"memory"`` one is per process."""
    yield
    fleet_registry.reset()


@pytest.fixture
async def sim() -> AsyncIterator[GatewaySimulator]:
    async with GatewaySimulator() as s:
        yield s


def make_session(
    sim: GatewaySimulator,
    *,
    tts: bool = True,
    retry_interval: float = 2.0,
    max_retry: int = 3,
    stt: Any = None,
) -> AgentSession[Any]:
    """A room-less, text-driven session with the real openai LLM and TTS over HTTP."""
    conn = APIConnectOptions(max_retry=max_retry, retry_interval=retry_interval, timeout=5.0)
    return AgentSession(
        llm=openai.LLM(model="gpt-4o-mini", base_url=sim.base_url, api_key=SECRET_KEY),
        tts=(
            openai.TTS(
                model="gpt-4o-mini-tts", voice="alloy", base_url=sim.base_url, api_key=SECRET_KEY
            )
            if tts
            else NOT_GIVEN
        ),
        stt=stt,
        vad=None,
        turn_handling={"turn_detection": "manual"},
        conn_options=SessionConnectOptions(llm_conn_options=conn, tts_conn_options=conn),
    )


async def start(session: AgentSession[Any], *, realtime: bool = False) -> CaptureAudioOutput:
    """Attach a capturing audio output and start ``session`` with a brief agent."""
    out = CaptureAudioOutput(realtime=realtime)
    session.output.audio = out
    await session.start(Agent(instructions="Be brief."))
    return out


TURN_TIMEOUT = 15.0


async def turn(session: AgentSession[Any], text: str) -> None:
    """One user turn; a failing turn may raise, the test looks at effects instead."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(TURN_TIMEOUT):
            await session.run(user_input=text)


async def never_starts() -> AsyncIterator[rtc.AudioFrame]:
    """A farewell recording (a factory's frames) whose first frame never comes."""
    await asyncio.Event().wait()
    yield rtc.AudioFrame(bytes(640), 16000, 1, 320)


def chat_texts(session: AgentSession[Any]) -> list[str]:
    return [m.text_content or "" for m in session.history.items if isinstance(m, llm.ChatMessage)]


def spoken(sim: GatewaySimulator, *, after: float = 0.0) -> str:
    """What TTS was asked to say after ``after`` (livekit sends one request per sentence)."""
    return " ".join(
        str((r.json or {}).get("input")) for r in sim.requests_for("tts") if r.at > after
    )


def heard(g: Guard) -> str | None:
    """The words of the farewell the caller heard (``None``: nothing was played).

    Whether they came from TTS, the pre-synthesis cache or a recording:
    ``g.farewell.source`` says which.
    """
    return None if g.farewell is None else g.farewell.text


def gateway_quota_error(quota_type: str = "llm") -> APIError:
    """A gateway credits error as the realtime/STT websocket paths deliver it (body kept)."""
    return APIError(
        "inference quota exceeded",
        body={
            "type": "inference_quota_exceeded",
            "category": "MaxGatewayCredits",
            "quota_type": quota_type,
            "error": "quota exceeded, category: MaxGatewayCredits",
        },
        retryable=False,
    )


def rate_limit() -> APIStatusError:
    """The gateway's transient RPM 429, as livekit's openai plugin emits it."""
    return openai_status_error(
        429,
        json={
            "type": "inference_quota_exceeded",
            "category": "MaxConcurrentGatewayLLMRpm",
            "quota_type": "llm",
            "error": "request/min rate limit exceeded",
        },
    )


def client_cancel() -> APIConnectionError:
    """A mid-stream 499 as livekit emits it: the SSE error on ``__cause__``."""
    return openai_stream_error({"message": "Client closed request", "code": 499}, retryable=True)
