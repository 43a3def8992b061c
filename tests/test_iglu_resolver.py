"""The Iglu resolver against real HTTP repositories started here: a static repository served from a
temp folder and an Iglu Server-shaped API with API-key checks."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from iglu_servers import IgluServer, http_repo, resolver_config, schema_doc, static_repository, write_schema

from lvp.config import Settings
from lvp.iglu import Registry, ResolutionFailed, SchemaKey, UnknownSchema
from lvp.iglu_resolver import Resolver, ResolverConfig, ResolverConfigError
from lvp.local.broker import free_port

ACME = "com.acme"
TIER = f"iglu:{ACME}/viewer_tier/jsonschema/1-0-0"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> Iterator[IgluServer]:
    with IgluServer().running() as s:
        yield s


def make_registry(config: Any, *, wait: float = 2.0, timeout: float = 2.0, clock: Any = None) -> Registry:
    kwargs = {"clock": clock} if clock is not None else {}
    resolver = Resolver(ResolverConfig.parse(config), timeout=timeout, **kwargs)
    return Registry(resolver=resolver, lookup_wait=wait)


def server_repo(s: IgluServer, name: str = "acme-server", **kw: Any) -> Any:
    return http_repo(name, s.url, apikey=kw.pop("apikey", s.apikey), **kw)


# --- configuration -----------------------------------------------------------------------------


def test_the_resolver_configuration_and_snowplow_order(tmp_path: Path) -> None:
    (tmp_path / "local").mkdir()
    doc = resolver_config(
        [
            http_repo("central", "http://central.example", priority=0, prefixes=("com.snowplowanalytics",)),
            http_repo("acme-static", "http://static.example", priority=5),
            http_repo(
                "acme-server",
                "http://iglu.example",
                priority=1,
                apikey="top-secret-key",
                prefixes=("com.acme",),
            ),
            {
                "name": "local",
                "priority": 9,
                "vendorPrefixes": [],
                "connection": {"embedded": {"path": "local"}},
            },
            http_repo("low", "http://low.example", priority=2),
        ],
        cache_ttl=30,
        size=7,
    )
    path = tmp_path / "iglu_resolver.json"
    path.write_text(json.dumps(doc))
    config = ResolverConfig.load(path)
    assert (config.cache_size, config.cache_ttl) == (7, 30.0)
    kinds = {r.name: r.kind for r in config.repositories}
    assert kinds == {"central": "http", "acme-static": "http", "acme-server": "server", "local": "embedded",
                     "low": "http"}  # fmt: skip
    assert next(r for r in config.repositories if r.name == "local").path == str(tmp_path.resolve() / "local")
    # vendor prefixes first, then embedded before HTTP, then priority
    assert [r.name for r in config.ordered("com.acme.video")] == [
        "acme-server", "local", "central", "low", "acme-static"
    ]  # fmt: skip
    assert [r.name for r in config.ordered("org.other")] == [
        "local",
        "central",
        "acme-server",
        "low",
        "acme-static",
    ]
    server = next(r for r in config.repositories if r.name == "acme-server")
    assert (
        server.schema_url(SchemaKey.parse(TIER))
        == "http://iglu.example/api/schemas/com.acme/viewer_tier/jsonschema/1-0-0"
    )
    assert server.headers() == {"apikey": "top-secret-key"}
    assert "top-secret-key" not in repr(server)  # the API key never shows in logs


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema="iglu:com.acme/config/jsonschema/1-0-0"), "resolver-config"),
        (lambda d: d["data"].update(cacheSize=-1), "cacheSize"),
        (lambda d: d["data"].update(cacheTtl="10"), "cacheTtl"),
        (lambda d: d["data"]["repositories"][0].update(connection={"ftp": {}}), "embedded.path or http.uri"),
        (
            lambda d: d["data"]["repositories"][0]["connection"]["http"].update(uri="iglu.example"),
            "http(s) URL",
        ),
        (lambda d: d["data"]["repositories"][0].pop("priority"), "priority"),
    ],
)
def test_a_malformed_configuration_is_refused_with_the_reason(mutate: Any, message: str) -> None:
    doc = resolver_config([http_repo("r", "http://iglu.example")])
    mutate(doc)
    with pytest.raises(ResolverConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ResolverConfig.parse(doc)


def test_settings_build_the_resolver_and_a_broken_file_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "resolver.json"
    path.write_text(json.dumps(resolver_config([http_repo("r", "http://127.0.0.1:9")])))
    settings = Settings.from_env({"LVP_IGLU_RESOLVER": str(path), "LVP_IGLU_TIMEOUT_S": "0.5"})
    registry = Registry.from_settings(settings)
    assert registry.resolver is not None and registry.resolver.timeout == 0.5 and registry.lookup_wait == 0.5
    path.write_text("{not json")
    with pytest.raises(ResolverConfigError, match="not readable JSON"):
        Registry.from_settings(settings)


# --- lookups ---------------------------------------------------------------------------------


def test_schemas_resolve_from_a_static_repository_and_an_iglu_server(
    tmp_path: Path, server: IgluServer
) -> None:
    write_schema(tmp_path, schema_doc(ACME, "static_thing", label={"type": "string"}))
    server.add(schema_doc(ACME, "viewer_tier", tier={"enum": ["free", "premium"]}))
    with static_repository(tmp_path) as static_url:
        registry = make_registry(resolver_config([http_repo("static", static_url), server_repo(server)]))
        assert registry.validate(f"iglu:{ACME}/static_thing/jsonschema/1-0-0", {"label": "x"}) == []
        assert registry.validate(TIER, {"tier": "premium"}) == []
        failures = registry.validate(TIER, {"tier": "gold"})
        assert failures and failures[0].path == "$.tier"
        assert f"iglu:{ACME}/static_thing/jsonschema/1-0-0" in registry and TIER in registry
        # the bundled schemas never go to the network
        before = len(server.requests)
        registry.validator("iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0")
        assert len(server.requests) == before


def test_the_iglu_server_needs_the_api_key(server: IgluServer) -> None:
    server.add(schema_doc(ACME, "viewer_tier"))
    registry = make_registry(resolver_config([server_repo(server, apikey="wrong")]))
    with pytest.raises(ResolutionFailed, match="HTTP 403: not authorized"):
        registry.validator(TIER)


def test_priority_order_decides_which_copy_is_used(tmp_path: Path, server: IgluServer) -> None:
    # the same key in three repositories, each copy accepting a different property
    write_schema(tmp_path / "static", schema_doc(ACME, "viewer_tier", from_static={"type": "string"}))
    write_schema(tmp_path / "local", schema_doc(ACME, "viewer_tier", from_local={"type": "string"}))
    server.add(schema_doc(ACME, "viewer_tier", from_server={"type": "string"}))
    embedded = {"name": "local", "priority": 5, "vendorPrefixes": [],
                "connection": {"embedded": {"path": str(tmp_path / "local")}}}  # fmt: skip

    def winner(repos: list[Any]) -> str:
        registry = make_registry(resolver_config(repos))
        schema = registry.validator(TIER).schema
        return next(iter(schema["properties"]))

    with static_repository(tmp_path / "static") as static_url:
        # priority among HTTP repositories: lower first
        assert (
            winner([http_repo("static", static_url, priority=2), server_repo(server, priority=1)])
            == "from_server"
        )
        assert (
            winner([http_repo("static", static_url, priority=0), server_repo(server, priority=1)])
            == "from_static"
        )
        # embedded before HTTP whatever the priority
        assert winner([http_repo("static", static_url, priority=0), embedded]) == "from_local"
        # a vendor prefix match comes first of all
        assert (
            winner([embedded, http_repo("static", static_url, priority=9, prefixes=("com.acme",))])
            == "from_static"
        )
        # a repository that does not have it is passed over
        assert (
            winner([http_repo("empty", static_url + "/nothing", priority=0), server_repo(server, priority=3)])
            == "from_server"
        )


def test_hits_and_misses_are_cached_until_the_ttl(server: IgluServer) -> None:
    clock = FakeClock()
    server.add(schema_doc(ACME, "viewer_tier"))
    registry = make_registry(resolver_config([server_repo(server)], cache_ttl=60), clock=clock)
    missing = f"iglu:{ACME}/later/jsonschema/1-0-0"
    for _ in range(3):
        assert registry.validate(TIER, {"label": "a"}) == []
        with pytest.raises(UnknownSchema, match="acme-server: NotFound"):
            registry.validator(missing)
    assert server.hits("viewer_tier") == 1 and server.hits("/later/") == 1  # one request each
    server.add(schema_doc(ACME, "later"))
    clock.now += 59
    with pytest.raises(UnknownSchema):  # the miss is still cached
        registry.validator(missing)
    assert server.hits("/later/") == 1
    clock.now += 2  # past the TTL: looked up again, now found
    assert registry.validate(missing, {"label": "b"}) == []
    assert server.hits("/later/") == 2


def test_a_changed_schema_is_used_after_a_short_cache_ttl(server: IgluServer) -> None:
    server.add(schema_doc(ACME, "viewer_tier", label={"type": "string"}))
    registry = make_registry(resolver_config([server_repo(server)], cache_ttl=0.5))
    assert registry.validate(TIER, {"label": "x"}) == []
    server.add(schema_doc(ACME, "viewer_tier", label={"type": "integer"}))  # patched on the server
    deadline = time.monotonic() + 20
    while registry.fast_checks[TIER]({"label": "x"}) or registry.validate(TIER, {"label": "x"}) == []:
        assert time.monotonic() < deadline, "the new schema was never used"
        time.sleep(0.1)
    assert registry.validate(TIER, {"label": 3}) == []
    assert server.hits("viewer_tier") >= 2


def test_a_cache_of_size_one_forgets_the_least_recently_used(server: IgluServer) -> None:
    server.add(schema_doc(ACME, "viewer_tier"))
    server.add(schema_doc(ACME, "other"))
    resolver = Resolver(ResolverConfig.parse(resolver_config([server_repo(server)], size=1)))
    tier, other = SchemaKey.parse(TIER), SchemaKey.parse(f"iglu:{ACME}/other/jsonschema/1-0-0")
    assert resolver.lookup_now(tier).schema is not None
    assert resolver.lookup_now(other).schema is not None
    assert resolver.cached(tier) is None and resolver.cached(other) is not None
    resolver.lookup_now(tier)
    assert server.hits("viewer_tier") == 2


def test_refs_resolve_through_the_repositories(server: IgluServer) -> None:
    server.add(schema_doc(ACME, "base", label={"type": "string", "maxLength": 5}))
    derived = schema_doc(ACME, "derived")
    for k in ("properties", "required", "additionalProperties"):
        derived.pop(k)
    derived["allOf"] = [{"$ref": f"iglu:{ACME}/base/jsonschema/1-0-0#"}]
    server.add(derived)
    registry = make_registry(resolver_config([server_repo(server)]))
    uri = f"iglu:{ACME}/derived/jsonschema/1-0-0"
    assert registry.validate(uri, {"label": "short"}) == []
    failures = registry.validate(uri, {"label": "far too long"})
    assert failures and failures[0].keyword == "maxLength"
    assert server.hits("/base/") == 1


def test_the_api_key_never_follows_a_redirect(server: IgluServer) -> None:
    """An Iglu Server that redirects elsewhere: the API key is not sent to the other host."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Redirect(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", f"{server.url}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server.add(schema_doc(ACME, "viewer_tier"))
    redirector = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=redirector.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{redirector.server_address[1]}"
        registry = make_registry(resolver_config([http_repo("moved", url, apikey=server.apikey)]))
        with pytest.raises(ResolutionFailed, match="moved: HTTP 302"):
            registry.validator(TIER)
        assert server.requests == []  # the key-holding request never reached the other host
    finally:
        redirector.shutdown()
        redirector.server_close()


def test_a_404_is_not_found_and_the_bad_row_reason_says_so(server: IgluServer) -> None:
    registry = make_registry(resolver_config([server_repo(server)]))
    with pytest.raises(
        UnknownSchema,
        match=r"iglu:com.acme/viewer_tier/jsonschema/1-0-0 was not found: acme-server: NotFound",
    ):
        registry.validator(TIER)


@pytest.mark.parametrize(
    ("served", "reason"),
    [
        (lambda d: d.update({"$schema": "http://json-schema.org/draft-04/schema#"}), r"`\$schema` must be"),
        (lambda d: d.update(type=5), "not a valid JSON Schema draft 4"),
        (lambda d: d["self"].update(extra="x"), "fails the Iglu meta-schema at"),
        (lambda d: d["self"].update(name="someone_else"), "`self` says iglu:com.acme/someone_else"),
        (lambda d: d.pop("self"), "no `self` block"),
    ],
)
def test_a_schema_failing_the_meta_schema_is_refused_with_the_reason(
    server: IgluServer, served: Any, reason: str
) -> None:
    doc = schema_doc(ACME, "viewer_tier")
    served(doc)
    server.add(doc, path="com.acme/viewer_tier/jsonschema/1-0-0")
    registry = make_registry(resolver_config([server_repo(server)]))
    with pytest.raises(ResolutionFailed, match=reason):
        registry.validator(TIER)
    assert TIER not in registry


def test_an_answer_that_is_not_json_is_refused(tmp_path: Path) -> None:
    path = write_schema(tmp_path, schema_doc(ACME, "viewer_tier"))
    path.write_text("<html>oops</html>")
    with static_repository(tmp_path) as url:
        registry = make_registry(resolver_config([http_repo("static", url)]))
        with pytest.raises(ResolutionFailed, match="static: the answer is not JSON"):
            registry.validator(TIER)


def test_a_closed_port_fails_fast_and_cached_schemas_keep_working(tmp_path: Path) -> None:
    write_schema(tmp_path, schema_doc(ACME, "viewer_tier"))
    closed = f"http://127.0.0.1:{free_port()}"
    with static_repository(tmp_path) as url:
        registry = make_registry(
            resolver_config([http_repo("down", closed, priority=0), http_repo("static", url, priority=1)])
        )
        assert registry.validate(TIER, {"label": "a"}) == []  # found after the closed one
        with pytest.raises(ResolutionFailed, match=r"down: .*unreachable") as info:
            registry.validator(f"iglu:{ACME}/nowhere/jsonschema/1-0-0")
        assert "static: NotFound" in str(info.value)
        # the unreachable repository is skipped for its back-off
        with pytest.raises(ResolutionFailed, match="down: unreachable, skipped"):
            registry.validator(f"iglu:{ACME}/elsewhere/jsonschema/1-0-0")
        assert registry.validate(TIER, {"label": "b"}) == []


def test_a_hanging_repository_never_stalls_lookups_of_cached_schemas(server: IgluServer) -> None:
    clock = FakeClock()
    server.add(schema_doc(ACME, "viewer_tier"))
    registry = make_registry(
        resolver_config([server_repo(server)], cache_ttl=60), wait=0.3, timeout=30, clock=clock
    )
    assert registry.validate(TIER, {"label": "a"}) == []
    server.hang.set()  # from now on every request blocks until released
    # a schema nobody knows yet: the caller gets an answer (a failure) while the server hangs
    with pytest.raises(ResolutionFailed, match=r"did not finish within 0\.3 s"):
        registry.validator(f"iglu:{ACME}/unknown/jsonschema/1-0-0")
    assert not server.release.is_set() and server.hits("/unknown/") == 1
    # asked again while its lookup still hangs: no new request, same answer
    with pytest.raises(ResolutionFailed, match="did not finish"):
        registry.validator(f"iglu:{ACME}/unknown/jsonschema/1-0-0")
    assert server.hits("/unknown/") == 1
    # another new schema while that lookup hangs: not waited for at all
    with pytest.raises(ResolutionFailed, match="not waited for while a repository is slow"):
        registry.validator(f"iglu:{ACME}/other_unknown/jsonschema/1-0-0")
    # the cached schema answers at once, also once its entry expired (refreshed in the background)
    clock.now += 61
    for _ in range(5):
        assert registry.validate(TIER, {"label": "b"}) == []
        assert registry.validate(TIER, {"label": 1}) != []
    assert not server.release.is_set(), "the server was still hanging"
    deadline = time.monotonic() + 20  # the background refresh reaches the server and hangs there
    while server.hits("viewer_tier") < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert registry.validate(TIER, {"label": "c"}) == [] and not server.release.is_set()
    assert server.hits("viewer_tier") == 2
    server.release.set()
    server.hang.clear()


def test_a_failed_refresh_keeps_the_known_schema(tmp_path: Path) -> None:
    clock = FakeClock()
    write_schema(tmp_path, schema_doc(ACME, "viewer_tier"))
    port_holder: dict[str, str] = {}
    with static_repository(tmp_path) as url:
        port_holder["url"] = url
        config = resolver_config([http_repo("static", url)], cache_ttl=10)
        resolver = Resolver(ResolverConfig.parse(config), timeout=2, clock=clock)
        key = SchemaKey.parse(TIER)
        assert resolver.lookup_now(key).schema is not None
    # the repository is gone now; the entry expires and the refresh fails
    clock.now += 11
    stale = resolver.resolve(key, wait=0)
    assert stale is not None and stale.schema is not None
    done = threading.Event()
    deadline = time.monotonic() + 20
    while not done.is_set():
        entry = resolver.cached(key)
        if entry is not None and entry.failed:
            done.set()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    entry = resolver.cached(key)
    assert entry is not None and entry.schema is not None  # still known
    assert orjson.loads(orjson.dumps(entry.schema))["self"]["name"] == "viewer_tier"


# --- end to end: the collector with a resolver configuration ------------------------------------


def test_the_collector_accepts_an_entity_that_only_the_iglu_server_has(
    broker: str, server: IgluServer, tmp_path: Path
) -> None:
    import httpx
    from collector_server import TEST_KEY, read_topic, serve_collector, unique

    from lvp.enriched import from_tsv
    from lvp.kafka import create_topics

    server.add(schema_doc(ACME, "viewer_tier", tier={"enum": ["free", "premium"]}))
    path = tmp_path / "iglu_resolver.json"
    path.write_text(json.dumps(resolver_config([server_repo(server)])))
    settings = Settings.from_env(
        {"LVP_IGLU_RESOLVER": str(path)},
        kafka_bootstrap_servers=broker,
        topic_good=unique("good"),
        topic_bad=unique("bad"),
        pseudonym_key=TEST_KEY,
    )
    create_topics(settings)
    marker = unique("iglu")

    def event(entity: dict[str, Any], n: int) -> dict[str, str]:
        contexts = {
            "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
            "data": [entity],
        }
        return {"e": "pv", "tv": "js-4.0.1", "p": "web", "aid": f"{marker}-{n}", "eid": str(uuid.uuid4()),
                "url": "https://site.example/", "co": json.dumps(contexts)}  # fmt: skip

    good = {"schema": TIER, "data": {"tier": "premium"}}
    wrong = {"schema": TIER, "data": {"tier": "gold"}}
    unknown = {"schema": f"iglu:{ACME}/nobody_has_it/jsonschema/1-0-0", "data": {}}
    body = orjson.dumps(
        {
            "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
            "data": [event(good, 1), event(wrong, 2), event(unknown, 3)],
        }
    )
    with serve_collector(settings) as running, httpx.Client(base_url=running.url, timeout=15) as c:
        r = c.post("/com.snowplowanalytics.snowplow/tp2", content=body)
        assert r.status_code == 200, r.text
    lines = read_topic(broker, settings.topic_good, 1, lambda v: marker.encode() in v)
    assert len(lines) == 1
    fields = from_tsv(lines[0][1].decode())
    assert fields["app_id"] == f"{marker}-1"
    assert {"schema": TIER, "data": {"tier": "premium"}} in json.loads(fields["contexts"])["data"]
    bad = [
        orjson.loads(v) for _, v in read_topic(broker, settings.topic_bad, 2, lambda v: marker.encode() in v)
    ]
    assert len(bad) == 2
    by_app = {}
    for row in bad:
        text = orjson.dumps(row).decode()
        assert row["schema"].startswith("iglu:com.snowplowanalytics.snowplow.badrows/schema_violations/")
        by_app[next(n for n in (2, 3) if f"{marker}-{n}" in text)] = row["data"]["failure"]["messages"]
    assert by_app[2][0]["error"]["error"] == "ValidationError" and by_app[2][0]["schemaKey"] == TIER
    assert by_app[3][0]["error"]["error"] == "ResolutionError"
    assert server.hits("/viewer_tier/") == 1 and server.hits("/nobody_has_it/") == 1


def test_the_collector_keeps_serving_cached_schemas_while_the_iglu_server_hangs(
    broker: str, server: IgluServer, tmp_path: Path
) -> None:
    import httpx
    from collector_server import TEST_KEY, read_topic, serve_collector, unique

    from lvp.kafka import create_topics

    server.add(schema_doc(ACME, "viewer_tier", tier={"enum": ["free", "premium"]}))
    path = tmp_path / "iglu_resolver.json"
    path.write_text(json.dumps(resolver_config([server_repo(server)], cache_ttl=600)))
    settings = Settings.from_env(
        {"LVP_IGLU_RESOLVER": str(path), "LVP_IGLU_TIMEOUT_S": "0.5"},
        kafka_bootstrap_servers=broker,
        topic_good=unique("good"),
        topic_bad=unique("bad"),
        pseudonym_key=TEST_KEY,
    )
    create_topics(settings)
    marker = unique("hang")

    def body(schema: str, data: dict[str, Any], n: int) -> bytes:
        contexts = {"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
                    "data": [{"schema": schema, "data": data}]}  # fmt: skip
        event = {"e": "pv", "tv": "js-4.0.1", "p": "web", "aid": f"{marker}-{n}", "eid": str(uuid.uuid4()),
                 "url": "https://site.example/", "co": json.dumps(contexts)}  # fmt: skip
        return orjson.dumps(
            {"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4", "data": [event]}
        )

    tp2 = "/com.snowplowanalytics.snowplow/tp2"
    with serve_collector(settings) as running, httpx.Client(base_url=running.url, timeout=15) as c:
        assert c.post(tp2, content=body(TIER, {"tier": "free"}, 1)).status_code == 200  # now cached
        server.hang.set()
        # a schema nobody knows yet: its lookup hangs, the event becomes a bad row (no 5xx)
        unknown = c.post(tp2, content=body(f"iglu:{ACME}/new_thing/jsonschema/1-0-0", {}, 2))
        assert unknown.status_code == 400 and "schema_violations" in unknown.text
        # events needing only the cached schema are accepted while the server still hangs
        for n in range(3, 6):
            assert c.post(tp2, content=body(TIER, {"tier": "premium"}, n)).status_code == 200
        assert not server.release.is_set() and server.hits("/new_thing/") == 1
        assert c.get("/health").status_code == 200
    server.release.set()
    good = read_topic(broker, settings.topic_good, 4, lambda v: marker.encode() in v)
    assert sorted(int(v.split(marker.encode() + b"-")[1][:1]) for _, v in good) == [1, 3, 4, 5]
    bad = read_topic(broker, settings.topic_bad, 1, lambda v: marker.encode() in v)
    # the caller's wait and the repository request both give up after LVP_IGLU_TIMEOUT_S: whichever
    # comes first (a loaded machine decides) names the hang
    assert len(bad) == 1
    assert b"did not finish within 0.5 s" in bad[0][1] or b"did not answer within 0.5 s" in bad[0][1]
