"""Access control for ``/api/*``: bearer tokens, JWTs, the page's session cookie, SSE tickets,
and the per-token limit on concurrent SSE connections.

* ``Authorization: Bearer <token>`` — a static token from ``LVP_API_TOKENS`` or an HS256 JWT
  signed with ``LVP_JWT_SECRET`` (without ``aud``, or ``aud`` = ``lvp-api``) that has an ``exp``.
* ``POST /api/login`` ``{"token": ...}`` -> cookie ``lvp_session``: an HS256 JWT
  (``aud`` = ``lvp-session``, one hour, renewed when less than half is left, never beyond 12 h
  after sign-in, nor beyond the ``exp`` of the JWT it was made from), HttpOnly, SameSite=Strict,
  Secure over https (as the client sees it: :mod:`viewer.security`). The page stores nothing
  itself. Sign-in and sign-out take a JSON body of at most :data:`LOGIN_MAX_BODY` bytes within
  ``LVP_REQUEST_TIMEOUT_S``, from the viewer's own origin or ``LVP_VIEWER_CORS_ORIGINS``.
* ``POST /api/stream-ticket`` -> ``{"ticket"}``: an HS256 JWT (``aud`` = ``lvp-ticket``, 60 s,
  never beyond the credential it was made from) accepted only as ``?ticket=`` on
  ``GET /api/viewers/stream`` (EventSource cannot set headers), and only once: its ``jti`` is
  recorded in ``LVP_TABLE_VIEWER_STATE`` with a conditional write (:class:`TicketLedger`), so a
  replay is refused by every viewer process that shares the table. Query strings are never logged.

Every identity maps to a *token key* (a hash of the static token, or the JWT subject) that
sessions and tickets carry on, so the SSE limit counts per original token and removing a token
from ``LVP_API_TOKENS`` also ends the sessions made from it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

import jwt
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lvp.config import Settings, dev_secret
from viewer.security import BodyRefused, check_form_post, read_small_body

log = logging.getLogger("lvp.viewer.auth")

COOKIE = "lvp_session"
SESSION_TTL_S = 3600
SESSION_MAX_S = 12 * 3600  # a session renewed while in use still ends this long after sign-in
TICKET_TTL_S = 60
AUD_API = "lvp-api"
AUD_SESSION = "lvp-session"
AUD_TICKET = "lvp-ticket"
STREAM_PATH = "/api/viewers/stream"
OPEN_PATHS = ("/api/login",)
OPEN_PREFIXES = ("/api/public/",)
LOGIN_MAX_BODY = 4096  # {"token": ...} is far smaller; 413 above
TICKET_PREFIX = "ticket#"
DEV_TOKEN_FILE = "dev-token"  # the same file `lvp up` uses
JWT_SECRET_FILE = "jwt-secret"


@dataclass(frozen=True, slots=True)
class Principal:
    key: str  # the token key: what limits and sessions are counted by
    via: str  # "token" | "jwt" | "session" | "ticket"
    expires_at: float | None = None
    signed_in_at: float | None = None  # when the session chain began (sessions only)
    not_after: float | None = None  # what is made from it (sessions, tickets) ends by then
    ticket_id: str | None = None  # a ticket's jti (tickets only)


def token_key(token: str) -> str:
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:24]


def dev_token(settings: Settings) -> str:
    """The development API token kept in ``LVP_STATE_DIR`` (created on first use)."""
    return dev_secret(settings.state_dir, DEV_TOKEN_FILE)


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        tokens = list(settings.api_token_list)
        if settings.dev and not tokens:
            tokens.append(dev_token(settings))
            log.info("dev mode: API token kept in %s/%s", settings.state_dir, DEV_TOKEN_FILE)
        self._tokens = {token_key(t): t.encode() for t in tokens}
        if settings.jwt_secret:
            self._secret = settings.jwt_secret
            self.jwt_configured = True
        elif settings.dev:
            self._secret = dev_secret(settings.state_dir, JWT_SECRET_FILE)
            self.jwt_configured = True
        else:
            self._secret = secrets.token_hex(32)
            self.jwt_configured = False
            log.warning(
                "LVP_JWT_SECRET is not set: sessions and tickets are signed with a per-process key "
                "(set it when running more than one `lvp viewer`)"
            )
        if not tokens and not self.jwt_configured:
            log.warning("no LVP_API_TOKENS and no LVP_JWT_SECRET: every /api/* request will be refused")
        self.tickets = TicketLedger(settings)

    # --- credentials ------------------------------------------------------------------------
    def check_bearer(self, token: str) -> Principal | None:
        token = token.strip()
        if not token:
            return None
        key = token_key(token)
        expected = self._tokens.get(key)
        if expected is not None and hmac.compare_digest(expected, token.encode()):
            return Principal(key, "token")
        if token.count(".") == 2 and self.jwt_configured:
            claims = self._decode(token, None)
            if claims is None:
                return None
            aud = claims.get("aud")
            if aud is not None and aud != AUD_API and not (isinstance(aud, list) and AUD_API in aud):
                return None
            sub = claims.get("sub")
            subject = sub if isinstance(sub, str) and sub else hashlib.sha256(token.encode()).hexdigest()[:24]
            exp = float(claims["exp"])  # required by _decode
            return Principal("jwt:" + subject, "jwt", exp, not_after=exp)
        return None

    def _decode(self, token: str, audience: str | None) -> dict[str, Any] | None:
        try:
            if audience is None:
                claims = jwt.decode(
                    token,
                    self._secret,
                    algorithms=["HS256"],
                    options={"verify_aud": False, "require": ["exp"]},
                    leeway=5,
                )
            else:
                claims = jwt.decode(
                    token,
                    self._secret,
                    algorithms=["HS256"],
                    audience=audience,
                    options={"require": ["exp", "sub", "aud"]},
                    leeway=5,
                )
        except jwt.PyJWTError:
            return None
        return claims if isinstance(claims, dict) else None

    def _issue(self, principal: Principal, audience: str, ttl: int) -> tuple[str, float]:
        now = time.time()
        exp = now + ttl
        claims: dict[str, Any] = {"sub": principal.key, "aud": audience, "iat": int(now), "exp": int(exp)}
        if principal.not_after is not None:  # never outlive the credential it was made from
            exp = min(exp, principal.not_after)
            claims["lim"] = int(principal.not_after)
        if audience == AUD_SESSION:
            signed_in = principal.signed_in_at or now
            claims["auth_time"] = int(signed_in)
            exp = min(exp, signed_in + SESSION_MAX_S)
        claims["exp"] = int(exp)
        if audience == AUD_TICKET:
            claims["jti"] = secrets.token_hex(16)
        return jwt.encode(claims, self._secret, algorithm="HS256"), float(int(exp))

    def _check_signed(self, token: str, audience: str, via: str) -> Principal | None:
        claims = self._decode(token, audience)
        if claims is None:
            return None
        key = str(claims["sub"])
        if key.startswith("token:") and key not in self._tokens:
            return None  # the token it was made from has been withdrawn
        auth_time = claims.get("auth_time")
        signed_in = float(auth_time) if isinstance(auth_time, int | float) else None
        if via == "session" and (signed_in is None or time.time() - signed_in > SESSION_MAX_S):
            return None  # renewed sessions still end SESSION_MAX_S after the sign-in
        lim = claims.get("lim")
        not_after = float(lim) if isinstance(lim, int | float) else None
        jti = claims.get("jti")
        if via == "ticket" and not (isinstance(jti, str) and jti):
            return None
        ticket_id = jti if via == "ticket" and isinstance(jti, str) else None
        return Principal(key, via, float(claims["exp"]), signed_in, not_after, ticket_id)

    def session_limit(self, principal: Principal) -> float | None:
        """When a session of ``principal`` must end whatever its renewals."""
        if principal.signed_in_at is None:
            return principal.not_after
        limit = principal.signed_in_at + SESSION_MAX_S
        return limit if principal.not_after is None else min(limit, principal.not_after)

    def issue_session(self, principal: Principal) -> tuple[str, float]:
        return self._issue(principal, AUD_SESSION, SESSION_TTL_S)

    def check_session(self, cookie: str) -> Principal | None:
        return self._check_signed(cookie, AUD_SESSION, "session")

    def issue_ticket(self, principal: Principal) -> tuple[str, float]:
        return self._issue(principal, AUD_TICKET, TICKET_TTL_S)

    def check_ticket(self, ticket: str) -> Principal | None:
        return self._check_signed(ticket, AUD_TICKET, "ticket")

    # --- requests ---------------------------------------------------------------------------
    def authenticate(self, scope: Scope) -> tuple[Principal | None, str]:
        """The principal of a request, or None and the reason (for the 401 body)."""
        headers = dict(_headers(scope, (b"authorization", b"cookie")))
        auth = headers.get(b"authorization")
        if auth is not None:
            scheme, _, value = auth.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer":
                return None, "unsupported authorization scheme"
            p = self.check_bearer(value)
            return (p, "") if p else (None, "invalid token")
        cookie = headers.get(b"cookie")
        if cookie is not None:
            session_value = _cookie_value(cookie.decode("latin-1"), COOKIE)
            if session_value:
                p = self.check_session(session_value)
                if p is not None:
                    return p, ""
        if scope.get("path") == STREAM_PATH:
            ticket = _query_value(scope.get("query_string", b""), "ticket")
            if ticket:
                p = self.check_ticket(ticket)
                return (p, "") if p else (None, "invalid or expired ticket")
        if cookie is not None and _cookie_value(cookie.decode("latin-1"), COOKIE):
            return None, "session expired"
        return None, "missing credentials"


def _headers(scope: Scope, names: Iterable[bytes]) -> Iterable[tuple[bytes, bytes]]:
    wanted = set(names)
    for name, value in scope.get("headers", ()):
        if name in wanted:
            yield name, value


def _cookie_value(header: str, name: str) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def _query_value(query: bytes, name: str) -> str | None:
    from urllib.parse import parse_qs

    try:
        values = parse_qs(query.decode("latin-1"), max_num_fields=50).get(name)
    except ValueError:
        return None
    return values[0] if values else None


def is_open_path(path: str, metrics_public: bool) -> bool:
    if path == "/metrics":
        return metrics_public
    if not (path == "/api" or path.startswith("/api/")):
        return True
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def session_cookie(value: str, expires_at: float, secure: bool) -> str:
    max_age = max(0, int(expires_at - time.time()))
    parts = [f"{COOKIE}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def clear_cookie(secure: bool) -> str:
    parts = [f"{COOKIE}=", "Path=/", "Max-Age=0", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def _is_https(scope: Scope) -> bool:
    return scope.get("scheme") == "https"


class AuthMiddleware:
    """Pure ASGI (does not buffer streams): 401 for protected paths without valid credentials;
    puts the :class:`Principal` in ``request.state.principal``; renews a half-spent session."""

    def __init__(self, app: ASGIApp, auth: Authenticator, metrics_public: bool) -> None:
        self.app = app
        self.auth = auth
        self.metrics_public = metrics_public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if is_open_path(path, self.metrics_public):
            await self.app(scope, receive, send)
            return
        principal, reason = self.auth.authenticate(scope)
        if principal is None:
            response = JSONResponse(
                {"error": "unauthorized", "detail": reason},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="lvp"'},
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        if principal.via == "ticket" and principal.ticket_id is not None:
            refused = await self.auth.tickets.consume(principal.ticket_id, principal.expires_at or 0.0)
            if refused is not None:
                status, detail = refused
                response = JSONResponse({"error": "unauthorized", "detail": detail}, status_code=status)
                await response(scope, receive, send)
                return
        renew: str | None = None
        limit = self.auth.session_limit(principal)
        if (
            principal.via == "session"
            and principal.expires_at is not None
            and principal.expires_at - time.time() < SESSION_TTL_S / 2
            and principal.signed_in_at is not None
            and limit is not None
            and principal.expires_at < limit - 60
        ):
            value, exp = self.auth.issue_session(principal)
            renew = session_cookie(value, exp, _is_https(scope))

        if renew is None:
            await self.app(scope, receive, send)
            return

        async def send_renewed(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"set-cookie", renew.encode("latin-1"))]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_renewed)


class ConnectionLimiter:
    """Concurrent SSE connections per token key."""

    def __init__(self, max_per_key: int) -> None:
        self.max_per_key = max_per_key
        self._open: Counter[str] = Counter()

    def acquire(self, key: str) -> bool:
        if self.max_per_key > 0 and self._open[key] >= self.max_per_key:
            return False
        self._open[key] += 1
        return True

    def release(self, key: str) -> None:
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]

    def open(self, key: str) -> int:
        return self._open.get(key, 0)


# --- routes ---------------------------------------------------------------------------------
def _auth(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.auth
    return auth


class LoginThrottle:
    """Failed sign-ins per client (kept as a hash, in memory only): after ``max_failures``
    within ``window_s`` further attempts get 429 until the window has passed."""

    def __init__(self, max_failures: int = 10, window_s: float = 60.0) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, list[float]] = {}

    @staticmethod
    def key(request: Request) -> str:
        host = request.client.host if request.client else ""
        return hashlib.sha256(host.encode()).hexdigest()[:16]

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(key, ()) if now - t < self.window_s]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def blocked_for(self, key: str, now: float) -> float:
        times = self._recent(key, now)
        return times[0] + self.window_s - now if len(times) >= self.max_failures else 0.0

    def failed(self, key: str, now: float) -> None:
        self._recent(key, now)
        self._failures.setdefault(key, []).append(now)
        if len(self._failures) > 10_000:  # bound memory under a spray of clients
            self._failures = {k: v for k, v in self._failures.items() if now - v[-1] < self.window_s}


async def login(request: Request) -> Response:
    throttle: LoginThrottle = request.app.state.login_throttle
    client, now = throttle.key(request), time.time()
    wait = throttle.blocked_for(client, now)
    if wait > 0:
        return JSONResponse(
            {"error": "too many failed sign-ins; try again later"},
            status_code=429,
            headers={"Retry-After": str(int(wait) + 1)},
        )
    settings: Settings = request.app.state.settings
    refused = check_form_post(request, settings.viewer_cors_origin_list)
    if refused is not None:
        return refused
    try:
        body = orjson.loads(await read_small_body(request, LOGIN_MAX_BODY, settings.request_timeout_s))
    except BodyRefused as exc:
        return exc.response
    except orjson.JSONDecodeError:
        return JSONResponse({"error": 'body must be JSON: {"token": "..."}'}, status_code=400)
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token.strip():
        return JSONResponse({"error": "token is required"}, status_code=400)
    principal = _auth(request).check_bearer(token)
    if principal is None:
        throttle.failed(client, now)
        log.info("login refused")
        return JSONResponse({"error": "invalid token"}, status_code=401)
    value, exp = _auth(request).issue_session(principal)
    response = JSONResponse({"ok": True, "expires_in": int(exp - time.time())})
    response.headers.append("set-cookie", session_cookie(value, exp, request.url.scheme == "https"))
    return response


async def logout(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    refused = check_form_post(request, settings.viewer_cors_origin_list)
    if refused is not None:
        return refused
    try:
        await read_small_body(request, LOGIN_MAX_BODY, settings.request_timeout_s)
    except BodyRefused as exc:
        return exc.response
    response = JSONResponse({"ok": True})
    response.headers.append("set-cookie", clear_cookie(request.url.scheme == "https"))
    return response


async def session(request: Request) -> Response:
    principal: Principal = request.state.principal
    return JSONResponse({"authenticated": True, "via": principal.via, "expires_at": principal.expires_at})


async def stream_ticket(request: Request) -> Response:
    principal: Principal = request.state.principal
    ticket, exp = _auth(request).issue_ticket(principal)
    return JSONResponse(
        {"ticket": ticket, "expires_in": int(exp - time.time())},
        headers={"Cache-Control": "no-store"},
    )


class TicketLedger:
    """SSE tickets already used. A ticket is spent by a conditional ``PutItem`` of
    ``ticket#<jti>`` in ``LVP_TABLE_VIEWER_STATE`` (``attribute_not_exists``, ``ttl`` = the
    ticket's expiry, so DynamoDB drops it once the ticket could not be used anyway): the first
    stream opened with a ticket, on whichever viewer process, wins and every replay is refused.
    Tickets this process has seen are also kept in memory (until they expire), which refuses a
    replay to the same process without a round trip. When DynamoDB cannot be reached the stream
    is refused with 503 (fail closed)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._seen: dict[str, float] = {}

    def _put(self, jti: str, expires_at: float) -> bool:
        if self._client is None:
            from lvp.dynamo import dynamodb_client

            self._client = dynamodb_client(self.settings)
        try:
            self._client.put_item(
                TableName=self.settings.table_viewer_state,
                Item={"pk": {"S": TICKET_PREFIX + jti}, "ttl": {"N": str(int(expires_at) + 60)}},
                ConditionExpression="attribute_not_exists(pk)",
            )
            return True
        except self._client.exceptions.ConditionalCheckFailedException:
            return False

    async def consume(self, jti: str, expires_at: float) -> tuple[int, str] | None:
        """None when this is the ticket's first use, else (status, reason) of the refusal."""
        now = time.time()
        if jti in self._seen:
            return 401, "ticket already used"
        if len(self._seen) > 10_000:
            self._seen = {k: v for k, v in self._seen.items() if v > now}
        self._seen[jti] = expires_at + 60
        try:
            first = await asyncio.to_thread(self._put, jti, expires_at)
        except Exception as exc:
            del self._seen[jti]  # not spent: it may be tried again once DynamoDB is back
            log.warning("cannot record a stream ticket in %s: %s", self.settings.table_viewer_state, exc)
            return 503, "cannot check the ticket now; try again"
        return None if first else (401, "ticket already used")
