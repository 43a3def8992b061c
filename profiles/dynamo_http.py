"""DynamoDB's JSON protocol on keep-alive HTTP/1.1 connections, signed with AWS Signature V4.

A flush writes thousands of items in BatchWriteItem calls of 25; through botocore (its shape
model walked for every attribute value) a profile item cost ~200 µs of CPU, and even with the
body encoded by orjson, botocore's signer and urllib3 still took ~500 µs per call — a fifth of
`lvp profiles`' CPU. Here a call is: the body encoded by orjson, signed by :func:`sign` (the
derived key cached per day), written on a plain (or TLS) socket kept open per thread, and the
answer read back by a small HTTP/1.1 reader (Content-Length, chunked, or until close): ~10x
less CPU per call. Only the bulk calls whose requests and answers are plain JSON come this way
(BatchWriteItem, BatchGetItem); everything else goes through boto3.

Errors: a non-200 answer raises :class:`DynamoError` (DynamoDB's error ``__type`` and message);
a connection that fails or a malformed answer raises an ``OSError`` (:class:`HttpError` for the
latter), both retried by the store. A kept-alive connection the server closed in the meantime
is opened again once, transparently (both calls are idempotent).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import ssl
import threading
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

from lvp.http1 import CHUNKED, CLOSE_DELIMITED, MAX_HEAD, HttpError, chunk_size, parse_head

SERVICE: Final = "dynamodb"
API_VERSION: Final = "DynamoDB_20120810"
CONTENT_TYPE: Final = "application/x-amz-json-1.0"
_RECV: Final = 256 * 1024


class DynamoError(Exception):
    """DynamoDB answered with an error: ``code`` is its ``__type`` without the namespace."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.status = status


# --- Signature Version 4 ------------------------------------------------------------------------
_KEYS: dict[tuple[str, str, str], bytes] = {}
_KEYS_LOCK = threading.Lock()


def _signing_key(secret_key: str, day: str, region: str) -> bytes:
    cache_key = (secret_key, day, region)
    key = _KEYS.get(cache_key)
    if key is None:
        key = ("AWS4" + secret_key).encode()
        for part in (day, region, SERVICE, "aws4_request"):
            key = hmac.digest(key, part.encode(), "sha256")
        with _KEYS_LOCK:
            if len(_KEYS) > 16:
                _KEYS.clear()
            _KEYS[cache_key] = key
    return key


def sign(
    *,
    access_key: str,
    secret_key: str,
    token: str | None,
    region: str,
    host: str,
    target: str,
    body: bytes,
    now: datetime | None = None,
) -> list[tuple[str, str]]:
    """The headers of a signed DynamoDB JSON-protocol POST to ``/`` (Host, Content-Type,
    X-Amz-Date, X-Amz-Security-Token when ``token``, X-Amz-Target, Authorization)."""
    t = now or datetime.now(UTC)
    amz_date = t.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    signed = [("content-type", CONTENT_TYPE), ("host", host), ("x-amz-date", amz_date)]
    if token:
        signed.append(("x-amz-security-token", token))
    signed.append(("x-amz-target", target))
    names = ";".join(name for name, _ in signed)
    canonical = "\n".join(
        (
            "POST",
            "/",
            "",
            *(f"{name}:{value}" for name, value in signed),
            "",
            names,
            hashlib.sha256(body).hexdigest(),
        )
    )
    scope = f"{day}/{region}/{SERVICE}/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = hmac.new(_signing_key(secret_key, day, region), to_sign.encode(), "sha256").hexdigest()
    headers = [
        ("Host", host),
        ("Content-Type", CONTENT_TYPE),
        ("X-Amz-Date", amz_date),
    ]
    if token:
        headers.append(("X-Amz-Security-Token", token))
    headers.append(("X-Amz-Target", target))
    headers.append(
        (
            "Authorization",
            f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={names}, Signature={signature}",
        )
    )
    return headers


# --- HTTP/1.1 -----------------------------------------------------------------------------------
class _Connection:
    """One keep-alive connection; :meth:`post` sends a request and reads its whole answer."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, connect_s: float, read_s: float):
        self.host, self.port, self.tls = host, port, tls
        self.connect_s, self.read_s = connect_s, read_s
        self.sock: socket.socket | None = None
        self.buf = bytearray()

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None
                self.buf.clear()

    def _open(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.read_s)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        return sock

    def post(self, request: bytes) -> tuple[int, bytes]:
        """(status, body) of the answer to ``request`` (head and body, ready to send)."""
        reused = self.sock is not None
        for attempt in (0, 1):
            try:
                return self._exchange(self.sock or self._open(), request)
            except (ConnectionError, _Closed) as exc:
                self.close()
                stale = reused and attempt == 0 and not (isinstance(exc, _Closed) and exc.got_bytes)
                if not stale:
                    raise HttpError(f"connection to {self.host}:{self.port} failed: {exc}") from exc
                # the server had closed the idle kept-alive connection: once more on a new one
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable")

    def _recv(self, sock: socket.socket) -> bool:
        data = sock.recv(_RECV)
        if not data:
            return False
        self.buf += data
        return True

    def _exchange(self, sock: socket.socket, request: bytes) -> tuple[int, bytes]:
        sock.sendall(request)
        buf = self.buf
        while True:  # the head (1xx interim answers are skipped)
            end = buf.find(b"\r\n\r\n")
            while end < 0:
                if len(buf) > MAX_HEAD:
                    raise HttpError("HTTP response head too large")
                if not self._recv(sock):
                    raise _Closed(got_bytes=bool(buf))
                end = buf.find(b"\r\n\r\n")
            head = parse_head(bytes(buf[:end]))
            del buf[: end + 4]
            if not head.interim:
                break
        if head.length == CHUNKED:
            body = self._chunked(sock)
        elif head.length == CLOSE_DELIMITED:  # the body ends with the connection
            while self._recv(sock):
                pass
            body = bytes(buf)
        else:
            n = head.length
            while len(buf) < n:
                if not self._recv(sock):
                    raise HttpError("connection closed in the middle of the response body")
            body = bytes(buf[:n])
            del buf[:n]
        if not head.keep:
            self.close()
        return head.status, body

    def _chunked(self, sock: socket.socket) -> bytes:
        buf = self.buf
        out = bytearray()
        while True:
            end = buf.find(b"\r\n")
            while end < 0:
                if not self._recv(sock):
                    raise HttpError("connection closed in a chunked response")
                end = buf.find(b"\r\n")
            size = chunk_size(bytes(buf[:end]))
            del buf[: end + 2]
            while len(buf) < size + 2:
                if not self._recv(sock):
                    raise HttpError("connection closed in a chunked response")
            if size == 0:  # trailers: up to the empty line
                while buf.find(b"\r\n\r\n") < 0 and bytes(buf[:2]) != b"\r\n":
                    if not self._recv(sock):
                        raise HttpError("connection closed in a chunked response")
                cut = 2 if bytes(buf[:2]) == b"\r\n" else buf.find(b"\r\n\r\n") + 4
                del buf[:cut]
                return bytes(out)
            out += buf[:size]
            del buf[: size + 2]


class _Closed(Exception):
    def __init__(self, got_bytes: bool) -> None:
        super().__init__("connection closed before a response" + (" ended" if got_bytes else ""))
        self.got_bytes = got_bytes


def tls_context() -> ssl.SSLContext:
    """Verifying TLS context: ``AWS_CA_BUNDLE`` when set (as botocore), else botocore's CAs."""
    from botocore.httpsession import get_cert_path

    return ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or get_cert_path(True))


class DynamoHttp:
    """DynamoDB JSON-protocol calls to one endpoint, up to ``pool_size`` connections kept open."""

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        credentials: Any,
        *,
        pool_size: int = 4,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 20.0,
    ) -> None:
        u = urlsplit(endpoint_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) endpoint: {endpoint_url!r}")
        if u.path not in ("", "/") or u.query or u.username:
            raise ValueError(f"an endpoint with a path, query or user: {endpoint_url!r}")
        default_port = 443 if u.scheme == "https" else 80
        port = u.port or default_port
        self.host = u.hostname
        self.port = port
        name = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal
        self.host_header = name if port == default_port else f"{name}:{port}"
        self.region = region
        self.credentials = credentials
        self.tls = tls_context() if u.scheme == "https" else None
        self.pool_size = max(1, pool_size)
        self.timeouts = (connect_timeout_s, read_timeout_s)
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

    def call(self, operation: str, payload: Any) -> dict[str, Any]:
        """``operation`` (e.g. ``BatchWriteItem``) with ``payload``; its answer as a dict."""
        body = orjson.dumps(payload)
        creds = self.credentials.get_frozen_credentials()
        headers = sign(
            access_key=creds.access_key,
            secret_key=creds.secret_key,
            token=creds.token,
            region=self.region,
            host=self.host_header,
            target=f"{API_VERSION}.{operation}",
            body=body,
        )
        head = "POST / HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
        request = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = _Connection(self.host, self.port, self.tls, *self.timeouts)
        status, data = conn.post(request)
        if conn.sock is not None:
            with self._lock:
                if len(self._idle) < self.pool_size:
                    self._idle.append(conn)
                    conn = None
            if conn is not None:
                conn.close()
        if status == 200:
            try:
                answer = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise HttpError(f"{operation}: the answer is not JSON: {exc}") from None
            if not isinstance(answer, dict):
                raise HttpError(f"{operation}: the answer is not a JSON object")
            return answer
        try:
            err = orjson.loads(data)
        except orjson.JSONDecodeError:
            err = None
        if not isinstance(err, dict):
            err = {}
        code = str(err.get("__type", "")).rsplit("#", 1)[-1] or f"HTTP{status}"
        raise DynamoError(code, str(err.get("message") or err.get("Message") or ""), status)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
