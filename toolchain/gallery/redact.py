"""A gallery URL as messages, outputs and logs show it: never with its password.

A ``postgresql://`` URL can carry a secret in two places libpq reads: the user part
(``user:PASSWORD@host``) and the query parameters ``password`` and ``sslpassword`` (libpq
percent-decodes parameter names too, so ``pass%77ord=`` is the password). :func:`masked_url`
shows the URL with each of them as ``***`` and everything else as written: it works on the text,
never re-encodes it and never fails, even on a URL libpq would refuse (a message about such a URL
must still hide its password).

Drivers quote what they cannot parse: libpq's messages hold a bad token (``invalid
percent-encoded token: "..."``) or the whole URL. :func:`scrub` removes every secret of a URL,
in each spelling the URL or its re-encoded connection string may hold, from any text.
"""

from __future__ import annotations

from urllib.parse import quote_plus, unquote, unquote_plus

SECRET_PARAMETERS = frozenset({"password", "sslpassword"})
"""The libpq connection parameters whose values are secrets."""

MASK = "***"
"""What a secret is shown as."""


def _split(url: str) -> tuple[str, str, str, str]:
    """``scheme://``, the authority (``user:password@hosts``), the path and the query text of
    ``url``, read as libpq reads it: the user part runs to an ``@`` met before any ``/`` (a
    ``?`` may be in a password), the hosts to the next ``/`` or ``?``, the query is everything
    after the next ``?`` (libpq reads no fragment)."""
    scheme, separator, rest = url.partition("://")
    slash = rest.find("/")
    at = rest.rfind("@", 0, slash if slash >= 0 else len(rest))
    start = at + 1 if at >= 0 else 0
    end = min((i for i in (rest.find("/", start), rest.find("?", start)) if i >= 0),
              default=len(rest))
    authority, tail = rest[:end], rest[end:]
    path, _, query = tail.partition("?")
    return scheme + separator, authority, path, query


def _is_secret(key: str) -> bool:
    return unquote(key).strip().lower() in SECRET_PARAMETERS


def secrets(url: str) -> list[str]:
    """The secret values of ``url`` as written (the user part's password, then each secret
    query parameter's value), empty ones left out."""
    _, authority, _, query = _split(url)
    found: list[str] = []
    userinfo, at, _ = authority.rpartition("@")
    if at and ":" in userinfo:
        found.append(userinfo.partition(":")[2])
    for item in query.split("&"):
        key, equals, value = item.partition("=")
        if equals and _is_secret(key):
            found.append(value)
    return [value for value in found if value]


def masked_url(url: str) -> str:
    """``url`` with its password and secret parameters shown as :data:`MASK`."""
    prefix, authority, path, query = _split(url)
    userinfo, at, hosts = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = f"{userinfo.partition(':')[0]}:{MASK}@{hosts}"
    if not query and "?" not in url:
        return prefix + authority + path
    items = []
    for item in query.split("&"):
        key, equals, _ = item.partition("=")
        items.append(f"{key}={MASK}" if equals and _is_secret(key) else item)
    return f"{prefix}{authority}{path}?{'&'.join(items)}"


def scrub(text: str, url: str) -> str:
    """``text`` (a driver's error message, say) without any secret of ``url``: each one as
    written, percent-decoded, and re-encoded as a query value, replaced by :data:`MASK`."""
    spellings: set[str] = set()
    for value in secrets(url):
        decoded = unquote_plus(value)
        spellings.update({value, unquote(value), decoded, quote_plus(decoded)})
    for spelling in sorted((s for s in spellings if s), key=len, reverse=True):
        text = text.replace(spelling, MASK)
    return text
