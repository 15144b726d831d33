"""A kit for provider-plugin authors: table-driven fixtures, verdict checks, a totality property.

Every ``agent_guard_<provider>`` plugin tests the same things: each documented provider
failure (a :class:`ProviderFixture`) classifies as expected without leaking the API key;
the classifier answers a Verdict or ``None`` whatever it is given; and, for LLM plugins,
the real livekit plugin, answered the fixture by a local stand-in (:class:`FixtureServer`),
raises what the fixture reconstructs. This module holds that scaffolding once, so a
plugin's tests keep only what is specific to its provider::

    from agent_guard.testing.plugins import assert_fixture_verdict, check_classifier_is_total

    @pytest.mark.parametrize("fx", FIXTURES, ids=[fx.id for fx in FIXTURES])
    def test_verdict(fx: ProviderFixture) -> None:
        assert_fixture_verdict(fx, agent_guard_acme.CLASSIFIERS, provider="acme", secrets=[KEY])

    def test_classifier_is_total() -> None:
        check_classifier_is_total(agent_guard_acme.classify, kind=Kind.TTS, label=TTS_LABEL)

hypothesis is a test-only dependency: it is imported inside :func:`error_bodies` and
:func:`check_classifier_is_total`, never by ``import agent_guard.testing.plugins``. The checks raise
``AssertionError`` themselves (not ``assert``), so they hold under ``python -O`` too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from aiohttp import web
from livekit.agents import APIConnectOptions, APIError, APIStatusError
from livekit.agents.llm import LLM, ChatContext, LLMError

from agent_guard._classify import classify
from agent_guard._verdict import Category, Kind, Verdict
from agent_guard.classifiers import DEFAULT_CLASSIFIERS, Classifier, facts_from

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = [
    "FixtureServer",
    "ProviderFixture",
    "assert_fixture_verdict",
    "assert_llm_error_verdict",
    "assert_verdict_matches",
    "check_classifier_is_total",
    "error_bodies",
]

#: A leaked run of this many characters of a secret counts as a leak of the secret.
SECRET_FRAGMENT = 12

#: Keys the provider classifiers look for, so generated bodies reach their branches.
_BODY_KEYS = (
    "error",
    "type",
    "code",
    "status",
    "message",
    "details",
    "detail",
    "err_code",
    "violations",
    "quotaId",
    "@type",
    "retryDelay",
    "status_code",
    "error_code",
)
_STATUSES = (-1, 200, 400, 401, 402, 403, 429, 499, 500, 503, 529)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderFixture:
    """One provider failure: the wire data, where it is documented, and the verdict we expect.

    ``error()`` returns the exception livekit emits for it, built by ``build`` (one function
    per livekit error path). A plugin whose fixtures all share one path can subclass and
    override :meth:`error` instead; a subclass may also give ``kind``/``label`` defaults or
    narrow ``status``/``body`` (``status: int``).
    """

    id: str
    source: str
    """Where the body (or its shape) is documented or was reported."""
    kind: Kind
    label: str
    """livekit's model label, e.g. ``"livekit.plugins.openai.llm.LLM"``."""
    status: int | None
    body: Mapping[str, Any] | None
    expected: Category
    terminal: bool
    counts: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)
    build: Callable[[Self], BaseException] | None = None

    def error(self: Self) -> BaseException:
        """The exception livekit emits for this failure."""
        build = self.build
        if build is None:
            raise NotImplementedError(
                f"{type(self).__name__} {self.id!r}: pass build= or override error()"
            )
        return build(self)


def _check(condition: bool, fixture: ProviderFixture, message: str) -> None:
    if not condition:
        raise AssertionError(f"{fixture.id}: {message}")


def _strings(value: object) -> Iterator[str]:
    """Every string in a JSON-able value (keys included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _fragments(secret: str) -> set[str]:
    if len(secret) <= SECRET_FRAGMENT:
        return {secret}
    return {
        secret[start : start + SECRET_FRAGMENT]
        for start in range(len(secret) - SECRET_FRAGMENT + 1)
    }


def assert_verdict_matches(
    verdict: Verdict,
    fixture: ProviderFixture,
    *,
    provider: str | None,
    secrets: Iterable[str] = (),
) -> None:
    """Fail unless ``verdict`` is what ``fixture`` expects, and leaks none of ``secrets``.

    Checked: category, terminal, counts, kind, provider and status code; a
    ``QUOTA_EXHAUSTED`` verdict carries quota info naming the fixture's kind as
    ``quota_type``; and no run of :data:`SECRET_FRAGMENT` characters of a secret appears in
    the detail, hint, public message or anywhere in :meth:`Verdict.as_dict`.

    Raises:
        AssertionError: naming the fixture and what differs.
    """
    got = (verdict.category, verdict.terminal, verdict.counts)
    want = (fixture.expected, fixture.terminal, fixture.counts)
    _check(got == want, fixture, f"(category, terminal, counts) is {got}, expected {want}")
    _check(verdict.kind is fixture.kind, fixture, f"kind is {verdict.kind}")
    _check(verdict.provider == provider, fixture, f"provider is {verdict.provider!r}")
    _check(
        verdict.status_code == fixture.status,
        fixture,
        f"status_code is {verdict.status_code}, expected {fixture.status}",
    )
    if fixture.expected is Category.QUOTA_EXHAUSTED:
        quota_type = verdict.quota.quota_type if verdict.quota is not None else None
        _check(
            quota_type == fixture.kind.value,
            fixture,
            f"quota_type is {quota_type!r}, expected {fixture.kind.value!r}",
        )
    fragments = {fragment for secret in secrets for fragment in _fragments(secret)}
    texts = {
        "detail": verdict.detail,
        "hint": verdict.hint or "",
        "public_message": verdict.public_message,
        "as_dict()": "\n".join(_strings(verdict.as_dict())),
    }
    for name, text in texts.items():
        leaked = sorted(fragment for fragment in fragments if fragment in text)
        _check(not leaked, fixture, f"{name} leaks a secret: {leaked[:1]}")


def assert_fixture_verdict(
    fixture: ProviderFixture,
    classifiers: Sequence[Classifier],
    *,
    provider: str | None,
    secrets: Iterable[str] = (),
) -> Verdict:
    """Classify ``fixture.error()`` with ``classifiers`` before the defaults, and check it.

    See :func:`assert_verdict_matches` for what is checked.

    Returns:
        The verdict, for checks specific to the fixture.
    """
    verdict = classify(
        fixture.error(),
        kind=fixture.kind,
        classifiers=(*classifiers, *DEFAULT_CLASSIFIERS),
        label=fixture.label,
    )
    assert_verdict_matches(verdict, fixture, provider=provider, secrets=secrets)
    return verdict


def error_bodies(*, extra_keys: Sequence[str] = ()) -> SearchStrategy[object]:
    """A hypothesis strategy for JSON-like error bodies, keyed like providers' errors.

    Dict keys are drawn from the keys provider classifiers read (plus ``extra_keys``) or
    are arbitrary text, so generated bodies reach the classifiers' branches.
    """
    from hypothesis import strategies as st

    keys = st.sampled_from([*_BODY_KEYS, *extra_keys]) | st.text(max_size=8)
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=24),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
        max_leaves=24,
    )


def check_classifier_is_total(
    classifier: Classifier,
    *,
    kind: Kind,
    label: str | None,
    messages: SearchStrategy[str] | None = None,
    max_examples: int = 150,
) -> None:
    """Fail unless ``classifier`` answers a Verdict or ``None`` for whatever error it gets.

    Runs a hypothesis property over livekit ``APIStatusError``\\ s with arbitrary bodies
    (:func:`error_bodies`), messages (``messages``, default any short text), statuses, and
    with or without an ``APIError`` cause carrying the same body.

    Raises:
        AssertionError: the classifier returned something else (hypothesis shows the
            smallest example); whatever the classifier raised, likewise.
    """
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=max_examples, deadline=None)
    @given(
        body=error_bodies(),
        message=st.text(max_size=40) if messages is None else messages,
        status=st.sampled_from(_STATUSES),
        cause=st.booleans(),
    )
    def classifier_is_total(body: object, message: str, status: int, cause: bool) -> None:
        error = APIStatusError(message, status_code=status, body=body)
        if cause:
            error.__cause__ = APIError(message, body=body)
        verdict = classifier(facts_from(error, kind=kind, label=label))
        if not (verdict is None or isinstance(verdict, Verdict)):
            raise AssertionError(f"the classifier answered {verdict!r}")

    classifier_is_total()


#: The fixture type a FixtureServer answers (a plugin's subclass, for its own ``respond``).
F = TypeVar("F", bound=ProviderFixture)


async def _json_answer(request: web.Request, fixture: ProviderFixture) -> web.StreamResponse:
    if fixture.status is None:
        raise AssertionError(f"{fixture.id}: a fixture without a status has no HTTP answer")
    return web.json_response(fixture.body, status=fixture.status, headers=dict(fixture.headers))


class FixtureServer(Generic[F]):
    """A local stand-in for a provider API: each POST to ``path`` answers the next fixture.

    The answer is the fixture's status, JSON body and headers; pass ``respond`` for any
    other (an SSE stream, say). Point the real livekit plugin at :attr:`url`::

        async with FixtureServer[Fixture]("/v1/chat/completions") as server:
            server.queue(fx)
            llm = openai.LLM(base_url=f"{server.url}/v1", api_key=API_KEY)
    """

    def __init__(
        self,
        path: str,
        *,
        respond: Callable[[web.Request, F], Awaitable[web.StreamResponse]] = _json_answer,
    ) -> None:
        self._path = path
        self._respond = respond
        self._fixtures: deque[F] = deque()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, once started."""
        if self._url is None:
            raise RuntimeError("FixtureServer is not running: use `async with`")
        return self._url

    def queue(self, *fixtures: F) -> None:
        """Answer the next requests with ``fixtures``, in order."""
        self._fixtures.extend(fixtures)

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post(self._path, self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self._url = f"http://{host}:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = self._url = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if not self._fixtures:
            return web.json_response({"error": "FixtureServer: nothing queued"}, status=500)
        return await self._respond(request, self._fixtures.popleft())


async def assert_llm_error_verdict(
    llm: LLM[Any],
    fixture: ProviderFixture,
    classifiers: Sequence[Classifier],
    *,
    provider: str | None,
    secrets: Iterable[str] = (),
) -> Verdict:
    """Fail unless a real livekit LLM's error for ``fixture`` gets the fixture's verdict.

    Runs one chat turn, without retries, against ``llm`` (pointed at a stand-in that
    answers ``fixture``, see :class:`FixtureServer`). The turn must raise (an
    ``APIStatusError`` when the fixture has a status) and emit exactly one ``"error"``
    event, labelled ``fixture.label``. The event is classified inside the emit, as the
    guard's hook does: once the stream re-raises the error (``LLMStream.__anext__``),
    Python replaces its ``__context__`` and the SDK error holding the response headers is
    gone. The verdict must pass :func:`assert_verdict_matches` and agree with
    ``fixture.error()``'s on category and quota, so the reconstruction cannot drift from
    what the plugin does. ``llm`` is left open.

    Returns:
        The verdict of the real plugin's error.
    """
    chain = (*classifiers, *DEFAULT_CLASSIFIERS)
    verdicts: list[Verdict] = []
    labels: list[str] = []

    def on_error(event: LLMError) -> None:
        labels.append(event.label)
        verdicts.append(classify(event.error, kind=Kind.LLM, classifiers=chain, label=event.label))

    raises = APIError if fixture.status is None else APIStatusError
    chat_ctx = ChatContext()
    chat_ctx.add_message(role="user", content="hello")
    llm.on("error", on_error)
    try:
        async with llm.chat(
            chat_ctx=chat_ctx, conn_options=APIConnectOptions(max_retry=0)
        ) as stream:
            async for _ in stream:
                pass
    except raises:
        pass
    else:
        raise AssertionError(f"{fixture.id}: the chat turn did not raise {raises.__name__}")
    finally:
        llm.off("error", on_error)
    _check(labels == [fixture.label], fixture, f"error events labelled {labels}")
    (verdict,) = verdicts
    assert_verdict_matches(verdict, fixture, provider=provider, secrets=secrets)
    rebuilt = classify(fixture.error(), kind=fixture.kind, classifiers=chain, label=fixture.label)
    _check(
        (verdict.category, verdict.quota) == (rebuilt.category, rebuilt.quota),
        fixture,
        f"the real plugin's verdict {verdict.category}, {verdict.quota} differs from the "
        f"reconstruction's {rebuilt.category}, {rebuilt.quota}",
    )
    return verdict
