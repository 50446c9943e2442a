"""Who may use the dashboard, and how a request that changes something proves the page sent it.

- **Host.** Bound to loopback, only a Host header naming loopback and the port is served: a
  page on another site whose name resolves to 127.0.0.1 (DNS rebinding) gets a 403.
- **Key.** With an API key (required on any other address), every route but ``/health``, the
  login form and the static files needs ``Authorization: Bearer KEY`` or the session cookie the
  login form sets (HttpOnly, SameSite=Strict; a random value, not the key).
- **CSRF.** Every POST needs the page's token in ``X-CSRF-Token`` (the page has it from its own
  HTML, which another site cannot read) and, when the browser says where it came from (``Origin``,
  ``Sec-Fetch-Site``), this very origin. Otherwise 403.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Middleware

COOKIE = "modelserve_ui"
CSRF_HEADER = "X-CSRF-Token"
OPEN_PATHS = frozenset({"/health", "/login"})
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


@dataclass(frozen=True)
class Guard:
    api_key: str | None
    allowed_hosts: frozenset[str] | None  # Host header values served (a loopback bind); None: any
    csrf_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    session: str = field(default_factory=lambda: secrets.token_urlsafe(32))  # the login cookie's value

    @classmethod
    def for_bind(cls, host: str, port: int, api_key: str | None) -> Guard:
        allowed = None
        if is_loopback(host):
            allowed = frozenset({f"{name}:{port}" for name in (*LOOPBACK_NAMES, host)})
        return cls(api_key=api_key, allowed_hosts=allowed)

    def authenticated(self, request: web.Request) -> bool:
        if self.api_key is None:
            return True
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and _same(token.strip(), self.api_key):
            return True
        return _same(request.cookies.get(COOKIE, ""), self.session)

    def key_matches(self, given: str) -> bool:
        return self.api_key is not None and _same(given, self.api_key)

    def cross_site(self, request: web.Request) -> str | None:
        """Why the browser's own headers say this request came from another site; None if not."""
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            return f"Origin {origin} is not this dashboard"
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            return f"Sec-Fetch-Site {site}"
        return None

    def csrf_ok(self, request: web.Request) -> bool:
        return _same(request.headers.get(CSRF_HEADER, ""), self.csrf_token)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def refuse(status: int, message: str, code: str) -> web.Response:
    return web.json_response({"error": {"message": message, "code": code}}, status=status)


def middleware(guard: Guard, login_page: Callable[[str], web.Response]) -> Middleware:
    @web.middleware
    async def guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        if guard.allowed_hosts is not None and request.host not in guard.allowed_hosts:
            return refuse(403, f"Host {request.host!r} is not this dashboard's address; open "
                          f"http://{sorted(guard.allowed_hosts)[0]}/", "wrong_host")  # fmt: skip
        if request.method == "POST" and (why := guard.cross_site(request)):
            return refuse(403, f"cross-site request refused: {why}", "cross_site")
        if request.path in OPEN_PATHS or request.path.startswith("/static/"):
            return await handler(request)
        if not guard.authenticated(request):
            if request.method == "GET" and request.path == "/":
                return login_page("")
            return refuse(401, "missing or wrong API key: log in at / or send 'Authorization: Bearer KEY'",
                          "invalid_api_key")  # fmt: skip
        if request.method == "POST" and not guard.csrf_ok(request):
            return refuse(403, f"missing or wrong CSRF token: send the page's token in {CSRF_HEADER} "
                          "(reload the page for a fresh one)", "csrf")  # fmt: skip
        return await handler(request)

    return guarded


async def login(request: web.Request, guard: Guard, login_page: Callable[[str], web.Response]) -> web.Response:
    """The login form's POST: the right key sets the session cookie and goes to the page."""
    form = await request.post()
    given = form.get("key")
    if not isinstance(given, str) or not guard.key_matches(given):
        page = login_page("wrong key")
        page.set_status(401)
        return page
    response = web.Response(status=303, headers={"Location": "/"})
    response.set_cookie(COOKIE, guard.session, httponly=True, samesite="Strict", path="/")
    return response
