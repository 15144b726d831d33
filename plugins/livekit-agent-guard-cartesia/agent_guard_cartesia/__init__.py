"""livekit-agent-guard classifiers for Cartesia: credits (402) and concurrency limits.

Usage::

    import agent_guard, agent_guard_cartesia

    classifiers = (*agent_guard_cartesia.CLASSIFIERS, *agent_guard.DEFAULT_CLASSIFIERS)
"""

from importlib.metadata import PackageNotFoundError, version

from agent_guard_cartesia._classifier import CLASSIFIERS, classify

try:
    __version__ = version("livekit-agent-guard-cartesia")
except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
    __version__ = "0.0.0"

__all__ = ["CLASSIFIERS", "__version__", "classify"]
