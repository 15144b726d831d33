"""Generate docs/verdicts.md: every category and provider fixture with the Verdict it gets.

The rows come from the same builders and fixtures the tests use (core: the
``agent_guard.testing`` builders, which raise errors through the real OpenAI SDK and
livekit's wrapping; plugins: each plugin's ``tests/<provider>_fixtures.py``, loaded by file
path since fixtures stay out of the wheels), and tests/test_docs.py fails when the committed
file differs from what this prints. Regenerate with::

    .venv/bin/python -m docs.verdict_table --write
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Protocol

from livekit.agents import APIConnectionError, APITimeoutError

from agent_guard import DEFAULT_CLASSIFIERS, Classifier, Kind, Verdict, classify
from agent_guard.testing import (
    gateway_quota_body,
    openai_status_error,
    openai_stream_error,
    raised,
    ws_handshake_error,
)

PROVIDERS = ("openai", "anthropic", "google", "elevenlabs", "cartesia", "deepgram")
OUT = Path(__file__).with_name("verdicts.md")
PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
LABEL = "livekit.agents.inference.llm.LLM"
Row = tuple[str, str, str, str, str, str]


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


def _row(provider: str, case: str, status: int | None, verdict: Verdict) -> Row:
    return (
        provider,
        f"`{case}`",
        "—" if status is None else str(status),
        f"`{verdict.category.value}`",
        "yes" if verdict.terminal else "no",
        "yes" if verdict.counts else "no",
    )


def _gateway(category: str) -> Callable[[], BaseException]:
    return lambda: openai_status_error(429, json=gateway_quota_body(category))


def _status(status: int) -> Callable[[], BaseException]:
    return lambda: openai_status_error(status, json={"error": {"message": "x"}}, retryable=False)


def _handshake() -> BaseException:
    return ws_handshake_error(429, headers={"X-LiveKit-Inference-Credits-Limit": "1000"})


def _fixtures(provider: str) -> ModuleType:
    """``plugins/livekit-agent-guard-<provider>/tests/<provider>_fixtures.py``, by path."""
    name = f"{provider}_fixtures"
    if name in sys.modules:
        return sys.modules[name]
    path = PLUGINS / f"livekit-agent-guard-{provider}" / "tests" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"no fixtures module at {path}")
    module = importlib.util.module_from_spec(spec)
    # Registered before running: dataclasses resolve their module's annotations by name.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _core_cases() -> list[tuple[str, str, int | None, Callable[[], BaseException]]]:
    cases: list[tuple[str, str, int | None, Callable[[], BaseException]]] = []
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
    ):
        cases.append(("livekit", category, 429, _gateway(category)))
    cases.append(("livekit", "ws_handshake_429", 429, _handshake))
    for status in (400, 401, 402, 403, 404, 408, 422, 429, 499, 500, 502, 503, 529):
        cases.append(("http", f"status_{status}", status, _status(status)))
    cancelled = {"message": "Client closed request", "code": 499}
    cases += [
        ("http", "mid_stream_499", None, lambda: openai_stream_error(cancelled)),
        (
            "http",
            "mid_stream_503",
            None,
            lambda: openai_stream_error({"message": "x", "code": 503}),
        ),
        ("http", "cancelled", None, asyncio.CancelledError),
        ("http", "timeout", None, APITimeoutError),
        (
            "http",
            "connection_refused",
            None,
            lambda: raised(APIConnectionError(), cause=ConnectionRefusedError("refused")),
        ),
        ("http", "plain_exception", None, lambda: RuntimeError("boom")),
    ]
    return cases


def rows() -> list[Row]:
    """Core cases first (default chain), then each plugin's fixtures (plugin chain first)."""
    table = [
        _row(p, case, status, classify(build(), kind=Kind.LLM, label=LABEL))
        for p, case, status, build in _core_cases()
    ]
    for provider in PROVIDERS:
        plugin = importlib.import_module(f"agent_guard_{provider}")
        fixtures: Sequence[_Fixture] = _fixtures(provider).FIXTURES
        chain: tuple[Classifier, ...] = (*plugin.CLASSIFIERS, *DEFAULT_CLASSIFIERS)
        for fx in fixtures:
            verdict = classify(fx.error(), kind=fx.kind, classifiers=chain, label=fx.label)
            table.append(_row(provider, fx.id, fx.status, verdict))
    return table


def render() -> str:
    header = ("provider", "case", "status", "category", "terminal", "counts")
    lines = [
        "# Verdicts",
        "",
        "Generated by `python -m docs.verdict_table --write` from the errors the tests build",
        "(through the real SDKs and livekit's own wrapping); `tests/test_docs.py` keeps it",
        "current. `livekit` and `http` rows use `agent_guard.DEFAULT_CLASSIFIERS`; provider",
        'rows put that provider\'s plugin classifiers first. "—" means no HTTP status reaches',
        "the guard (a websocket event, a mid-stream error, a cancellation).",
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
