"""Reading a livekit model object: which account it bills, and which models it is made of.

Every upstream specific the fleet relies on is here, and ``tests/fleet/test_models.py``
fails if a plugin changes any of them:

* ``livekit.plugins.openai`` ``LLM``/``TTS``/``STT`` (and every OpenAI-compatible provider
  built on them) keep an ``openai.AsyncClient`` as ``_client``, whose public ``api_key``
  and ``base_url`` are what each request uses;
* ``livekit.agents.inference`` models (the LiveKit gateway) keep ``_opts.api_key`` (the
  project's key id) and ``_opts.base_url``; their ``_client`` (LLM) carries a short-lived
  token minted from those, which changes every request, so ``_opts`` is read first; other
  plugins following the same ``_opts`` convention (ElevenLabs, Cartesia, ...) are read
  the same way;
* livekit's ``FallbackAdapter``\\ s keep their instances in ``_llm_instances``,
  ``_tts_instances`` and ``_stt_instances``: the fleet gates each instance, so an adapter
  skips an exhausted one and keeps serving from the others.

A model none of this applies to has no account: it is never gated.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from livekit.agents import AgentSession, llm, stt, tts

from agent_guard._verdict import Kind
from agent_guard.fleet._account import Account, account

__all__ = ["account_of", "kind_of_model", "leaves", "session_models"]

_INSTANCES = ("_llm_instances", "_tts_instances", "_stt_instances")


def account_of(model: object, *, key: bytes | None = None) -> Account | None:
    """The account ``model`` bills, or ``None`` if it cannot be read."""
    provider = _str(_safe(model, "provider")) or type(model).__module__
    for holder in (_safe(model, "_opts"), _safe(model, "_client")):
        credential = _str(_safe(holder, "api_key"))
        endpoint = _safe(holder, "base_url")
        if credential and endpoint is not None and (url := str(endpoint)):
            return account(provider, url, credential, key=key)
    return None


def leaves(model: object) -> Iterator[object]:
    """``model`` itself, or the instances of a FallbackAdapter (recursively)."""
    for name in _INSTANCES:
        instances = _safe(model, name)
        if isinstance(instances, list | tuple):
            for instance in instances:
                yield from leaves(instance)
            return
    yield model


def kind_of_model(model: object) -> Kind | None:
    if isinstance(model, llm.LLM):
        return Kind.LLM
    if isinstance(model, tts.TTS):
        return Kind.TTS
    if isinstance(model, stt.STT):
        return Kind.STT
    return None


def session_models(session: AgentSession[Any]) -> Iterator[object]:
    """The models a session will call: its own, and the current agent's overrides."""
    yield from (session.llm, session.tts, session.stt)
    with contextlib.suppress(Exception):
        # Agent(llm=..., tts=...) overrides the session's models for that agent;
        # current_agent raises before start().
        agent = session.current_agent
        yield from (agent.llm, agent.tts, agent.stt)


def _safe(obj: object, name: str) -> Any:
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
