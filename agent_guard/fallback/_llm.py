"""The guarded ``llm.FallbackAdapter`` and its stream."""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from typing import Any

from livekit.agents import llm as _llm
from livekit.agents._exceptions import APIConnectionError
from livekit.agents.llm.fallback_adapter import (
    DEFAULT_FALLBACK_API_CONNECT_OPTIONS,
    FallbackLLMStream,
)
from livekit.agents.llm.tool_context import Tool, ToolChoice
from livekit.agents.types import NOT_GIVEN, APIConnectOptions, NotGivenOr

from agent_guard._verdict import Category, Kind
from agent_guard.classifiers import Classifier
from agent_guard.fallback._health import (
    DEFAULT_PROBE_WAIT,
    Health,
    Observable,
    ProbeWait,
    probe_wait,
)

__all__ = ["FallbackLLM"]


class FallbackLLM(Observable, _llm.FallbackAdapter):
    """livekit's ``llm.FallbackAdapter``, minus false blacklisting, blind probes and lost causes.

    Same constructor as livekit's, plus ``classifiers`` and ``probe_backoff``. Compared with
    the stock adapter:

    * a client cancellation (HTTP 499, also mid-stream, classified ``CLIENT_CANCELLED``)
      ends the request the way livekit's own 499 handling does, quietly with what was
      streamed so far, and leaves the instance available;
    * an instance whose last verdict is terminal is neither probed nor asked again;
      transient ones are probed per ``probe_backoff``;
    * when every instance failed, :class:`~agent_guard.fallback.AllFailedError` carries
      the verdicts and the decisive error.

    Args:
        llm: The instances, primary first.
        attempt_timeout: As livekit's.
        max_retry_per_llm: As livekit's.
        retry_interval: As livekit's.
        retry_on_chunk_sent: As livekit's.
        sticky: As livekit's.
        classifiers: Classify instance failures; ``None`` for
            :data:`agent_guard.classifiers.DEFAULT_CLASSIFIERS`.
        probe_backoff: How long after its ``n``-th consecutive failure a transiently failed
            instance may be probed: any tenacity wait strategy, called with a
            ``tenacity.RetryCallState`` whose ``attempt_number`` is ``n`` and whose
            ``outcome`` is the failure. Probes still start only from a request, as in
            livekit; no timer sends any. ``tenacity.wait_none()`` probes at once, as
            livekit does.
    """

    def __init__(
        self,
        llm: list[_llm.LLM[Any]],
        *,
        attempt_timeout: float = 5.0,
        max_retry_per_llm: int = 0,
        retry_interval: float = 0.5,
        retry_on_chunk_sent: bool = False,
        sticky: bool = False,
        classifiers: Sequence[Classifier] | None = None,
        probe_backoff: ProbeWait = DEFAULT_PROBE_WAIT,
    ) -> None:
        wait = probe_wait(probe_backoff)
        super().__init__(
            llm,
            attempt_timeout=attempt_timeout,
            max_retry_per_llm=max_retry_per_llm,
            retry_interval=retry_interval,
            retry_on_chunk_sent=retry_on_chunk_sent,
            sticky=sticky,
        )
        self._health = Health(
            self._llm_instances, kind=Kind.LLM, classifiers=classifiers, wait=wait
        )
        # Classified while the instance reports it, with the response still on the chain.
        self._witnesses = [(i, self._health.witness(i)) for i in self._llm_instances]
        for instance, witness in self._witnesses:
            instance.on("error", witness)

    async def aclose(self) -> None:
        await super().aclose()
        for instance, witness in self._witnesses:
            instance.off("error", witness)

    def chat(
        self,
        *,
        chat_ctx: _llm.ChatContext,
        tools: list[Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_FALLBACK_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> _llm.LLMStream:
        return _GuardedLLMStream(
            llm=self,
            conn_options=conn_options,
            chat_ctx=chat_ctx,
            tools=tools or [],
            parallel_tool_calls=parallel_tool_calls,
            tool_choice=tool_choice,
            extra_kwargs=extra_kwargs,
        )


class _GuardedLLMStream(FallbackLLMStream):
    def __init__(
        self,
        llm: FallbackLLM,
        *,
        chat_ctx: _llm.ChatContext,
        tools: list[Tool],
        conn_options: APIConnectOptions,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> None:
        super().__init__(
            llm,
            chat_ctx=chat_ctx,
            tools=tools,
            conn_options=conn_options,
            parallel_tool_calls=parallel_tool_calls,
            tool_choice=tool_choice,
            extra_kwargs=extra_kwargs,
        )
        self._health = llm._health
        # Instance errors that left _try_generate in the current round: when chunks were
        # already sent, livekit's _run re-raises one of them itself, and it keeps its cause.
        self._instance_errors: list[BaseException] = []

    async def _try_generate(
        self, *, llm: _llm.LLM[Any], check_recovery: bool = False
    ) -> AsyncIterable[_llm.ChatChunk]:
        if not check_recovery:
            self._health.ensure_askable(llm)
        try:
            async for chunk in super()._try_generate(llm=llm, check_recovery=check_recovery):
                yield chunk
        except Exception as e:
            # CancelledError is a BaseException: _run lets it through untouched already.
            verdict = self._health.failed(llm, e, probe=check_recovery)
            if check_recovery:
                raise  # the probe failed (a cancelled one proves nothing either)
            if verdict.category is Category.CLIENT_CANCELLED:
                # _run would mark the instance unavailable for any exception. End like
                # LLMStream's own 499 path: quietly, keeping what was streamed.
                return
            self._instance_errors.append(e)
            raise
        self._health.served(llm)

    def _try_recovery(self, llm: _llm.LLM[Any]) -> None:
        if self._health.may_probe(llm):
            super()._try_recovery(llm)

    async def _run(self) -> None:
        self._instance_errors = []
        try:
            await super()._run()
        except APIConnectionError as e:
            if any(e is seen for seen in self._instance_errors):
                raise
            rebuilt, cause = self._health.all_failed(e)
            raise rebuilt from cause
