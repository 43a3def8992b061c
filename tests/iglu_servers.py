"""Test support: real HTTP Iglu repositories on free loopback ports.

- :func:`static_repository`: a folder served as an Iglu static repository
  (``GET /schemas/<vendor>/<name>/<format>/<version>``).
- :class:`IgluServer`: an Iglu Server-shaped API (``GET /api/schemas/...`` with an ``apikey``
  header, ``GET /api/schemas`` listing every schema's URI), counting requests, and able to hang
  every request until released.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

IGLU_META = "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#"


def schema_doc(vendor: str, name: str, version: str = "1-0-0", **props: Any) -> dict[str, Any]:
    """A small self-describing schema: an object with the given properties, all required."""
    properties = props or {"label": {"type": "string", "maxLength": 50}}
    return {
        "$schema": IGLU_META,
        "description": f"test schema {name}",
        "self": {"vendor": vendor, "name": name, "format": "jsonschema", "version": version},
        "type": "object",
        "properties": properties,
        "required": sorted(properties),
        "additionalProperties": False,
    }


def write_schema(root: Path, doc: dict[str, Any]) -> Path:
    s = doc["self"]
    path = root / "schemas" / s["vendor"] / s["name"] / s["format"] / s["version"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def _serve(server: ThreadingHTTPServer) -> Iterator[str]:
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def static_repository(root: Path) -> Iterator[str]:
    """``root`` (holding ``schemas/...``) served over HTTP; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    with _serve(server) as url:
        yield url


class IgluServer:
    """An Iglu Server-shaped API over a dict of schemas, with one valid API key."""

    def __init__(self, apikey: str = "secret-key") -> None:
        self.apikey = apikey
        self.schemas: dict[str, Any] = {}  # "vendor/name/format/version" -> document (any JSON)
        self.requests: list[str] = []
        self.hang = threading.Event()  # set: requests block until `release` is set
        self.release = threading.Event()
        self.url = ""

    def add(self, doc: dict[str, Any], path: str | None = None) -> None:
        if path is None:
            s = doc["self"]
            path = f"{s['vendor']}/{s['name']}/{s['format']}/{s['version']}"
        self.schemas[path] = doc

    def hits(self, fragment: str) -> int:
        return sum(fragment in r for r in self.requests)

    @contextmanager
    def running(self) -> Iterator[IgluServer]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                owner.requests.append(self.path)
                if owner.hang.is_set():
                    owner.release.wait(30)
                if self.headers.get("apikey") != owner.apikey:
                    self._send(403, {"message": "Not enough permissions"})
                    return
                path = self.path.split("?", 1)[0].rstrip("/")
                if path == "/api/schemas":
                    self._send(200, [f"iglu:{p}" for p in sorted(owner.schemas)])
                    return
                prefix = "/api/schemas/"
                if path.startswith(prefix) and path[len(prefix) :] in owner.schemas:
                    self._send(200, owner.schemas[path[len(prefix) :]])
                    return
                self._send(404, {"message": "The schema is not found"})

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        with _serve(server) as url:
            self.url = url
            try:
                yield self
            finally:
                self.release.set()


def resolver_config(
    repositories: list[dict[str, Any]], cache_ttl: float | None = 600, size: int = 500
) -> Any:
    data: dict[str, Any] = {"cacheSize": size, "repositories": repositories}
    if cache_ttl is not None:
        data["cacheTtl"] = cache_ttl
    return {"schema": "iglu:com.snowplowanalytics.iglu/resolver-config/jsonschema/1-0-3", "data": data}


def http_repo(
    name: str, uri: str, priority: int = 0, prefixes: tuple[str, ...] = (), apikey: str | None = None
) -> Any:
    http: dict[str, Any] = {"uri": uri}
    if apikey is not None:
        http["apikey"] = apikey
    return {
        "name": name,
        "priority": priority,
        "vendorPrefixes": list(prefixes),
        "connection": {"http": http},
    }
