"""Iglu repositories beyond the bundled schemas: a Snowplow resolver configuration and its lookups.

The configuration is Snowplow's ``iglu_resolver.json`` (self-describing,
``iglu:com.snowplowanalytics.iglu/resolver-config/jsonschema/1-0-0`` to ``1-0-3``)::

    {"schema": "iglu:com.snowplowanalytics.iglu/resolver-config/jsonschema/1-0-3",
     "data": {"cacheSize": 500, "cacheTtl": 600, "repositories": [
        {"name": "Acme", "priority": 0, "vendorPrefixes": ["com.acme"],
         "connection": {"http": {"uri": "https://iglu.acme.com", "apikey": "..."}}},
        {"name": "Iglu Central", "priority": 1, "vendorPrefixes": ["com.snowplowanalytics"],
         "connection": {"http": {"uri": "http://iglucentral.com"}}},
        {"name": "Local", "priority": 0, "vendorPrefixes": [],
         "connection": {"embedded": {"path": "/srv/iglu"}}}]}}

Repositories are tried in the Snowplow Iglu client's order: those whose ``vendorPrefixes`` match
the schema's vendor first, then embedded before HTTP, then by ``priority`` (lower first); the first
that has the schema wins. A repository is

- embedded: a folder laid out like a static repository (``<path>/schemas/<vendor>/...``);
- static HTTP: ``GET {uri}/schemas/<vendor>/<name>/<format>/<version>``;
- an Iglu Server (an ``apikey`` is given): ``GET {uri}/api/schemas/...`` with the ``apikey``
  header.

The schemas bundled with lvp and those in ``LVP_SCHEMA_DIRS`` are always looked at first (the
registry does that, without this module), so the envelopes and the trackers' default schemas never
depend on a network. Results are cached, misses too, with ``cacheSize`` (least recently used
entries go first) and ``cacheTtl`` (seconds; absent or null = for ever). Every
fetched schema is checked against the Iglu meta-schema and must name itself as asked for.

Never stalling: lookups run on a small thread pool with ``timeout`` per request. A caller waits at
most ``wait`` seconds for a schema not known yet (the lookup then goes on and fills the cache for
later events); while such an abandoned lookup still runs, callers of other new schemas do not wait
at all. A known schema whose entry expired is served as is while it is fetched again in the
background, so events that need only cached schemas never wait for a repository. A repository that
cannot be reached (refused, timed out, 5xx) is skipped for a back-off (2 s, doubling up to 60 s),
so lookups of other unknown schemas do not wait for it either.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from lvp.iglu import IgluError, SchemaKey, check_schema_document, load_schema_file

log = logging.getLogger(__name__)

RESOLVER_CONFIG_PREFIX = "iglu:com.snowplowanalytics.iglu/resolver-config/jsonschema/1-0-"
#: the largest schema a repository may answer with
MAX_SCHEMA_BYTES = 1_000_000
BACKOFF_FIRST_S = 2.0
BACKOFF_MAX_S = 60.0


class ResolverConfigError(IgluError):
    """The resolver configuration is missing or malformed; the message says where."""


@dataclass(frozen=True)
class Repository:
    name: str
    priority: int
    vendor_prefixes: tuple[str, ...]
    kind: str  # "embedded" | "http" | "server"
    uri: str = ""
    path: str = ""
    apikey: str | None = field(default=None, repr=False)

    def matches(self, vendor: str) -> bool:
        return any(vendor.startswith(p) for p in self.vendor_prefixes)

    @property
    def class_priority(self) -> int:
        """The Iglu client's class priority: embedded (1) before HTTP (100)."""
        return 1 if self.kind == "embedded" else 100

    def schema_url(self, key: SchemaKey) -> str:
        base = self.uri.rstrip("/")
        return f"{base}/api/schemas/{key.path}" if self.kind == "server" else f"{base}/schemas/{key.path}"

    def headers(self) -> dict[str, str]:
        return {"apikey": self.apikey} if self.apikey else {}


@dataclass(frozen=True)
class ResolverConfig:
    cache_size: int
    cache_ttl: float | None
    repositories: tuple[Repository, ...]

    @classmethod
    def load(cls, path: str | Path) -> ResolverConfig:
        try:
            doc = orjson.loads(Path(path).read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ResolverConfigError(f"resolver configuration {path}: not readable JSON: {exc}") from None
        return cls.parse(doc, str(path), base=Path(path).resolve().parent)

    @classmethod
    def parse(
        cls, doc: Any, where: str = "resolver configuration", base: Path | None = None
    ) -> ResolverConfig:
        def bad(msg: str) -> ResolverConfigError:
            return ResolverConfigError(f"{where}: {msg}")

        if not isinstance(doc, dict) or not isinstance(doc.get("schema"), str) or "data" not in doc:
            raise bad("expected a self-describing JSON {schema, data}")
        if not doc["schema"].startswith(RESOLVER_CONFIG_PREFIX):
            raise bad(f"schema must be {RESOLVER_CONFIG_PREFIX}0..3, not {doc['schema']!r}")
        data = doc["data"]
        if not isinstance(data, dict):
            raise bad("`data` must be an object")
        size = data.get("cacheSize")
        if type(size) is not int or size < 0:
            raise bad("`cacheSize` must be a non-negative integer")
        ttl = data.get("cacheTtl")
        if ttl is not None and (type(ttl) not in (int, float) or ttl <= 0):
            raise bad("`cacheTtl` must be a positive number of seconds or null")
        repos = data.get("repositories")
        if not isinstance(repos, list):
            raise bad("`repositories` must be a list")
        out = []
        for i, r in enumerate(repos):
            at = f"repositories[{i}]"
            if not isinstance(r, dict):
                raise bad(f"{at} must be an object")
            name, priority, prefixes = r.get("name"), r.get("priority"), r.get("vendorPrefixes", [])
            if not isinstance(name, str) or type(priority) is not int:
                raise bad(f"{at} needs a string `name` and an integer `priority`")
            if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
                raise bad(f"{at}.vendorPrefixes must be a list of strings")
            conn = r.get("connection")
            if not isinstance(conn, dict) or len(conn) != 1:
                raise bad(f"{at}.connection must hold exactly one of `embedded`, `http`")
            ((ckind, c),) = conn.items()
            if ckind == "embedded" and isinstance(c, dict) and isinstance(c.get("path"), str):
                p = Path(c["path"])
                if not p.is_absolute() and base is not None:
                    p = base / p
                out.append(Repository(name, priority, tuple(prefixes), "embedded", path=str(p)))
            elif ckind == "http" and isinstance(c, dict) and isinstance(c.get("uri"), str):
                uri = c["uri"]
                if not uri.startswith(("http://", "https://")):
                    raise bad(f"{at}.connection.http.uri must be an http(s) URL, not {uri!r}")
                apikey = c.get("apikey")
                if apikey is not None and not isinstance(apikey, str):
                    raise bad(f"{at}.connection.http.apikey must be a string")
                kind = "server" if apikey else "http"
                out.append(Repository(name, priority, tuple(prefixes), kind, uri=uri, apikey=apikey))
            else:
                raise bad(f"{at}.connection: expected embedded.path or http.uri")
        return cls(size, float(ttl) if ttl is not None else None, tuple(out))

    def ordered(self, vendor: str) -> list[Repository]:
        """The repositories in the order a lookup of ``vendor``'s schema tries them."""
        return sorted(self.repositories, key=lambda r: (not r.matches(vendor), r.class_priority, r.priority))


@dataclass(frozen=True, slots=True)
class Lookup:
    """A lookup's result: the schema (``None`` when no repository had it), the repository it came
    from, what each repository answered, and until when (monotonic clock) it is fresh."""

    key: SchemaKey
    schema: dict[str, Any] | None
    repository: str | None
    history: tuple[tuple[str, str], ...]  # (repository, what it answered)
    expires: float
    #: a repository could not be reached (the answer may change soon)
    failed: bool = False

    @property
    def not_found(self) -> bool:
        """No repository had it, and every one said so (no failure, no bad schema)."""
        return self.schema is None and all(what == "NotFound" for _, what in self.history)

    def reason(self) -> str:
        if not self.history:
            return "no repository is configured"
        return "; ".join(f"{repo}: {what}" for repo, what in self.history)


@dataclass(frozen=True, slots=True)
class Pending:
    """A lookup still running when its caller stopped waiting, after ``waited`` seconds (0: not
    waited for, because a repository is slow right now)."""

    waited: float


class _Unreachable(Exception):
    pass


class Resolver:
    """Lookups of one resolver configuration with a shared cache (thread-safe)."""

    def __init__(
        self,
        config: ResolverConfig,
        *,
        timeout: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        workers: int = 4,
    ) -> None:
        self.config = config
        self.timeout = timeout
        self.clock = clock
        self._lock = threading.Lock()
        self._cache: OrderedDict[SchemaKey, Lookup] = OrderedDict()
        self._inflight: dict[SchemaKey, tuple[concurrent.futures.Future[Lookup], float]] = {}
        self._down: dict[str, tuple[float, float]] = {}  # repository -> (until, back-off)
        self._abandoned: set[SchemaKey] = set()  # lookups still running that a caller gave up on
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="iglu-lookup")
        self._http = httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=True)
        self._embedded: dict[str, dict[SchemaKey, dict[str, Any]]] = {}
        for repo in config.repositories:
            if repo.kind == "embedded":
                self._embedded[repo.name] = _load_folder(Path(repo.path))
        #: lookups that went to a repository (tests and `lvp schemas pull` read it)
        self.fetches = 0

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    # -- the cache -------------------------------------------------------------------------------
    def cached(self, key: SchemaKey) -> Lookup | None:
        """The cache entry of ``key``, fresh or stale, without any lookup."""
        with self._lock:
            return self._cache.get(key)

    def resolve(self, key: SchemaKey, wait: float) -> Lookup | Pending:
        """The schema of ``key``: from the cache when fresh; a stale hit is returned at once (and
        refreshed in the background); else a lookup is started (or joined) and waited for at
        most ``wait`` seconds in all since it started (:class:`Pending`: still looking)."""
        now = self.clock()
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None and now < entry.expires:
                self._cache.move_to_end(key)
                return entry
            running = self._inflight.get(key)
            if running is None:
                running = (self._pool.submit(self._lookup, key), now)
                self._inflight[key] = running
        if entry is not None and entry.schema is not None:
            return entry  # stale while it is refreshed
        future, started = running
        if self._abandoned and key not in self._abandoned:
            wait = 0.0  # a repository is slow right now: do not wait for it once per new schema
        timeout = max(0.0, started + wait - now)
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            with self._lock:
                if not future.done():
                    self._abandoned.add(key)
            return Pending(timeout)

    @property
    def slow(self) -> bool:
        """A lookup that a caller stopped waiting for is still running (callers of other schemas
        not known yet do not wait until it ends)."""
        return bool(self._abandoned)

    def lookup_now(self, key: SchemaKey) -> Lookup:
        """A lookup that waits for its answer (the command line)."""
        result = self.resolve(key, wait=1e9)
        assert isinstance(result, Lookup)
        return result

    def _store(self, result: Lookup) -> Lookup:
        """Cache ``result``; a refresh that could not reach a repository keeps the schema known
        before (retried after the back-off). Returns what is cached."""
        with self._lock:
            self._inflight.pop(result.key, None)
            self._abandoned.discard(result.key)
            old = self._cache.get(result.key)
            if result.schema is None and result.failed and old is not None and old.schema is not None:
                result = Lookup(old.key, old.schema, old.repository, result.history, result.expires, True)
            if self.config.cache_size <= 0:
                return result
            self._cache[result.key] = result
            self._cache.move_to_end(result.key)
            while len(self._cache) > self.config.cache_size:
                self._cache.popitem(last=False)
        return result

    # -- one lookup (a worker thread) ------------------------------------------------------------
    def _lookup(self, key: SchemaKey) -> Lookup:
        try:
            result = self._walk(key)
        except Exception as exc:  # never leave a caller without an answer
            log.error("iglu lookup of %s failed: %s", key.uri, type(exc).__name__)
            result = Lookup(key, None, None, (("lvp", f"lookup failed: {type(exc).__name__}"),), 0.0, True)
        return self._store(result)

    def _walk(self, key: SchemaKey) -> Lookup:
        history: list[tuple[str, str]] = []
        transient = False
        for repo in self.config.ordered(key.vendor):
            if repo.kind == "embedded":
                doc = self._embedded[repo.name].get(key)
                if doc is not None:
                    return Lookup(key, doc, repo.name, (*history, (repo.name, "Found")), self._fresh_until())
                history.append((repo.name, "NotFound"))
                continue
            now = self.clock()
            down = self._down.get(repo.name)
            if down is not None and now < down[0]:
                history.append((repo.name, f"unreachable, skipped for {down[0] - now:.0f} s more"))
                transient = True
                continue
            try:
                doc = self._fetch(repo, key)
            except _Unreachable as exc:
                back_off = BACKOFF_FIRST_S if down is None else min(BACKOFF_MAX_S, down[1] * 2)
                self._down[repo.name] = (self.clock() + back_off, back_off)
                history.append((repo.name, str(exc)))
                transient = True
                continue
            except IgluError as exc:
                history.append((repo.name, str(exc)))
                continue
            self._down.pop(repo.name, None)
            if doc is None:
                history.append((repo.name, "NotFound"))
                continue
            return Lookup(key, doc, repo.name, (*history, (repo.name, "Found")), self._fresh_until())
        # a miss is cached like a hit, but one caused by an unreachable repository only briefly
        until = self.clock() + BACKOFF_FIRST_S if transient else self._fresh_until()
        return Lookup(key, None, None, tuple(history), min(until, self._fresh_until()), transient)

    def _fresh_until(self) -> float:
        ttl = self.config.cache_ttl
        return float("inf") if ttl is None else self.clock() + ttl

    def _fetch(self, repo: Repository, key: SchemaKey) -> dict[str, Any] | None:
        """The checked schema, ``None`` on 404; raises :class:`_Unreachable` (try again later) or
        :class:`IgluError` (a wrong answer)."""
        url = repo.schema_url(key)
        self.fetches += 1
        deadline = time.monotonic() + self.timeout
        try:
            # never follow a redirect with the API key: it would go to whatever host it names
            follow = repo.apikey is None
            with self._http.stream("GET", url, headers=repo.headers(), follow_redirects=follow) as resp:
                if resp.status_code == 404:
                    return None
                if resp.status_code in (401, 403):
                    raise IgluError(f"HTTP {resp.status_code}: not authorized (check the apikey)")
                if resp.status_code >= 500 or resp.status_code == 429:
                    raise _Unreachable(f"HTTP {resp.status_code} from {repo.uri}")
                if resp.status_code != 200:
                    raise IgluError(f"HTTP {resp.status_code}")
                body = bytearray()
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) > MAX_SCHEMA_BYTES:
                        raise IgluError(f"schema larger than {MAX_SCHEMA_BYTES} bytes")
                    if time.monotonic() > deadline:
                        raise _Unreachable(f"{repo.uri} took more than {self.timeout} s")
        except httpx.TimeoutException:
            raise _Unreachable(f"{repo.uri} did not answer within {self.timeout} s") from None
        except httpx.HTTPError as exc:
            raise _Unreachable(f"{repo.uri} unreachable: {type(exc).__name__}") from None
        try:
            doc = orjson.loads(bytes(body))
        except orjson.JSONDecodeError:
            raise IgluError("the answer is not JSON") from None
        return check_schema_document(doc, "invalid schema", key)


def _load_folder(root: Path) -> dict[SchemaKey, dict[str, Any]]:
    base = root / "schemas" if (root / "schemas").is_dir() else root
    if not base.is_dir():
        raise ResolverConfigError(f"embedded repository folder {root} does not exist")
    out: dict[SchemaKey, dict[str, Any]] = {}
    for path in sorted(base.glob("*/*/*/*")):
        if path.is_file() and not path.name.startswith("."):
            key = SchemaKey(*path.relative_to(base).parts)
            out[key] = load_schema_file(path, key)
    return out


def list_server_schemas(repo: Repository, timeout: float = 10.0) -> list[SchemaKey]:
    """Every schema an Iglu Server lists (``GET {uri}/api/schemas`` with the API key: a JSON array
    of ``iglu:`` URIs, or of schemas / metadata objects with a ``self`` block). Raises
    :class:`IgluError` with the reason."""
    if repo.kind != "server":
        raise IgluError(f"{repo.name}: only an Iglu Server (http with an apikey) lists its schemas")
    url = f"{repo.uri.rstrip('/')}/api/schemas"
    try:
        resp = httpx.get(url, headers=repo.headers(), timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise IgluError(f"{repo.name}: {url} unreachable: {type(exc).__name__}") from None
    if resp.status_code != 200:
        raise IgluError(f"{repo.name}: GET {url} answered HTTP {resp.status_code}")
    try:
        items = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        raise IgluError(f"{repo.name}: the schema list is not JSON") from None
    if not isinstance(items, list):
        raise IgluError(f"{repo.name}: the schema list is not a JSON array")
    keys = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("self"), dict):
            s = item["self"]
            item = f"iglu:{s.get('vendor')}/{s.get('name')}/{s.get('format')}/{s.get('version')}"
        if isinstance(item, str):
            try:
                keys.append(SchemaKey.parse(item))
            except IgluError:
                log.warning("%s lists %r, not an Iglu URI: skipped", repo.name, item[:200])
    return sorted(set(keys))
