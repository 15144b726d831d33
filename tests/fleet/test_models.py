"""What the fleet reads from livekit model objects: fails first if a plugin changes it."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from livekit.agents import inference, llm, tts
from livekit.plugins import openai

from agent_guard import GuardPolicy, PolicyError
from agent_guard.fleet import FleetBreaker, account, account_of
from agent_guard.fleet._gate import gate
from agent_guard.fleet._models import leaves

KEY = b"deployment"
SECRET = "sk-proj-FINGERPRINTME0123456789abcdef"


def fingerprint(credential: str) -> str:
    return hmac.new(KEY, credential.encode(), hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(lambda: openai.LLM(base_url="http://gw.test/v1/", api_key=SECRET), id="llm"),
        pytest.param(lambda: openai.TTS(base_url="http://gw.test/v1", api_key=SECRET), id="tts"),
        pytest.param(lambda: openai.STT(base_url="http://gw.test/v1", api_key=SECRET), id="stt"),
    ],
)
def test_openai_plugin_models(model: object) -> None:
    """openai plugin: ``_client.api_key`` / ``_client.base_url``."""
    acct = account_of(model(), key=KEY)  # type: ignore[operator]  # a parametrised factory
    assert acct is not None
    assert acct.endpoint == "http://gw.test/v1"
    assert acct.fingerprint == fingerprint(SECRET)
    assert SECRET not in repr(acct) and SECRET not in acct.id


def test_livekit_inference_models() -> None:
    """LiveKit gateway: ``_opts.api_key`` (the project key id) / ``_opts.base_url``."""
    model = inference.LLM("openai/gpt-4o-mini", api_key="APIkeyid", api_secret="s" * 32)
    acct = account_of(model, key=KEY)
    assert acct is not None and acct.fingerprint == fingerprint("APIkeyid")
    voice = inference.TTS("cartesia/sonic-2", api_key="APIkeyid", api_secret="s" * 32)
    same = account_of(voice, key=KEY)
    assert same is not None and same.fingerprint == acct.fingerprint


def test_same_endpoint_and_key_is_one_account_across_llm_and_tts() -> None:
    a = account_of(openai.LLM(base_url="http://gw.test/v1", api_key=SECRET), key=KEY)
    b = account_of(openai.TTS(base_url="http://GW.test/v1/", api_key=SECRET), key=KEY)
    c = account_of(openai.TTS(base_url="http://gw.test/v1", api_key=SECRET + "x"), key=KEY)
    assert a is not None and b is not None and c is not None
    assert a.id == b.id != c.id


def test_fallback_adapters_are_read_instance_by_instance() -> None:
    one = openai.LLM(base_url="http://a.test/v1", api_key=SECRET)
    two = openai.LLM(base_url="http://b.test/v1", api_key=SECRET)
    assert list(leaves(llm.FallbackAdapter([one, two]))) == [one, two]
    voice = openai.TTS(base_url="http://a.test/v1", api_key=SECRET)
    assert list(leaves(tts.FallbackAdapter([voice]))) == [voice]


def test_gate_wraps_the_instance_only() -> None:
    """The gate shadows chat()/synthesize()/stream() on the instance; the class is intact."""
    model = openai.LLM(base_url="http://a.test/v1", api_key=SECRET)
    voice = openai.TTS(base_url="http://a.test/v1", api_key=SECRET)
    breaker = FleetBreaker("test")
    assert gate(model, breaker, classifiers=(), cooldown=1.0) is not None
    assert gate(voice, breaker, classifiers=(), cooldown=1.0) is not None
    assert "chat" in vars(model) and "synthesize" in vars(voice) and "stream" in vars(voice)
    assert "chat" not in vars(openai.LLM(base_url="http://a.test/v1", api_key=SECRET))


def test_account_never_holds_the_credential() -> None:
    acct = account("p", "https://x.test/v1?key=1", SECRET, key=KEY)
    assert SECRET not in str(acct) and acct.endpoint == "https://x.test/v1"


class TestPolicy:
    def test_validation(self, monkeypatch: pytest.MonkeyPatch) -> None:
        assert GuardPolicy().fleet == "memory"
        assert GuardPolicy(fleet=None).fleet is None
        for bad in ("memcached://x", 3):
            with pytest.raises(PolicyError, match="fleet"):
                GuardPolicy(fleet=bad)
        for seconds in (0, -1, float("inf"), 10**9):
            with pytest.raises(PolicyError, match="fleet_cooldown"):
                GuardPolicy(fleet_cooldown=seconds)

    def test_redis_needs_a_deployment_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("AGENT_GUARD_FLEET_KEY", raising=False)
        with pytest.raises(PolicyError, match="AGENT_GUARD_FLEET_KEY"):
            GuardPolicy(fleet="redis://127.0.0.1:6379/0")
        monkeypatch.setenv("AGENT_GUARD_FLEET_KEY", "secret")
        assert GuardPolicy(fleet="redis://127.0.0.1:6379/0").fleet == "redis://127.0.0.1:6379/0"
