"""livekit-agent-guard classifiers for Google Gemini: daily quota, prepay, capacity, bad keys.

Usage::

    import agent_guard, agent_guard_google

    classifiers = (*agent_guard_google.CLASSIFIERS, *agent_guard.DEFAULT_CLASSIFIERS)
"""

from importlib.metadata import PackageNotFoundError, version

from agent_guard_google._classifier import CLASSIFIERS, classify

try:
    __version__ = version("livekit-agent-guard-google")
except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
    __version__ = "0.0.0"

__all__ = ["CLASSIFIERS", "__version__", "classify"]
