"""livekit-agent-guard classifiers for Anthropic: credit balance, spend limits, overload.

Installed with ``pip install livekit-agent-guard[anthropic]``; the core's default chain finds
it (entry point ``agent_guard.classifiers``) and runs it on this provider's errors.
"""

from importlib.metadata import PackageNotFoundError, version

from agent_guard_anthropic._classifier import CLASSIFIERS, classify

try:
    __version__ = version("livekit-agent-guard-anthropic")
except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
    __version__ = "0.0.0"

__all__ = ["CLASSIFIERS", "__version__", "classify"]
