"""agent-guard: LiveKit voice agents that fail audibly and predictably.

Call :func:`guard` once per ``AgentSession``, before ``session.start()``::

    from agent_guard import GuardPolicy, guard

    guard(session, GuardPolicy(farewell_audio="sorry.wav"))
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from agent_guard._classify import classify
from agent_guard._errors import GuardError, PolicyError
from agent_guard._facts import Classifier, ErrorFacts
from agent_guard._fallback import (
    DEFAULT_PROBE_BACKOFF,
    AllFailedError,
    FallbackLLM,
    FallbackSTT,
    FallbackTTS,
    ProbeBackoff,
)
from agent_guard._farewell import DEFAULT_ERROR_MESSAGE, DEFAULT_FAREWELL_AUDIO, FarewellResult
from agent_guard._guard import Decision, Guard, Reason, guard, guarded
from agent_guard._hooks import Hook, VerdictCounter, log_verdict
from agent_guard._install import install, uninstall
from agent_guard._policy import (
    MAX_FAREWELL_TIMEOUT,
    Farewell,
    FarewellAudio,
    GuardPolicy,
    MessageFactory,
    Tolerance,
)
from agent_guard._signal import FrontendSignal
from agent_guard._verdict import Category, Kind, QuotaInfo, Verdict
from agent_guard.classifiers import DEFAULT_CLASSIFIERS

try:
    __version__ = version("livekit-agent-guard")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0.0.0"

__all__ = [
    "DEFAULT_CLASSIFIERS",
    "DEFAULT_ERROR_MESSAGE",
    "DEFAULT_FAREWELL_AUDIO",
    "DEFAULT_PROBE_BACKOFF",
    "MAX_FAREWELL_TIMEOUT",
    "AllFailedError",
    "Category",
    "Classifier",
    "Decision",
    "ErrorFacts",
    "FallbackLLM",
    "FallbackSTT",
    "FallbackTTS",
    "Farewell",
    "FarewellAudio",
    "FarewellResult",
    "FrontendSignal",
    "Guard",
    "GuardError",
    "GuardPolicy",
    "Hook",
    "Kind",
    "MessageFactory",
    "PolicyError",
    "ProbeBackoff",
    "QuotaInfo",
    "Reason",
    "Tolerance",
    "Verdict",
    "VerdictCounter",
    "__version__",
    "classify",
    "guard",
    "guarded",
    "install",
    "log_verdict",
    "uninstall",
]
