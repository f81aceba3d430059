"""Redaction: the one place that knows what a credential looks like and removes it from text, URLs and JSON.

Two kinds of things are removed: values the caller knows are secret (every `Secret` in play), and anything
that looks like a credential whatever its value (a `Bearer` token, a JWT, a parameter or JSON key named like
a token or password, the user-info part of a URL). Over-redacting a harmless word is acceptable; leaking a
token is not.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit, urlunsplit

from snapbridge.security.secret import Secret

__all__ = [
    "REDACTED",
    "RedactingFilter",
    "is_sensitive_name",
    "redact_headers",
    "redact_json",
    "redact_json_text",
    "redact_text",
    "redact_url",
]

REDACTED = "****"
# Longer than any credential we hold or a token pattern matches: see redact_json_text(keep=…).
_CUT_MARGIN = 4096

# A known secret shorter than this is not searched for: replacing "ab" everywhere would wreck every message,
# and a value that short protects nothing anyway.
MIN_SECRET_LENGTH = 4

# A name is sensitive when, lower-cased and stripped of punctuation, it contains one of these ...
_SENSITIVE_PARTS = (
    "token", "secret", "password", "passwd", "passphrase", "apikey", "authorization", "credential",
    "privatekey", "licensekey", "accesskey", "sessionid", "cookie", "signature",
)
# ... or is exactly one of these (as parts they would match "monkey", "author", "passenger").
_SENSITIVE_EXACT = frozenset({"key", "auth", "pwd", "pass", "sig", "jwt", "bearer", "session", "sid"})

_SENSITIVE_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key", "x-auth-token",
    "x-access-token", "x-csrf-token", "x-xsrf-token", "private-token",
})

_NAME = r"[A-Za-z_][\w.\-\[\]]{0,63}"
# Bounded repeats keep every pattern linear on hostile input (a megabyte of "a.a.a…" must not take minutes).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]{0,31}://)[^\s/@?#\"'<>]{1,512}@")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]*")
# name=value in a query string, form body or log line; the value may be quoted.
_PARAM = re.compile(rf"(?<![\w\-\[\]])({_NAME})=(\"[^\"]*\"|'[^']*'|[^&\s\"'<>#,;]*)")
# "name": "value" in JSON or 'name': 'value' in a Python repr; then the same inside an escaped JSON string.
_QUOTED_PAIR = re.compile(
    rf"([\"'])({_NAME})\1(\s*:\s*)(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|-?[\w.+\-]+)"
)
_ESCAPED_PAIR = re.compile(rf"\\\"({_NAME})\\\"(\s*:\s*)\\\"((?:[^\"\\]|\\[^\"])*)\\\"")
# Name: value as in a header line, YAML or a log message; an auth scheme before the value goes with it.
_COLON_PAIR = re.compile(
    rf"(?<![\w\-\"'])({_NAME})(\s*:[ \t]*)((?:(?:bearer|basic|digest|token)[ \t]+)?[^\s,;'\"&}}\]]+)",
    re.IGNORECASE,
)
_NOT_ALNUM = bytes(c for c in range(128) if not (ord("a") <= c <= ord("z") or ord("0") <= c <= ord("9")))
_SENSITIVE_NAMES = (*_SENSITIVE_PARTS, *sorted(_SENSITIVE_EXACT))
_COOKIE_LINE = re.compile(r"(?im)\b(set-cookie|cookie)([ \t]*:[ \t]*)[^\r\n]+")
_KEEP_LITERALS = frozenset({"null", "true", "false", "none"})


@functools.lru_cache(maxsize=4096)  # the same few dozen keys, asked for every value of every excerpt
def is_sensitive_name(name: str) -> bool:
    """True for parameter, header and JSON key names that hold credentials (token, api_key, password, …)."""
    flat = _flatten(name.lower())
    return flat in _SENSITIVE_EXACT or any(part in flat for part in _SENSITIVE_PARTS)


def _flatten(lower: str) -> str:
    """Only the a-z and 0-9 of a lower-cased text (a byte-table delete: ~20x quicker than a regex)."""
    return lower.encode("ascii", "ignore").translate(None, _NOT_ALNUM).decode("ascii")


def _may_name_sensitive(lower: str) -> bool:
    """False when no name in the text can be sensitive, so the name-based patterns can be skipped: a sensitive
    name, flattened, holds a part or is an exact name, and is a contiguous piece of the flattened text."""
    flat = _flatten(lower)
    return any(name in flat for name in _SENSITIVE_NAMES)


def _known_values(secrets: Iterable[Secret | str]) -> list[str]:
    values: set[str] = set()
    for item in secrets:
        value = item.reveal() if isinstance(item, Secret) else item
        if len(value) < MIN_SECRET_LENGTH:
            continue
        # The same value as it appears in a URL or a form body, and escaped as an error message or JSON quotes it
        # (a pasted token with a line break in it: "Illegal header value b'Bearer abc\\ndef'").
        values.update({value, quote(value, safe=""), quote_plus(value), repr(value)[1:-1],
                       json.dumps(value)[1:-1]})
    # Longest first, so a secret containing another is removed whole.
    return sorted(values, key=len, reverse=True)


def _remove_known(text: str, values: list[str]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def _param(match: re.Match[str]) -> str:
    name, value = match.group(1), match.group(2)
    if value and is_sensitive_name(name):
        return f"{name}={REDACTED}"
    return match.group(0)


def _quoted_pair(match: re.Match[str]) -> str:
    quote_char, name, sep, value = match.groups()
    if not is_sensitive_name(name) or value.lower() in _KEEP_LITERALS:
        return match.group(0)
    return f"{quote_char}{name}{quote_char}{sep}{quote_char}{REDACTED}{quote_char}"


def _escaped_pair(match: re.Match[str]) -> str:
    name, sep, _value = match.groups()
    if not is_sensitive_name(name):
        return match.group(0)
    return f'\\"{name}\\"{sep}\\"{REDACTED}\\"'


def _colon_pair(match: re.Match[str]) -> str:
    name, sep, value = match.groups()
    if not is_sensitive_name(name) or value == REDACTED or value.lower() in _KEEP_LITERALS:
        return match.group(0)
    return f"{name}{sep}{REDACTED}"


def redact_text(text: str, secrets: Iterable[Secret | str] = ()) -> str:
    """Text with known secret values and anything token-looking replaced by `****`."""
    text = _remove_known(text, _known_values(secrets))
    # Each pattern runs only where the text holds its fixed part: most excerpts have no URL with user-info,
    # no cookie, no bearer token and no JWT, and scanning for them was most of an excerpt's cost.
    lower = text.lower()
    if "://" in text:
        text = _USERINFO.sub(rf"\1{REDACTED}@", text)
    if "cookie" in lower:
        text = _COOKIE_LINE.sub(rf"\1\2{REDACTED}", text)
    if "bearer" in lower:
        text = _BEARER.sub(rf"\1 {REDACTED}", text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    if not _may_name_sensitive(lower):
        return text  # most excerpts: the patterns below only act on a sensitive name
    if "'" in text or '"' in text:
        text = _QUOTED_PAIR.sub(_quoted_pair, text)
    if '\\"' in text:
        text = _ESCAPED_PAIR.sub(_escaped_pair, text)
    if "=" in text:
        text = _PARAM.sub(_param, text)
    return _COLON_PAIR.sub(_colon_pair, text) if ":" in text else text


def _redact_pairs(query: str) -> str:
    pieces = []
    for piece in query.split("&"):
        name, sep, value = piece.partition("=")
        if sep and value and is_sensitive_name(unquote_plus(name)):
            piece = f"{name}={REDACTED}"
        pieces.append(piece)
    return "&".join(pieces)


def redact_url(url: str, secrets: Iterable[Secret | str] = ()) -> str:
    """The URL without user-info and with token-like query (and fragment) parameters replaced by `****`."""
    known = _known_values(secrets)
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url, secrets)
    netloc = parts.netloc.rpartition("@")[2]
    query = _redact_pairs(parts.query)
    fragment = _redact_pairs(parts.fragment)
    rebuilt = urlunsplit((parts.scheme, netloc, parts.path, query, fragment))
    return _JWT.sub(REDACTED, _remove_known(rebuilt, known))


def redact_headers(headers: Mapping[str, str], secrets: Iterable[Secret | str] = ()) -> dict[str, str]:
    """A copy of the headers with credential-bearing ones (Authorization, Cookie, X-Api-Key, …) as `****`."""
    known = list(secrets)
    redacted: dict[str, str] = {}
    for name, value in headers.items():
        if name.lower() in _SENSITIVE_HEADERS or is_sensitive_name(name):
            redacted[name] = REDACTED
        else:
            redacted[name] = redact_text(value, known)
    return redacted


def redact_json(value: object, secrets: Iterable[Secret | str] = ()) -> object:
    """A copy of a JSON-like value, sensitive keys' values as `****` at any depth; strings redacted too."""
    known = list(secrets)
    return _redact_json(value, known)


def redact_json_text(value: object, secrets: Iterable[Secret | str] = (), *, keep: int | None = None) -> str:
    """`value` as compact JSON text, redacted like `redact_json` but with ONE text pass over the whole
    document instead of one per string (the same patterns match inside the JSON text: an excerpt of a
    large batch body costs a few regex scans, not thousands).

    `keep`: the caller shows only the first `keep` characters, so only those and a margin wider than any
    credential are redacted (whatever a pattern needs to see of a value that starts in the shown part).
    """
    known = list(secrets)
    text = _plain_json(value)
    # The walk below only changes a sensitive key's value or a Secret: with no sensitive name anywhere in the
    # text (and no escape, which could split a name), the plain dump is what it would give. Most excerpts.
    if text is None or "\\" in text or _may_name_sensitive(text.lower()):
        text = json.dumps(_redact_json(value, known, strings=False), ensure_ascii=False, separators=(",", ":"),
                          default=str)
    if keep is not None and len(text) > keep + _CUT_MARGIN:
        text = text[:keep + _CUT_MARGIN]
    return redact_text(text, known)


class _NotPlain(Exception):
    pass


def _secret_only(value: object) -> object:
    if isinstance(value, Secret):
        return REDACTED
    raise _NotPlain  # anything else json cannot write is left to the walk (and its default=str)


def _plain_json(value: object) -> str | None:
    """`value` as compact JSON if it is made of dicts, lists, tuples, scalars and Secrets only, else None."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_secret_only)
    except (_NotPlain, TypeError, ValueError, RecursionError):
        return None


def _redact_json(value: object, known: list[Secret | str], *, strings: bool = True) -> object:
    if isinstance(value, Secret):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value, known) if strings else value
    if isinstance(value, Mapping):
        result: dict[object, object] = {}
        for key, item in value.items():
            if isinstance(key, str) and is_sensitive_name(key) and item is not None:
                # None stays None: "no password was sent" is worth seeing and reveals nothing.
                result[key] = REDACTED
            else:
                result[key] = _redact_json(item, known, strings=strings)
        return result
    if isinstance(value, list | tuple):
        return [_redact_json(item, known, strings=strings) for item in value]
    return value


# Attributes every LogRecord has; anything else was passed through `extra=` and is redacted too.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """A logging filter that redacts every record's message, arguments, extras and traceback text.

    Attach it to handlers (a filter on a logger does not see records propagated from child loggers).
    Secrets known at runtime (credentials decrypted from the vault) are added with `register`.
    """

    def __init__(self, secrets: Iterable[Secret | str] = (), name: str = "") -> None:
        super().__init__(name)
        self._lock = threading.Lock()
        self._secrets: set[Secret | str] = set()
        for secret in secrets:
            self.register(secret)

    def register(self, secret: Secret | str) -> None:
        """Remove this exact value from every later record."""
        with self._lock:
            self._secrets.add(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            known = list(self._secrets)
        try:
            message = record.getMessage()
        except Exception:  # a malformed format string must not let the raw arguments through
            message = f"{record.msg!s} {record.args!s}"
        record.msg = redact_text(message, known)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, known)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info, known)
        for attr, value in list(vars(record).items()):
            if attr in _STANDARD_ATTRS:
                continue
            if isinstance(value, Secret):
                setattr(record, attr, REDACTED)
            elif isinstance(value, str):
                setattr(record, attr, redact_text(value, known))
            elif isinstance(value, Mapping | list | tuple):
                setattr(record, attr, _redact_json(value, known))
        return True
