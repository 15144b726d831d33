"""Generate docs/verdicts.md: every shape the guard knows, with the Verdict it gets by default.

Every row is ``classify(error, kind=..., label=...)`` with the default chain (no
``classifiers=``), so the table is what a user gets out of the box with the plugins of
this repository installed; the last column says which install a row needs. The errors come
from the same builders and fixtures the tests use: the ``agent_guard.testing`` builders
(raised through the real OpenAI SDK and aiohttp, wrapped as livekit wraps them), the
core's ``tests/openai_fixtures.py`` and each plugin's ``tests/<provider>_fixtures.py``,
loaded by file path since fixtures stay out of the wheels. tests/test_docs.py fails when
the committed file differs from what this prints. Regenerate with::

    .venv/bin/python -m docs.verdict_table --write
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Protocol

import aiohttp
from livekit.agents import APIConnectionError, APIStatusError, APITimeoutError

from agent_guard import Kind, StallError, Verdict, classify
from agent_guard.testing import (
    gateway_quota_body,
    openai_status_error,
    openai_stream_error,
    raised,
    ws_handshake_error,
)

PLUGINS = ("anthropic", "google", "elevenlabs", "cartesia", "deepgram", "assemblyai")
OUT = Path(__file__).with_name("verdicts.md")
ROOT = Path(__file__).resolve().parent.parent
GATEWAY_LABEL = "livekit.agents.inference.llm.LLM"
OPENAI_LABEL = "livekit.plugins.openai.llm.LLM"
CORE = "core"
Row = tuple[str, str, str, str, str, str, str]
Case = tuple[str, str, int | None, Kind, str | None, Callable[[], BaseException]]


class _Fixture(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> Kind: ...
    @property
    def label(self) -> str: ...
    @property
    def status(self) -> int | None: ...
    def error(self) -> BaseException: ...


def _row(provider: str, case: str, status: int | None, verdict: Verdict, needs: str) -> Row:
    return (
        provider,
        f"`{case}`",
        "—" if status is None else str(status),
        f"`{verdict.category.value}`",
        "yes" if verdict.terminal else "no",
        "yes" if verdict.counts else "no",
        needs,
    )


def _load(name: str, path: Path) -> ModuleType:
    """A fixtures module by file path (registered under ``name``, as pytest imports it)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"no fixtures module at {path}")
    module = importlib.util.module_from_spec(spec)
    # Registered before running: dataclasses resolve their module's annotations by name.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _plugin_fixtures(provider: str) -> Sequence[_Fixture]:
    path = (
        ROOT / "plugins" / f"livekit-agent-guard-{provider}" / "tests" / f"{provider}_fixtures.py"
    )
    fixtures: Sequence[_Fixture] = _load(f"{provider}_fixtures", path).FIXTURES
    return fixtures


def _openai_fixtures() -> Sequence[_Fixture]:
    fixtures: Sequence[_Fixture] = _load(
        "tests.openai_fixtures", ROOT / "tests" / "openai_fixtures.py"
    ).FIXTURES
    return fixtures


def _gateway(category: str) -> Callable[[], BaseException]:
    return lambda: openai_status_error(429, json=gateway_quota_body(category))


def _status(status: int) -> Callable[[], BaseException]:
    return lambda: openai_status_error(status, json={"error": {"message": "x"}}, retryable=False)


def _ws_close(code: int) -> Callable[[], BaseException]:
    def build() -> BaseException:
        msg = aiohttp.WSMessage(aiohttp.WSMsgType.CLOSE, code, "closing")
        return raised(
            APIStatusError(
                "connection closed unexpectedly", status_code=code, body=f"{msg.data=} {msg.extra=}"
            )
        )

    return build


def _exception_group() -> BaseException:
    inner = openai_status_error(
        429, json={"error": {"message": "x", "type": "insufficient_quota", "code": None}}
    )
    return BaseExceptionGroup("unhandled errors in a TaskGroup", [asyncio.CancelledError(), inner])


def _core_cases() -> list[Case]:
    llm = Kind.LLM
    cases: list[Case] = [
        ("livekit", category, 429, llm, GATEWAY_LABEL, _gateway(category))
        for category in (
            "MaxGatewayCredits",
            "MaxBargeInRequests",
            "MaxEotRequests",
            "MaxConcurrentGatewayLLMRpm",
            "MaxConcurrentGatewayLLMTpm",
            "MaxConcurrentGatewaySTT",
            "MaxConcurrentGatewayTTS",
            "MaxBargeInRPM",
            "SomeFutureCategory",
        )
    ]
    cases.append(
        (
            "livekit",
            "ws_handshake_429",
            429,
            Kind.STT,
            "livekit.agents.inference.stt.STT",
            lambda: ws_handshake_error(429, headers={"X-LiveKit-Inference-Credits-Limit": "1000"}),
        )
    )
    cases += [
        ("http", f"status_{status}", status, llm, None, _status(status))
        for status in (400, 401, 402, 403, 404, 408, 422, 429, 499, 500, 502, 503, 529)
    ]
    cancelled = {"message": "Client closed request", "code": 499}
    cases += [
        (
            "http",
            "retry_after_header_86400",
            429,
            llm,
            None,
            lambda: openai_status_error(429, json={"error": "x"}, headers={"retry-after": "86400"}),
        ),
        (
            "http",
            "retry_after_header_20",
            429,
            llm,
            None,
            lambda: openai_status_error(429, json={"error": "x"}, headers={"retry-after": "20"}),
        ),
        ("http", "mid_stream_499", None, llm, None, lambda: openai_stream_error(cancelled)),
        (
            "http",
            "mid_stream_503",
            None,
            llm,
            None,
            lambda: openai_stream_error({"message": "x", "code": 503}),
        ),
        ("http", "exception_group_quota_429", 429, Kind.STT, None, _exception_group),
        ("http", "cancelled", None, llm, None, asyncio.CancelledError),
        ("http", "timeout", None, llm, None, APITimeoutError),
        # A hung stream's read timeout: CancelledError at the bottom of the chain.
        (
            "http",
            "read_timeout_of_a_hung_stream",
            None,
            llm,
            None,
            lambda: raised(
                APITimeoutError(), cause=raised(TimeoutError(), cause=asyncio.CancelledError())
            ),
        ),
        (
            "watchdog",
            "llm_no_first_token",
            None,
            llm,
            None,
            lambda: StallError(Kind.LLM, "no first token", waited=4.0),
        ),
        (
            "http",
            "connection_refused",
            None,
            llm,
            None,
            lambda: raised(APIConnectionError(), cause=ConnectionRefusedError("refused")),
        ),
        ("http", "plain_exception", None, llm, None, lambda: RuntimeError("boom")),
    ]
    for status in (401, 402, 403):
        cases.append(
            ("websocket", f"handshake_{status}", status, Kind.STT, None, _handshake(status))
        )
    for code in (1006, 1011, 1013):
        cases.append(("websocket", f"close_{code}", None, Kind.STT, None, _ws_close(code)))
    return cases


def _handshake(status: int) -> Callable[[], BaseException]:
    return lambda: ws_handshake_error(status, url="wss://stt.example.com/v1/listen")


def rows() -> list[Row]:
    """Core cases, OpenAI(-compatible) fixtures, then each plugin's fixtures: default chain."""
    table = [
        _row(provider, case, status, classify(build(), kind=kind, label=label), CORE)
        for provider, case, status, kind, label, build in _core_cases()
    ]
    for fx in _openai_fixtures():
        verdict = classify(fx.error(), kind=fx.kind, label=fx.label)
        table.append(_row("openai", fx.id, fx.status, verdict, CORE))
    for provider in PLUGINS:
        for fx in _plugin_fixtures(provider):
            verdict = classify(fx.error(), kind=fx.kind, label=fx.label)
            table.append(_row(provider, fx.id, fx.status, verdict, f"`[{provider}]`"))
    return table


def render() -> str:
    header = ("provider", "case", "status", "category", "terminal", "counts", "needs")
    lines = [
        "# Verdicts",
        "",
        "Generated by `python -m docs.verdict_table --write` from the errors the tests build",
        "(through the real SDKs and livekit's own wrapping); `tests/test_docs.py` keeps it",
        "current. Every row is `classify(error, kind=..., label=...)` with the default chain:",
        "no `classifiers=`. *needs* says what must be installed: `core` rows need only",
        "`livekit-agent-guard`; `[anthropic]` rows need `livekit-agent-guard[anthropic]`",
        "(without it, those errors get the generic HTTP rules). A retry delay over the",
        'policy\'s `retry_horizon` (60 s) is terminal. "—" means no HTTP status reaches the',
        "guard (a websocket close, a mid-stream error, a cancellation); `watchdog` rows are",
        "the stalls the guard itself reports (`GuardPolicy.stall_timeout`).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="Print or write docs/verdicts.md.")
    parser.add_argument("--write", action="store_true", help=f"write {OUT.name}")
    args = parser.parse_args()
    text = render()
    if args.write:
        OUT.write_text(text)
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
