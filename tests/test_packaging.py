"""Distribution names, versions and the core range each plugin pins."""

from __future__ import annotations

import importlib
from importlib.metadata import requires, version

import pytest
from packaging.requirements import Requirement

import agent_guard

PROVIDERS = ("anthropic", "assemblyai", "cartesia", "deepgram", "elevenlabs", "google")


class TestNames:
    def test_core_version_is_the_distributions(self) -> None:
        """`__version__` is read from `livekit-agent-guard`, not from PyPI's `agent-guard`."""
        assert agent_guard.__version__ == version("livekit-agent-guard")

    @pytest.mark.parametrize("provider", PROVIDERS)
    def test_plugin_version_and_core_range(self, provider: str) -> None:
        """Each plugin has a __version__ and accepts only a compatible 0.1 core."""
        module = importlib.import_module(f"agent_guard_{provider}")
        assert module.__version__ == version(f"livekit-agent-guard-{provider}")
        (core,) = [
            r
            for r in map(Requirement, requires(f"livekit-agent-guard-{provider}") or [])
            if r.name == "livekit-agent-guard" and r.marker is None
        ]
        assert core.specifier.contains(agent_guard.__version__, prereleases=True)
        assert not core.specifier.contains("0.2.0")

    @pytest.mark.parametrize("provider", PROVIDERS)
    def test_extra_installs_the_plugin(self, provider: str) -> None:
        """`pip install livekit-agent-guard[<provider>]` brings the provider's classifier."""
        reqs = [Requirement(r) for r in requires("livekit-agent-guard") or []]
        extra = [r.name for r in reqs if r.marker and r.marker.evaluate({"extra": provider})]
        every = [r.name for r in reqs if r.marker and r.marker.evaluate({"extra": "all"})]
        assert extra == [f"livekit-agent-guard-{provider}"]
        assert extra[0] in every

    def test_openai_is_the_cores(self) -> None:
        """No separate OpenAI distribution: the core classifies OpenAI-compatible hosts."""
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module("agent_guard_openai")

    @pytest.mark.parametrize("provider", PROVIDERS)
    def test_fixtures_are_not_in_the_package(self, provider: str) -> None:
        """Fixtures import the testing kit: they stay beside the tests, out of the wheel."""
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(f"agent_guard_{provider}.fixtures")
