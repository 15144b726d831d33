"""Guarded drop-in replacements for livekit's llm/tts/stt ``FallbackAdapter``.

::

    from agent_guard.fallback import FallbackLLM, FallbackTTS

    session = AgentSession(llm=FallbackLLM([primary, backup]), tts=FallbackTTS([a, b]), ...)

What livekit 1.8.9's adapters get wrong, all three alike:

* any ``Exception`` from an instance marks it unavailable, a client cancellation
  included (a mid-stream 499 arrives as ``APIConnectionError``, an STT 499 as
  ``APIStatusError``);
* after every request an unavailable instance did not serve, a recovery probe replays
  the whole request: a real, billed request, sent even to an account out of credits;
* when every instance failed, the error raised carries no cause, and the instances' own
  ``"error"`` events are not forwarded (only ``metrics_collected`` is), so the session,
  and the guard, hear "all LLMs failed" and nothing else.

The adapters here keep livekit's loop, ordering, ``sticky`` and ``*_availability_changed``
events, and change only those three things: every instance failure is classified with
:func:`agent_guard.classify` and kept (``.verdicts``), and a ``CLIENT_CANCELLED`` one
never marks the instance unavailable; probes go only to instances whose last verdict is
transient, no sooner than ``probe_backoff=`` (a tenacity wait strategy) allows, and an
instance with a terminal verdict (credits, auth) gets no request at all any more, for
the adapter's lifetime (build one per session, as livekit's examples do); and
:class:`AllFailedError` carries each verdict and, as ``__cause__``, the decisive
instance's own error. :func:`agent_guard.classifiers.carried_verdict` (in the default
chain) turns it into the session-level Verdict.

The seams. livekit decides "unavailable", "probe" and "all failed" inline, in the
``_run`` loop of each adapter's stream (or ``_recognize_impl`` for STT's
``recognize()``), and exposes no hook. The only places it hands over one instance at a
time are private methods, so those are what the subclasses override:

* ``llm.fallback_adapter.FallbackLLMStream``: ``_try_generate(*, llm, check_recovery)``
  (one instance's attempt, an async generator: where a failure is first seen),
  ``_try_recovery(llm)`` (starts a probe), ``_run()`` (raises the all-failed error);
* ``tts.fallback_adapter.FallbackChunkedStream`` and ``FallbackSynthesizeStream``: the same
  three, as ``_try_synthesize(*, tts, [input_ch, conn_options,] recovering)``,
  ``_try_recovery(tts)`` and ``_run(output_emitter)``;
* ``stt.fallback_adapter.FallbackAdapter``: ``_try_recognize(*, stt, buffer, language,
  conn_options, recovering)``, ``_try_recovery(*, stt, buffer, language, conn_options)``,
  ``_recognize_impl(buffer, *, language, conn_options)``, and ``emit()``, the one place
  both STT paths pass through when they publish an instance as unavailable (streaming
  opens instance streams inline, with no per-instance method, so STT failures are read
  from the instances' public ``"error"`` events instead);
  ``FallbackRecognizeStream``: ``_try_recovery(stt)`` and ``_run()``;
* the adapters' ``_llm_instances``/``_tts_instances``/``_stt_instances`` and
  ``_status[i].available``, and the streams' constructors, called with livekit's
  keywords from the public ``chat()``/``synthesize()``/``stream()``.

``tests/test_fallback.py::TestSeams`` fails if any of these is renamed or reshaped.

Outer retries: the session hands its ``llm_conn_options``/``tts_conn_options``
(``max_retry=3`` by default) to the adapter, so livekit's retry loop reruns the whole round
of instances up to three more times. That stays for transient failures, since it is the
only pause between rounds and what the session asked for, but an :class:`AllFailedError`
whose instances all failed terminally is ``retryable=False``, so the loop stops after the
first round, and a rerun round never sends a request to a terminal instance nor an extra
probe. Retries *inside* an instance (``max_retry_per_tts=2``, ``max_retry_per_stt=1`` by
default) happen in the instance's own loop before the adapter sees any failure, so they
are spent whatever the verdict: pass 0 to fail over at once.
"""

from __future__ import annotations

from agent_guard.fallback._causes import AllFailedError
from agent_guard.fallback._llm import FallbackLLM
from agent_guard.fallback._stt import FallbackSTT
from agent_guard.fallback._tts import FallbackTTS

__all__ = ["AllFailedError", "FallbackLLM", "FallbackSTT", "FallbackTTS"]

# Public under the package's name, as httpx does: livekit labels every model
# "<module>.<class>" in its logs, metrics and error events, and that should not name a
# private module.
for _public in (AllFailedError, FallbackLLM, FallbackSTT, FallbackTTS):
    _public.__module__ = __name__
del _public
