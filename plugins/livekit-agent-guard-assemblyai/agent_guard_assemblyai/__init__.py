"""livekit-agent-guard classifiers for AssemblyAI streaming: funds, auth, concurrency.

Installed with ``pip install livekit-agent-guard[assemblyai]``; the core's default chain
finds it (entry point ``agent_guard.classifiers``) and runs it on AssemblyAI's errors.
"""

from importlib.metadata import PackageNotFoundError, version

from agent_guard_assemblyai._classifier import CLASSIFIERS, classify

try:
    __version__ = version("livekit-agent-guard-assemblyai")
except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
    __version__ = "0.0.0"

__all__ = ["CLASSIFIERS", "__version__", "classify"]
