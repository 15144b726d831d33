"""livekit-agent-guard classifiers for Anthropic: credit balance, spend limits, overload.

Usage::

    import agent_guard, agent_guard_anthropic

    classifiers = (*agent_guard_anthropic.CLASSIFIERS, *agent_guard.DEFAULT_CLASSIFIERS)
"""

from importlib.metadata import PackageNotFoundError, version

from agent_guard_anthropic._classifier import CLASSIFIERS, classify

try:
    __version__ = version("livekit-agent-guard-anthropic")
except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
    __version__ = "0.0.0"

__all__ = ["CLASSIFIERS", "__version__", "classify"]
