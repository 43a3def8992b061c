"""profiles.dynamo_http: our SigV4 signature is botocore's, byte for byte; the HTTP/1.1 client
reads every way a server may frame its answer, keeps connections alive, opens a stale one again,
fails clearly on broken answers, speaks TLS with verification; calls work against DynamoDB Local
and moto's server as boto3 sees them."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import orjson
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lvp.config import Settings
from lvp.dynamo import create_tables
from profiles.dynamo_http import CONTENT_TYPE, DynamoError, DynamoHttp, HttpError, sign

NOW = dt.datetime(2026, 11, 22, 6, 30, 5, tzinfo=dt.UTC)


# --- SigV4 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEJr//////////token+with/slashes=="])
@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://dynamodb.eu-west-1.amazonaws.com/", "dynamodb.eu-west-1.amazonaws.com"),
        ("http://127.0.0.1:8000/", "127.0.0.1:8000"),
        ("http://localhost:80/", "localhost"),
    ],
)
def test_signature_is_botocores(
    monkeypatch: pytest.MonkeyPatch, token: str | None, url: str, host: str
) -> None:
    body = orjson.dumps({"RequestItems": {"t": [{"PutRequest": {"Item": {"k": {"S": 'é " \\n'}}}}]}})
    target = "DynamoDB_20120810.BatchWriteItem"
    creds = ReadOnlyCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None))
    req = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": target}
    )
    botocore.auth.SigV4Auth(creds, "dynamodb", "eu-west-1").add_auth(req)

    ours = dict(
        sign(
            access_key=creds.access_key,
            secret_key=creds.secret_key,
            token=token,
            region="eu-west-1",
            host=host,
            target=target,
            body=body,
            now=NOW,
        )
    )
    assert ours["Authorization"] == req.headers["Authorization"]
    assert ours["X-Amz-Date"] == req.headers["X-Amz-Date"]
    assert ours.get("X-Amz-Security-Token") == req.headers.get("X-Amz-Security-Token")
    assert ours["Host"] == host


def test_signature_changes_with_every_signed_part() -> None:
    base: dict[str, Any] = dict(
        access_key="AK", secret_key="SK", token=None, region="r", host="h", target="T", body=b"{}", now=NOW
    )
    auth = dict(sign(**base))["Authorization"]
    for change in (
        {"secret_key": "SK2"},
        {"region": "r2"},
        {"host": "h2"},
        {"target": "T2"},
        {"body": b"{ }"},
        {"token": "x"},
        {"now": NOW + dt.timedelta(seconds=1)},
    ):
        assert dict(sign(**{**base, **change}))["Authorization"] != auth, change


# --- a scripted HTTP server -------------------------------------------------------------------------
Script = Callable[[socket.socket, bytes, int], bool]  # (conn, request, n-th request) -> keep the connection


class ScriptedServer:
    """Reads whole requests (head + Content-Length body) and answers them with ``script``."""

    def __init__(self, script: Script, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                while len(buf) < length:
                    buf += conn.recv(65536)
                body, buf = buf[:length], buf[length:]
                self.requests.append(head + b"\r\n\r\n" + body)
                if not self.script(conn, body, len(self.requests)):
                    return
        except OSError:
            return
        finally:
            conn.close()

    def close(self) -> None:
        self.listener.close()


@contextmanager
def server(script: Script, tls: ssl.SSLContext | None = None) -> Iterator[ScriptedServer]:
    s = ScriptedServer(script, tls)
    try:
        yield s
    finally:
        s.close()


def client(port: int, scheme: str = "http", host: str = "127.0.0.1") -> DynamoHttp:
    return DynamoHttp(f"{scheme}://{host}:{port}", "us-east-1", Credentials("AK", "SK"), read_timeout_s=5)


def echo(body: bytes) -> bytes:
    return orjson.dumps({"echo": orjson.loads(body)})


def content_length(conn: socket.socket, body: bytes, n: int) -> bool:
    out = echo(body)
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: %d\r\n\r\n"
        % len(out)
        + out
    )
    return True


def chunked(conn: socket.socket, body: bytes, n: int) -> bool:
    out = echo(body)
    parts = [out[:7], out[7:]]
    chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts)
    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    conn.sendall(chunks + b"0\r\nX-Trailer: t\r\n\r\n")
    return True


def until_close(conn: socket.socket, body: bytes, n: int) -> bool:
    conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + echo(body))
    return False


def closes_idle_after_each(conn: socket.socket, body: bytes, n: int) -> bool:
    content_length(conn, body, n)
    return False  # closes the connection without saying so (keep-alive timeout)


def test_answers_framed_every_way_are_read() -> None:
    for script, connections in (
        (content_length, 1),
        (chunked, 1),
        (until_close, 5),
        (closes_idle_after_each, 5),
    ):
        with server(script) as s:
            c = client(s.port)
            for i in range(5):
                assert c.call("BatchWriteItem", {"i": i, "s": "é"}) == {"echo": {"i": i, "s": "é"}}, script
            c.close()
        assert s.connections == connections, script.__name__
        head = s.requests[0].split(b"\r\n\r\n")[0].decode()
        assert head.startswith("POST / HTTP/1.1\r\n")
        assert f"Host: 127.0.0.1:{s.port}" in head
        assert "X-Amz-Target: DynamoDB_20120810.BatchWriteItem" in head
        assert "Authorization: AWS4-HMAC-SHA256 Credential=AK/" in head


def test_errors_are_clear() -> None:
    def error_answer(conn: socket.socket, body: bytes, n: int) -> bool:
        out = b'{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"slow down"}'
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n" % len(out) + out)
        return True

    with server(error_answer) as s, pytest.raises(DynamoError) as err:
        client(s.port).call("BatchWriteItem", {})
    assert (err.value.code, err.value.status, str(err.value)) == (
        "ProvisionedThroughputExceededException",
        400,
        "ProvisionedThroughputExceededException: slow down",
    )

    def garbage(conn: socket.socket, body: bytes, n: int) -> bool:
        conn.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")
        return True

    def cut_body(conn: socket.socket, body: bytes, n: int) -> bool:
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"a":')
        return False

    def not_json(conn: socket.socket, body: bytes, n: int) -> bool:
        conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 5\r\n\r\noops!")
        return True

    def silent_close(conn: socket.socket, body: bytes, n: int) -> bool:
        return False

    def no_content(conn: socket.socket, body: bytes, n: int) -> bool:
        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")  # no length, connection kept
        return True

    for script, kind, text in (
        (no_content, DynamoError, "HTTP204"),
        (garbage, HttpError, "not an HTTP/1.x status line"),
        (cut_body, HttpError, "closed in the middle of the response body"),
        (not_json, DynamoError, "HTTP502"),
        (silent_close, HttpError, "closed before a response"),
    ):
        with server(script) as s, pytest.raises(kind, match=text):
            client(s.port).call("BatchWriteItem", {})

    with pytest.raises(OSError):  # nothing listens there
        port = socket.create_server(("127.0.0.1", 0))
        free = port.getsockname()[1]
        port.close()
        client(free).call("BatchWriteItem", {})


def test_tls_is_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
        .not_valid_after(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert_path, key_path)
    with server(content_length, tls) as s:
        monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
        with pytest.raises(ssl.SSLCertVerificationError):  # a certificate no CA we trust signed
            client(s.port, "https", "localhost").call("BatchWriteItem", {})
        monkeypatch.setenv("AWS_CA_BUNDLE", str(cert_path))
        c = client(s.port, "https", "localhost")
        assert [c.call("BatchGetItem", {"i": i}) for i in range(3)] == [{"echo": {"i": i}} for i in range(3)]
        assert s.connections == 2  # the refused one, then one kept alive
        assert f"Host: localhost:{s.port}".encode() in s.requests[-1]


def test_endpoints() -> None:
    creds = Credentials("AK", "SK")
    for url, host in (
        ("https://dynamodb.eu-west-1.amazonaws.com", "dynamodb.eu-west-1.amazonaws.com"),
        ("https://dynamodb.eu-west-1.amazonaws.com:443/", "dynamodb.eu-west-1.amazonaws.com"),
        ("http://localstack:4566", "localstack:4566"),
        ("http://[::1]:8000/", "[::1]:8000"),
    ):
        assert DynamoHttp(url, "eu-west-1", creds).host_header == host
    for bad in (
        "ftp://host/",
        "http://host/prefix/",
        "http://user@host/",
        "http://host/?x=1",
        "localhost:8000",
    ):
        with pytest.raises(ValueError):
            DynamoHttp(bad, "eu-west-1", creds)


def test_ipv6_loopback() -> None:
    try:
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            assert f"Host: [::1]:{port}".encode() in data
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    assert DynamoHttp(f"http://[::1]:{port}", "us-east-1", Credentials("AK", "SK")).call("X", {}) == {}
    t.join(5)
    listener.close()


# --- real DynamoDB APIs -------------------------------------------------------------------------------
def test_calls_against_real_dynamodb(dynamodb_endpoint: str, make_settings: Callable[..., Settings]) -> None:
    dynamodb = dynamodb_endpoint
    settings = make_settings(aws_endpoint_url=dynamodb)
    create_tables(settings)
    table = settings.table_history
    c = DynamoHttp(dynamodb, "us-east-1", Credentials("local", "local"))
    items = [
        {"viewer_id": {"S": "v-http"}, "seq": {"S": f"{i:03d}"}, "status": {"S": 'é\t"x"'}, "ttl": {"N": "1"}}
        for i in range(25)
    ]
    answer = c.call(
        "BatchWriteItem", {"RequestItems": {table: [{"PutRequest": {"Item": it}} for it in items]}}
    )
    assert answer.get("UnprocessedItems") in ({}, None)
    boto = boto3.client(
        "dynamodb", endpoint_url=dynamodb, region_name="us-east-1",
        aws_access_key_id="local", aws_secret_access_key="local",
    )  # fmt: skip
    assert (
        boto.get_item(TableName=table, Key={"viewer_id": {"S": "v-http"}, "seq": {"S": "007"}})["Item"]
        == items[7]
    )
    got = c.call(
        "BatchGetItem",
        {
            "RequestItems": {
                table: {"Keys": [{"viewer_id": {"S": "v-http"}, "seq": {"S": "003"}}], "ConsistentRead": True}
            }
        },
    )
    assert got["Responses"][table] == [items[3]]
    with pytest.raises(DynamoError) as err:
        c.call("BatchWriteItem", {"RequestItems": {"no-such-table": [{"PutRequest": {"Item": items[0]}}]}})
    assert err.value.code == "ResourceNotFoundException" and err.value.status == 400
    c.close()
