"""Redaction of secrets and sanitisation of untrusted provider text.

Provider error messages and bodies routinely echo what they were sent: an OpenAI 401
quotes the rejected key (``Incorrect API key provided: sk-proj-...``), proxies echo
``Authorization`` headers, and query strings carry ``key=``/``api_key=``. Everything
that leaves classification goes through :func:`redact` first.

Both functions are total and linear-time: input is cut to a bounded window *before* any
regex runs, and no pattern nests quantifiers, so hostile input cannot trigger
catastrophic backtracking.
"""

from __future__ import annotations

import html
import re
import unicodedata

__all__ = ["redact", "sanitize_hint"]

REDACTED = "[redacted]"
ELLIPSIS = "…"

# Characters a secret token is made of (base64url, hex, JWT segments). "/" is left out
# on purpose: with it, every URL path with a version number ("/v1/projects/...") would
# read as a token; standard-base64 secrets still lose every 32-char run between slashes.
_TOKEN_CHARS = r"A-Za-z0-9+_=\-"

# ANSI escape sequences go whole: removing only ESC would leave "[31m" behind.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
# Invisible format characters written as escapes, as repr() and JSON print them (livekit's
# APIStatusError str() embeds repr(body)): "sk-abc\\u200bdef" must rejoin too.
_ESCAPED_FORMAT = re.compile(r"\\(?:u(?:00ad|200[b-f]|202[a-e]|206[0-9a-f]|feff)|xad)", re.I)

# Ordered (see _scrub): credential-named fields first, so a key quoted in JSON is
# replaced whole; then the specific shapes, whose readable prefixes must survive the
# generic long-token rule that runs last.
_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*")
# OpenAI (sk-, sk-proj-, sk-svcacct-), Anthropic (sk-ant-api03-), ElevenLabs and
# Cartesia (sk_, sk_car_) keys.
_SK_KEY = re.compile(r"\b(sk[-_])[A-Za-z0-9][A-Za-z0-9_\-]{5,}")
_GOOGLE_KEY = re.compile(r"\bAIza[A-Za-z0-9_\-]{20,}")
# "Token" is matched case-sensitively and only with a long credential: lower-case
# "token" is ordinary provider prose ("LLM token credit quota exceeded").
_AUTH_SCHEME = re.compile(
    r"\b((?i:bearer)\s+|Token\s+(?=[" + _TOKEN_CHARS + r"]{16}))[" + _TOKEN_CHARS + r"./~]{8,}"
)
# `name: value`, `name=value`, `"name": "value"` whose name ends in a credential word. One
# regex pass with a template, no Python callback per field (most fields are harmless): the
# possessive name never backtracks, then one fixed-width lookbehind per credential word
# checks how it ends. A value an earlier rule already redacted is left as is.
_CREDENTIAL_WORDS = (
    "key",
    "secret",
    "token",
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "credential",
    "credentials",
    "authorization",
    "auth",
    "signature",
    "sig",
    "cookie",
    "sessionid",
    "session",
)
_FIELD = re.compile(
    r"(?<![\w\-])([A-Za-z][\w\-]{0,63}+)(?:"
    + "|".join(f"(?<=(?i:{word}))" for word in _CREDENTIAL_WORDS)
    + r""")(["']?\s*[:=]\s*["']?)(?!\[redacted)[^\s"'&,;}\]]+"""
)
# Headers whose whole value is a credential, scheme and all ("Authorization: Bearer x",
# "Basic <b64>", "Cookie: a=1; b=2"): the value runs to the end of the quoted string or
# line, so the field rule cannot stop at the scheme word and leave the token behind.
_CREDENTIAL_HEADER = re.compile(
    r"""(?i)\b((?:proxy-)?authorization|(?:set-)?cookie)(["']?\s*[:=]\s*["']?)[^\r\n"'}\]]{1,1024}"""
)
# scheme://user:password@host
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]{0,15}://[^/\s:@]{0,128}:)[^/\s@]{1,256}@")
# AWS access key ids, and base64 secrets that contain "/" or "+" (AWS secret access keys):
# the generic long-token rule stops at "/" so that URL paths stay readable.
_AWS_KEY_ID = re.compile(r"\b(A[KS]IA)[0-9A-Z]{16}\b")
_SLASHED_SECRET = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/=]{40,}")
# The lookbehind anchors matches at the start of a run: without it a 31-char run would
# be retried from each of its positions.
_LONG_TOKEN = re.compile(r"(?<![" + _TOKEN_CHARS + r"])[" + _TOKEN_CHARS + r"]{32,}")
_SEPARATOR = re.compile(r"""[\s"',;&:=(){}\[\]<>]""")

# Markup an untrusted hint may carry: a hint can reach a TTS (SSML) or a frontend
# (HTML/markdown), so none of it is passed through.
_TAG = re.compile(r"<[^<>]{0,256}>")
_MD_LINK = re.compile(r"!?\[([^\[\]]{0,256})\]\([^()\s]{0,512}\)")
_MD_EMPHASIS = re.compile(r"[*~`]+|(?<!\w)_+|_+(?!\w)")
_MD_LINE_PREFIX = re.compile(r"(?m)^\s{0,3}(?:#{1,6}|>+|[-+]\s)\s*")
_ANGLE = re.compile(r"[<>]")
_WHITESPACE = re.compile(r"\s+")


def window_size(limit: int) -> int:
    """How much of a text :func:`redact` with ``limit`` looks at: the rest is cut."""
    return max(limit, 64) * 4


def _window(text: str, limit: int) -> tuple[str, bool]:
    """Cut ``text`` to a regex-safe window, never ending inside a possible secret.

    A secret cut in half would no longer match its pattern (a 40-char key cut to 31
    chars escapes the 32-char rule), so a cut window drops its trailing fragment.

    Returns:
        The window, and whether anything was cut.
    """
    size = window_size(limit)
    if len(text) <= size:
        return text, False
    window = text[:size]
    match = _SEPARATOR.search(window[::-1])
    return (window[: size - match.start()] if match else ""), True


def _slashed_secret(match: re.Match[str]) -> str:
    # A base64 secret mixes cases and digits; a URL path ("/v1/chat/completions") does not.
    token = match.group(0)
    if ("/" in token or "+" in token) and not token.startswith("/"):
        has = (any(c.isupper() for c in token), any(c.islower() for c in token))
        if all(has) and any(c.isdigit() for c in token):
            return REDACTED
    return token


def _long_token(match: re.Match[str]) -> str:
    # Long identifiers ("inference_quota_exceeded_for_project") are prose, not secrets:
    # a credential of this length mixes letters and digits.
    token = match.group(0)
    has_digit = any(c.isdigit() for c in token)
    has_alpha = any(c.isalpha() for c in token)
    return REDACTED if has_digit and has_alpha else token


def _bound(text: str, limit: int, *, cut: bool = False) -> str:
    if limit <= 0:
        return ""
    if len(text) <= limit and not cut:
        return text
    return text[: limit - 1].rstrip() + ELLIPSIS


def _printable(text: str) -> str:
    """Remove invisible format characters; replace every other non-printable with a space.

    Controls, bidi overrides, zero-width characters and line separators would let
    provider text reorder, hide or forge what a log line shows. Format characters
    (zero-width space and joiners, bidi marks, soft hyphen) are *removed*, not spaced: a
    key split by one must rejoin, or each half escapes the key rules.
    """
    if "\x1b" in text:
        text = _ANSI.sub(" ", text)
    if "\\u" in text or "\\x" in text:
        text = _ESCAPED_FORMAT.sub("", text)
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else ("" if unicodedata.category(c) == "Cf" else " ") for c in text
    )


_LONG_RUN = 32
# What every credential word starts with, and what may follow that stem up to the
# separator ("pass" + "word" + ":"): a superset of where _FIELD can match.
_CREDENTIAL_STEMS = (
    "key",
    "secret",
    "token",
    "pass",
    "pwd",
    "credential",
    "auth",
    "sig",
    "cookie",
    "session",
)
_AFTER_STEM = re.compile(r"""[a-z]{0,9}["']?\s*[:=]""")


def _has_credential_field(lowered: str) -> bool:
    """Whether a credential word may be followed by a separator, as in every _FIELD match.

    ``str.find`` over a handful of stems is far cheaper than the field regex, which would
    otherwise run on every message with a ``:`` in it (all of them).
    """
    for stem in _CREDENTIAL_STEMS:
        start = lowered.find(stem)
        while start != -1:
            if _AFTER_STEM.match(lowered, start + len(stem)):
                return True
            start = lowered.find(stem, start + 1)
    return False


def _scrub(text: str) -> str:
    text = _printable(text)
    lowered = text.lower()
    if "authorization" in lowered or "cookie" in lowered:
        text = _CREDENTIAL_HEADER.sub(r"\1\2" + REDACTED, text)
    if "@" in text and "://" in text:
        text = _URL_USERINFO.sub(r"\1" + REDACTED + "@", text)
    if _has_credential_field(lowered):
        text = _FIELD.sub(r"\1\2" + REDACTED, text)
    # A plain `in` scan is ~10x cheaper than a regex pass, and ordinary error messages
    # carry none of these markers. The redactions above only remove text, so `lowered`
    # still holds every "bearer".
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    if "sk-" in text or "sk_" in text:
        text = _SK_KEY.sub(r"\1" + ELLIPSIS + REDACTED, text)
    if "AIza" in text:
        text = _GOOGLE_KEY.sub("AIza" + ELLIPSIS + REDACTED, text)
    if "bearer" in lowered or "Token" in text:
        text = _AUTH_SCHEME.sub(r"\1" + REDACTED, text)
    if "AKIA" in text or "ASIA" in text:
        text = _AWS_KEY_ID.sub(r"\1" + ELLIPSIS + REDACTED, text)
    # Both rules below need a run of 32+ characters without whitespace: most messages
    # have none.
    if max(map(len, text.split()), default=0) < _LONG_RUN:
        return text
    if "/" in text or "+" in text:
        text = _SLASHED_SECRET.sub(_slashed_secret, text)
    return _LONG_TOKEN.sub(_long_token, text)


def redact(text: str, *, limit: int = 500) -> str:
    """Remove secrets and control characters from ``text`` and bound its length.

    Args:
        text: Provider text (an error message, a body, a header value).
        limit: Maximum length of the result, ellipsis included.

    Returns:
        The text with API keys, bearer/basic credentials, cookies, URL passwords, JWTs,
        credential-named fields (``sig=``, ``passphrase=``, ``auth=``, ...), AWS keys and
        long opaque tokens replaced by ``[redacted]`` (keeping a recognisable prefix such as
        ``sk-…[redacted]``), control characters replaced by spaces, cut to ``limit``.
    """
    window, cut = _window(text, limit)
    return _bound(_scrub(window), limit, cut=cut)


def sanitize_hint(text: str, *, limit: int = 200) -> str:
    """Make an untrusted, provider-supplied hint safe to log, show or speak.

    Args:
        text: The hint as received (for example the LiveKit gateway's ``hint``).
        limit: Maximum length of the result, ellipsis included.

    Returns:
        Plain text: secrets redacted, HTML/XML/SSML tags and markdown removed,
        entities decoded, whitespace collapsed, cut to ``limit``.
    """
    window, cut = _window(text, limit)
    text = html.unescape(window)
    text = _TAG.sub(" ", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _MD_LINE_PREFIX.sub("", text)
    text = _MD_EMPHASIS.sub("", text)
    text = _ANGLE.sub(" ", _scrub(text))
    return _bound(_WHITESPACE.sub(" ", text).strip(), limit, cut=cut)
