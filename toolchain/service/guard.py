"""Which requests a server answers: the name they are addressed to, and for writes, whose page
sent them.

Two attacks need no token on the default server (bound to 127.0.0.1, no ``--token-file``):

- **Cross-site writes.** Any web page the user visits can post a form, a file included, to
  ``http://127.0.0.1:8000/v1/people/NAME/faces``: a form post is a "simple" request, sent with no
  CORS preflight. The browser hides the answer from the page, but the face is enrolled.
- **DNS rebinding.** A page on ``attacker.example`` whose name is then made to resolve to
  127.0.0.1 sends same-origin requests, reads included, to this server. Its Origin matches its
  own name; only the ``Host`` header, ``attacker.example``, tells the request apart.

So, the rules (:class:`Guard`, outside the routes, before any body is read):

1. **Host**, every request: the name in ``Host`` (the port is not compared) must be one of
   :attr:`~toolchain.service.config.ServiceConfig.allowed_hosts`: ``127.0.0.1``, ``localhost``
   and ``[::1]``, the ``--host`` the server is bound to (unless a wildcard address, ``0.0.0.0``
   or ``::``: then the names clients use must be given), and each ``--allowed-host``. Otherwise
   421 ``misdirected``. A request without ``Host`` (HTTP/1.0) is answered: browsers always send
   one. ``--allowed-host '*'`` turns the check off.
2. **Writes** (POST, PUT, PATCH, DELETE) from a browser page of another origin: 403
   ``forbidden``. Precisely, a write is refused when

   - its ``Origin`` is neither this server's own origin (the same ``host[:port]`` as ``Host``,
     http or https) nor one of ``--cors-origin`` (``*``: any); ``Origin: null`` (sandboxed
     frames, ``file:`` and ``data:`` pages) is never either; or
   - it has no ``Origin`` and its ``Sec-Fetch-Site`` is ``cross-site`` or ``same-site``.
     Browsers send ``Origin`` on every cross-origin write; without it, a page of the same site
     (127.0.0.1 on another port is the same site) cannot be told from one on an allowed origin.

   A request with neither header comes from no browser (curl, a script, the load test) and is
   answered: it is no cross-site request, and ``--token-file`` is what guards a server others
   can reach. Reads are not checked: a page of another origin cannot read the answers
   (no CORS), and its forms cannot write.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from toolchain.service.config import LOOPBACK_NAMES
from toolchain.service.errors import ApiError

WILDCARD_ADDRESSES = frozenset({"0.0.0.0", "::", "[::]", ""})
"""Bind addresses that are no name: every interface."""

ANY = "*"
"""``--allowed-host`` / ``--cors-origin`` value allowing any host / origin."""

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""The methods that change the gallery (the others only read)."""

HOST_NAME = re.compile(r"\[[0-9a-f:.]+\]|[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?")
"""A host name or IP address as ``Host`` carries it (an IPv6 address in brackets)."""

ORIGIN = re.compile(r"(https?)://([^/?#@\s]+)")
"""A browser's ``Origin``: scheme and ``host[:port]``, no path."""

DEFAULT_PORTS = {"http": "80", "https": "443"}


def host_name(value: str) -> str | None:
    """The host name of a ``Host`` header (lowercase, without the port and a final dot; an IPv6
    address in brackets), ``None`` if it is not one."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value.partition("]")
        if not bracket:
            return None
        name += bracket
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return None
    return _name(name)


def _name(text: str) -> str | None:
    """``text`` as a host name (a bare IPv6 address put in brackets), or ``None``."""
    text = text.strip().lower()
    if text.count(":") > 1 and not text.startswith("["):
        text = f"[{text}]"
    text = text.rstrip(".")
    return text if HOST_NAME.fullmatch(text) else None


def allowed_hosts(bind: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The names a server bound to ``bind`` answers to: :data:`LOOPBACK_NAMES`, ``bind`` unless
    it is a wildcard address, and ``extra`` (:data:`ANY` allows every name).

    Raises:
        ValueError: an ``extra`` entry is not a host name (a port or a scheme with it, say).
    """
    names = list(LOOPBACK_NAMES)
    if bind.strip().lower() not in WILDCARD_ADDRESSES:
        name = _name(bind)
        if name is not None:
            names.append(name)
    for given in extra:
        name = ANY if given.strip() == ANY else _name(given)
        if name is None:
            raise ValueError(f"{given!r} is not a host name (give the name alone: no scheme, "
                             "no port)")
        names.append(name)
    return tuple(dict.fromkeys(names))


def origin(value: str) -> str | None:
    """``value`` as a comparable origin (``scheme://host[:port]``, lowercase, the scheme's
    default port dropped), :data:`ANY`, or ``None`` if it is not an origin."""
    value = value.strip().lower().rstrip("/")
    if value == ANY:
        return ANY
    match = ORIGIN.fullmatch(value)
    if match is None:
        return None
    scheme, authority = match.groups()
    return f"{scheme}://{_without_default_port(authority, scheme)}"


def _without_default_port(authority: str, scheme: str) -> str:
    return authority.removesuffix(f":{DEFAULT_PORTS[scheme]}")


class Guard:
    """Refuse requests to names this server does not answer to (421) and writes from another
    origin's pages (403), with the service's JSON error; see the module's rules."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str], origins: Iterable[str]):
        self.app = app
        self.hosts = frozenset(hosts)
        self.origins = frozenset(o for o in (origin(given) for given in origins) if o)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is not None:
            response = JSONResponse(refusal.body(), status_code=refusal.kind.status)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> ApiError | None:
        """Why the request is refused, or ``None``."""
        headers: dict[bytes, bytes] = {}
        for key, value in scope["headers"]:
            headers.setdefault(key, value)
        host = headers.get(b"host")
        host_text = host.decode("latin-1").strip().lower() if host is not None else None
        if host_text is not None and ANY not in self.hosts \
                and host_name(host_text) not in self.hosts:
            return ApiError("misdirected", "this server does not answer to that host name; "
                            "start it with --allowed-host NAME to add one")
        if scope["method"] not in WRITE_METHODS:
            return None
        sent_origin = headers.get(b"origin")
        if sent_origin is not None:
            given = origin(sent_origin.decode("latin-1"))
            if given is not None and (self._own(given, host_text) or ANY in self.origins
                                      or given in self.origins):
                return None
            return ApiError("forbidden", "a write from a page of another origin is refused "
                            "(list that origin with --cors-origin to allow it)")
        site = headers.get(b"sec-fetch-site", b"").decode("latin-1").strip().lower()
        if site in ("cross-site", "same-site"):
            return ApiError("forbidden", f"a {site} write without an Origin is refused")
        return None

    @staticmethod
    def _own(given: str, host: str | None) -> bool:
        """Whether ``given`` (an :func:`origin`) is the origin of this server as ``host``
        (the ``Host`` header) names it, over http or https."""
        if host is None:
            return False
        scheme, _, authority = given.partition("://")
        return authority == _without_default_port(host, scheme)
