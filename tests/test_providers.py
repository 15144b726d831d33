"""Provider classifiers are found once installed and run only on their own errors.

With every plugin of this repository installed (the workspace installs them all), the
default ``classify(error, kind=...)`` (no ``classifiers=``) must give each plugin
fixture its documented verdict; dispatch by the model label must run one provider's
classifier, not all of them; a provider whose plugin is missing is named once.
"""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent_guard import Category, Kind, Verdict, classify
from agent_guard.classifiers import (
    DISTRIBUTIONS,
    ENTRY_POINT_GROUP,
    ErrorFacts,
    _providers,
    by_provider,
    facts_from,
    installed_providers,
)
from agent_guard.testing.plugins import ProviderFixture, assert_verdict_matches

PROVIDERS = ("anthropic", "assemblyai", "cartesia", "deepgram", "elevenlabs", "google")


def _fixtures() -> list[tuple[str, ProviderFixture]]:
    cases = []
    for provider in PROVIDERS:
        module = importlib.import_module(f"{provider}_fixtures")
        cases += [(provider, fx) for fx in module.FIXTURES]
    return cases


FIXTURES = _fixtures()


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Replace the installed classifiers with recording ones for two providers."""
    calls: dict[str, list[str]] = {"anthropic": [], "google": []}

    def recorder(name: str) -> Any:
        def classify(facts: ErrorFacts) -> Verdict | None:
            calls[name].append(facts.label or "")
            return None

        return classify

    installed = {name: (recorder(name),) for name in calls}
    monkeypatch.setattr(_providers, "_installed", installed)
    monkeypatch.setattr(_providers, "_every", tuple(c for (c,) in installed.values()))
    monkeypatch.setattr(_providers, "_missing_logged", set())
    return calls


class TestDiscovery:
    def test_every_plugin_is_installed_by_entry_point(self) -> None:
        """Each plugin registers its classify under its livekit plugin name."""
        installed = installed_providers()
        for provider in PROVIDERS:
            plugin = importlib.import_module(f"agent_guard_{provider}")
            assert installed[provider] == (plugin.classify,)
        assert set(DISTRIBUTIONS) == set(PROVIDERS)

    def test_a_broken_entry_point_is_logged_not_raised(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A plugin that fails to import costs its own provider only."""
        broken = EntryPoint("broken", "no_such_module_agent_guard:classify", ENTRY_POINT_GROUP)
        good = EntryPoint("anthropic", "agent_guard_anthropic:classify", ENTRY_POINT_GROUP)
        monkeypatch.setattr(_providers, "entry_points", lambda group: [broken, good])
        with capture_logs() as logs:
            installed = installed_providers(reload=True)
        monkeypatch.undo()
        installed_providers(reload=True)
        assert list(installed) == ["anthropic"]
        assert logs == [
            {
                "event": "agent_guard.classifier_not_loaded",
                "log_level": "warning",
                "provider": "broken",
                "entry_point": "no_such_module_agent_guard:classify",
                "error_type": "ModuleNotFoundError",
            }
        ]


class TestCorrectByDefault:
    @pytest.mark.parametrize(
        ("provider", "fx"), FIXTURES, ids=[f"{p}-{fx.id}" for p, fx in FIXTURES]
    )
    def test_plugin_fixture_without_configuration(self, provider: str, fx: ProviderFixture) -> None:
        """No classifiers= argument: the installed plugin answers its own errors."""
        verdict = classify(fx.error(), kind=fx.kind, label=fx.label)
        assert_verdict_matches(verdict, fx, provider=provider)

    def test_explicit_classifiers_override_discovery(self) -> None:
        """An explicit chain replaces the default one: no plugin runs."""
        (fx,) = [fx for p, fx in FIXTURES if p == "anthropic" and fx.id == "credit_balance_too_low"]
        default = classify(fx.error(), kind=fx.kind, label=fx.label)
        explicit = classify(fx.error(), kind=fx.kind, label=fx.label, classifiers=())
        assert default.category is Category.QUOTA_EXHAUSTED
        assert explicit.category is Category.BAD_REQUEST


class TestDispatch:
    def test_label_picks_one_provider(self, registry: dict[str, list[str]]) -> None:
        """An Anthropic model's error runs the Anthropic classifier only."""
        label = "livekit.plugins.anthropic.llm.LLM"
        classify(RuntimeError("x"), kind=Kind.LLM, label=label)
        assert registry == {"anthropic": [label], "google": []}

    def test_no_label_tries_every_provider(self, registry: dict[str, list[str]]) -> None:
        """Without a label, each installed classifier looks for its own body shape."""
        classify(RuntimeError("x"), kind=Kind.LLM)
        assert registry == {"anthropic": [""], "google": [""]}

    def test_openai_compatible_label_runs_no_plugin(self, registry: dict[str, list[str]]) -> None:
        """OpenAI and the gateway are the core's: no plugin is consulted."""
        for label in ("livekit.plugins.openai.llm.LLM", "livekit.agents.inference.llm.LLM"):
            classify(RuntimeError("x"), kind=Kind.LLM, label=label)
        assert registry == {"anthropic": [], "google": []}

    def test_missing_plugin_is_named_once(self, registry: dict[str, list[str]]) -> None:
        """An ElevenLabs error without the ElevenLabs plugin: one log line per process."""
        label = "livekit.plugins.elevenlabs.tts.TTS"
        with capture_logs() as logs:
            for _ in range(3):
                classify(RuntimeError("x"), kind=Kind.TTS, label=label)
            classify(RuntimeError("x"), kind=Kind.LLM, label="my_app.CustomLLM")
        assert logs == [
            {
                "event": "agent_guard.classifier_not_installed",
                "log_level": "warning",
                "provider": "elevenlabs",
                "kind": "tts",
                "install": "pip install 'livekit-agent-guard[elevenlabs]'",
            }
        ]

    def test_core_rules_still_run_after_a_declining_plugin(
        self, registry: dict[str, list[str]]
    ) -> None:
        """The provider's classifier first, then the core's OpenAI-compatible rules."""
        body = {"error": {"message": "x", "type": "insufficient_quota", "code": None}}
        facts = facts_from(
            _body_error(body), kind=Kind.LLM, label="livekit.plugins.anthropic.llm.LLM"
        )
        verdict = by_provider(facts)
        assert verdict is not None and verdict.category is Category.QUOTA_EXHAUSTED
        assert len(registry["anthropic"]) == 1


def _body_error(body: dict[str, Any]) -> BaseException:
    from livekit.agents import APIStatusError

    return APIStatusError("Error code: 429", status_code=429, body=body)
