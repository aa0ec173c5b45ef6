"""What counts as a secret: the key rules, the value rules and the URL rules.

Pure functions on strings, kept apart from the protobuf walking in
:mod:`telemetryflow._scrubbing.scrubber` so they can be tested (and reasoned about) one by one.

Key rule: a key is sensitive when one of its words, or two adjacent words, names a
secret (``password``, ``api_key``, ``authorization``...). Words come from splitting
on ``.``, ``_``, ``-``, spaces and camelCase, lower-cased. A sensitive word followed
by a *qualifier* describes the secret instead of holding it, so ``token_count``,
``auth_types`` and ``session.duration`` pass; ``session.id`` and ``auth`` do not.

Value rules, on every string whatever its key: ``tfs_`` secrets and JWTs are
replaced, ``tfk_`` key ids are masked (``tfk_…abcd``), ``Bearer``/``Basic``
credentials, ``password=...``-style pairs whose key is sensitive, header lines
such as ``Cookie: ...``, and card numbers that pass the Luhn check are replaced; URLs
lose their user-info and the values of sensitive query (and fragment) parameters.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import unquote

__all__ = [
    "REDACTED",
    "is_card_number",
    "is_sensitive_key",
    "is_sensitive_param",
    "scrub_query",
    "scrub_text",
    "scrub_url",
]

REDACTED = "[REDACTED]"
"""What a secret is replaced with; the key always stays."""

SENSITIVE_WORDS = frozenset(
    {
        "password", "passwd", "pwd", "passphrase", "passcode",
        "secret", "secrets", "token", "authorization", "auth",
        "cookie", "cookies", "session", "sessionid", "sessid",
        "credential", "credentials", "creds", "jwt", "bearer",
        "signature", "sig", "ssn", "cvv", "cvv2", "cvc", "csrf", "xsrf", "otp",
        "apikey", "accesskey", "secretkey", "privatekey", "privkey",
        "accesstoken", "refreshtoken", "idtoken", "authtoken", "clientsecret",
        "cardnumber", "creditcard", "ccnumber", "setcookie",
    }
)  # fmt: skip
"""Words that make a key sensitive on their own. ``tokens`` (plural) is left out on
purpose: it almost always counts something (``gen_ai.usage.input_tokens``)."""

SENSITIVE_PAIRS = frozenset(
    {
        ("api", "key"), ("access", "key"), ("secret", "key"), ("private", "key"),
        ("priv", "key"), ("signing", "key"), ("encryption", "key"), ("master", "key"),
        ("card", "number"), ("credit", "card"), ("cc", "number"), ("security", "code"),
        ("account", "number"), ("routing", "number"), ("social", "security"),
    }
)  # fmt: skip
"""Adjacent words that are sensitive together though neither is alone (``key``)."""

QUALIFIERS = frozenset(
    {
        "count", "counts", "type", "types", "kind", "kinds", "method", "methods",
        "scheme", "schemes", "mechanism", "mode", "provider", "source", "format",
        "length", "len", "size", "bytes", "limit", "limits", "max", "min", "total",
        "usage", "used", "index", "idx", "bucket", "buckets",
        "duration", "ttl", "timeout", "age", "lifetime", "expiry", "expires",
        "expiration", "expired", "time", "timestamp", "ms", "seconds", "created",
        "updated", "issued", "rotated", "rotation",
        "enabled", "required", "valid", "validity", "present", "provided",
        "status", "state", "result", "error", "errors", "name", "names", "version",
        "policy", "strength", "scope", "scopes", "audience", "algorithm", "alg",
        "endpoint", "url", "uri", "issuer",
    }
)  # fmt: skip
"""Words that, right after a sensitive word, say the key is *about* the secret."""

URL_KEYS = frozenset({"url.full", "http.url", "url.original", "http.target", "url"})
"""Keys whose value is a URL even without a scheme (``/path?token=...``)."""
QUERY_KEYS = frozenset({"url.query", "http.query"})
"""Keys whose value is a bare query string."""

_EXTRA_PARAMS = frozenset(
    {
        "key", "code", "sig", "signature", "state_token", "client_secret",
        "awsaccesskeyid", "x-amz-signature", "x-amz-credential", "x-amz-security-token",
        "x-goog-signature", "x-goog-credential", "sv_sig", "sas", "sp_sig",
    }
)  # fmt: skip
"""Query parameter names that are secrets in URLs though not as attribute keys
(``?key=`` API keys, OAuth ``?code=``, cloud storage signatures)."""

_SPLIT = re.compile(r"[._\-\s/:\[\]]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def key_words(key: str) -> list[str]:
    """``"X-Api-Key"`` -> ``["x", "api", "key"]``; ``"accessToken"`` -> ``["access", "token"]``."""
    return [word for word in _SPLIT.split(_CAMEL.sub("_", key).lower()) if word]


@lru_cache(maxsize=2048)
def is_sensitive_key(key: str) -> bool:
    """True if a value stored under ``key`` should be treated as a secret."""
    words = key_words(key)
    if not words:
        return False
    if "".join(words) in SENSITIVE_WORDS:
        return True
    last = len(words) - 1
    for i, word in enumerate(words):
        if word in SENSITIVE_WORDS:
            span_end = i
        elif i < last and (word, words[i + 1]) in SENSITIVE_PAIRS:
            span_end = i + 1
        else:
            continue
        if span_end == last or words[span_end + 1] not in QUALIFIERS:
            return True
    return False


@lru_cache(maxsize=1024)
def is_sensitive_param(name: str) -> bool:
    """True for query parameters whose value must not leave (``token``, ``sig``...)."""
    lowered = name.strip().lower()
    return lowered in _EXTRA_PARAMS or is_sensitive_key(name)


# -- card numbers ------------------------------------------------------------------------
def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _issuer_ok(digits: str) -> bool:
    """A known card issuer prefix and length: keeps timestamps and ids out."""
    n = len(digits)
    two, four = int(digits[:2]), int(digits[:4])
    if digits[0] == "4":
        return n in (13, 16, 19)  # Visa
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16  # Mastercard
    if two in (34, 37):
        return n == 15  # American Express
    if two in (36, 38, 39) or 300 <= int(digits[:3]) <= 305:
        return 14 <= n <= 19  # Diners Club
    if four == 6011 or two in (62, 65) or 644 <= int(digits[:3]) <= 649:
        return 16 <= n <= 19  # Discover, UnionPay
    if 3528 <= four <= 3589:
        return 16 <= n <= 19  # JCB
    return False


def is_card_number(text: str) -> bool:
    """True if ``text`` (digits, maybe grouped by spaces or dashes) is a card number."""
    digits = text.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and digits.isdigit() and _issuer_ok(digits) and _luhn_ok(digits)


# -- URLs ----------------------------------------------------------------------------------
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#]*@")
_PARAM = re.compile(r"([^&;=#?]+)=([^&;#]*)")


def _percent_decoded(name: str) -> str:
    if "%" not in name and "+" not in name:
        return name
    from urllib.parse import unquote_plus

    return unquote_plus(name)


def scrub_query(query: str) -> str:
    """``a=1&token=x`` -> ``a=1&token=[REDACTED]``; names are matched percent-decoded."""

    def replace(match: re.Match[str]) -> str:
        name, value = match.group(1), match.group(2)
        if value and value != REDACTED and is_sensitive_param(_percent_decoded(name)):
            return f"{name}={REDACTED}"
        return match.group(0)

    return _PARAM.sub(replace, query) if "=" in query else query


def scrub_url(url: str) -> str:
    """Drop user-info and redact sensitive query and fragment parameter values."""
    out = _USERINFO.sub(r"\1", url, count=1) if "@" in url else url
    question = out.find("?")
    hash_at = out.find("#")
    if question < 0 and hash_at < 0:
        return out
    cut = min(i for i in (question, hash_at) if i >= 0)
    return out[:cut] + scrub_query(out[cut:])


# -- free text -----------------------------------------------------------------------------
_KEYWORD = re.compile(
    "pass|pwd|secret|token|auth|cookie|sess|cred|jwt|sig|ssn|cvv|cvc|csrf|xsrf|otp|key"
    "|card|number|code|security|bearer"
)
"""On lower-cased text: every sensitive key contains one of these. Literal
alternatives without IGNORECASE, which is several times faster in ``re``."""
_LONG_DIGITS = re.compile(r"[0-9](?:[ \-]?[0-9]){12}")
_HEADER_LINE = re.compile(
    r"^([ \t]*(?:set-cookie|cookie|proxy-authorization|authorization|x-api-key))"
    r"([ \t]*:[ \t]*)(\S.*)$",
    re.IGNORECASE | re.MULTILINE,
)
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>`]+")
_PAIR_KEY = re.compile(r"(?<![A-Za-z0-9])([A-Za-z][A-Za-z0-9_.\-]{0,63})([\"']?[ \t]*[=:][ \t]*)")
_PAIR_VALUE = re.compile(
    r"(?!\[REDACTED\])"
    r"(\"(?:[^\"\\\n]|\\.){1,4096}\"|'[^'\n]{1,4096}'"
    r"|(?:[Bb]earer|BEARER|[Bb]asic|BASIC|[Dd]igest|[Tt]oken)[ \t]+[^\s,;&\"'<>]+"
    r"|[^\s,;&\"'<>)\]}]+)",
)
_BEARER = re.compile(r"\b([Bb]earer|BEARER)([ \t]+)([A-Za-z0-9\-._~+/:]+=*)")
_BASIC = re.compile(r"\b(Basic)([ \t]+)([A-Za-z0-9+/]{8,}={0,2})(?![A-Za-z0-9+/=])")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]{6,}\.[A-Za-z0-9_\-]{6,}\.[A-Za-z0-9_\-]*")
_KEY_SECRET = re.compile(r"(?<![A-Za-z0-9])tfs_[A-Za-z0-9_\-+/=.~%]{2,}")
_KEY_ID = re.compile(r"(?<![A-Za-z0-9])tfk_[A-Za-z0-9_\-.~]{2,}")
_CARD = re.compile(r"(?<![0-9])[0-9](?:[ \-]?[0-9]){12,18}(?![0-9])")


def _mask_key_id(match: re.Match[str]) -> str:
    text = match.group(0).rstrip(".")
    tail = text[-4:] if len(text) > 8 else ""
    return f"tfk_…{tail}"


def _scrub_pairs(text: str) -> str:
    """Redact the value of every ``key=value`` / ``key: value`` / ``"key": "value"``
    whose key is sensitive. Values of innocent keys are not consumed, so in
    ``failed: password=x`` the ``password`` pair is still seen."""
    parts: list[str] = []
    done = 0
    for match in _PAIR_KEY.finditer(text):
        if match.start() < done or not is_sensitive_key(match.group(1)):
            continue
        found = _PAIR_VALUE.match(text, match.end())
        if found is None:
            continue
        value = found.group(1)
        quote = value[0] if value[0] in "\"'" and len(value) > 1 and value[-1] == value[0] else ""
        parts += (text[done : match.end()], quote, REDACTED, quote)
        done = found.end()
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def _looks_random(token: str) -> bool:
    """Prose ("Basic authentication", "the bearer of") has no digits, symbols or inner
    capitals; credentials almost always do."""
    return len(token) >= 8 and (
        any(c.isdigit() or c in "+/=-._~:" for c in token) or any(c.isupper() for c in token[1:])
    )


def _credential(match: re.Match[str]) -> str:
    if _looks_random(match.group(3)):
        return f"{match.group(1)}{match.group(2)}{REDACTED}"
    return match.group(0)


def _url(match: re.Match[str]) -> str:
    return scrub_url(match.group(0))


def _card(match: re.Match[str]) -> str:
    return REDACTED if is_card_number(match.group(0)) else match.group(0)


def scrub_text(text: str) -> str:
    """``text`` with every secret-looking part replaced; the same object if none.

    Each rule runs only when a cheap substring test on the lower-cased text says it
    could match, so innocent text costs a few microseconds. Returning the very same
    object when nothing changed lets callers skip writing the value back.
    """
    lowered = text.lower()
    out = text
    if _KEYWORD.search(lowered) and ("=" in text or ":" in text):
        if "cookie" in lowered or "authorization" in lowered or "x-api-key" in lowered:
            out = _HEADER_LINE.sub(rf"\1\2{REDACTED}", out)
        if "://" in lowered:
            out = _URL_IN_TEXT.sub(_url, out)
        out = _scrub_pairs(out)
    elif "://" in lowered:
        out = _URL_IN_TEXT.sub(_url, out)
    if "bearer" in lowered:
        out = _BEARER.sub(_credential, out)
    if "basic" in lowered:
        out = _BASIC.sub(_credential, out)
    if "eyj" in lowered:
        out = _JWT.sub(REDACTED, out)
    if "tfs_" in lowered:
        out = _KEY_SECRET.sub(REDACTED, out)
    if "tfk_" in lowered:
        out = _KEY_ID.sub(_mask_key_id, out)
    if _LONG_DIGITS.search(out):
        out = _CARD.sub(_card, out)
    if "%" in out:
        out = _scrub_percent_encoded(out)
    return text if out == text else out


def _scrub_percent_encoded(text: str) -> str:
    """Catch secrets hidden by URL encoding (``Bearer%20tfk_…``, ``tfk%5F…``).

    A server may echo a request line or header in URL-encoded form; the rules above
    cannot see through it. The decoded text is scrubbed and kept only when that found
    something, so innocent encoded text (most URLs) comes back untouched.
    """
    decoded = unquote(text)
    if decoded == text:
        return text
    scrubbed = scrub_text(decoded)
    return text if scrubbed is decoded else scrubbed
