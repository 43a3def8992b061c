"""`lvp schemas pull` against real HTTP repositories: an Iglu Server-shaped API (listing, API key)
and a static repository; the mirror it writes serves a collector registry with no network."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from iglu_servers import IgluServer, http_repo, resolver_config, schema_doc, static_repository, write_schema

from lvp.cli import main
from lvp.iglu import Registry


@pytest.fixture
def server() -> Iterator[IgluServer]:
    with IgluServer().running() as s:
        yield s


def test_pull_mirrors_listed_and_named_schemas(
    server: IgluServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.add(schema_doc("com.acme", "viewer_tier", tier={"enum": ["free", "premium"]}))
    server.add(schema_doc("com.acme.video", "chapter", title={"type": "string"}))
    server.add(schema_doc("org.other", "thing"))
    static_root = tmp_path / "static"
    write_schema(static_root, schema_doc("org.static", "only_here", n={"type": "integer"}))
    dest = tmp_path / "mirror"
    with static_repository(static_root) as static_url:
        resolver = tmp_path / "iglu_resolver.json"
        repos = [
            http_repo("acme", server.url, apikey=server.apikey),
            http_repo("static", static_url, priority=1),
        ]
        resolver.write_text(json.dumps(resolver_config(repos)))
        argv = ["schemas", "pull", "--resolver", str(resolver), "--dest", str(dest), "com.acme",
                "iglu:org.static/only_here/jsonschema/1-0-0"]  # fmt: skip
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "acme: 2 of 3 listed schemas to pull" in out
        assert "static: a static repository has no list" in out
        assert "pulled iglu:com.acme/viewer_tier/jsonschema/1-0-0 from acme" in out
        assert "pulled iglu:org.static/only_here/jsonschema/1-0-0 from static" in out
        assert "[3/3]" in out and "3 written, 0 unchanged, 0 failed" in out
        files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
        assert files == [
            "schemas/com.acme.video/chapter/jsonschema/1-0-0",
            "schemas/com.acme/viewer_tier/jsonschema/1-0-0",
            "schemas/org.static/only_here/jsonschema/1-0-0",
        ]
        # a second run changes nothing
        assert main(argv) == 0
        assert "0 written, 3 unchanged, 0 failed" in capsys.readouterr().out
    # the mirror is an LVP_SCHEMA_DIRS folder: validation without any repository
    registry = Registry([dest])
    assert registry.validate("iglu:com.acme/viewer_tier/jsonschema/1-0-0", {"tier": "free"}) == []
    assert registry.validate("iglu:com.acme/viewer_tier/jsonschema/1-0-0", {"tier": "gold"}) != []
    assert registry.validate("iglu:org.static/only_here/jsonschema/1-0-0", {"n": 3}) == []


def test_pull_reports_what_failed(
    server: IgluServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = schema_doc("com.acme", "broken")
    broken["self"]["version"] = "1-0"
    server.add(broken, path="com.acme/broken/jsonschema/1-0-0")
    server.add(schema_doc("com.acme", "fine"))
    resolver = tmp_path / "iglu_resolver.json"
    resolver.write_text(json.dumps(resolver_config([http_repo("acme", server.url, apikey=server.apikey)])))
    dest = tmp_path / "mirror"
    assert main(["schemas", "pull", "--resolver", str(resolver), "--dest", str(dest)]) == 1
    out = capsys.readouterr().out
    assert "pulled iglu:com.acme/fine/jsonschema/1-0-0" in out
    assert "failed iglu:com.acme/broken/jsonschema/1-0-0: acme: invalid schema" in out
    assert "1 written, 0 unchanged, 1 failed" in out
    assert not (dest / "schemas/com.acme/broken").exists()
    # a wrong API key: the list is refused, and said so
    resolver.write_text(json.dumps(resolver_config([http_repo("acme", server.url, apikey="wrong")])))
    assert main(["schemas", "pull", "--resolver", str(resolver), "--dest", str(dest), "com.acme"]) == 1
    assert "listing failed: acme: GET" in capsys.readouterr().out


def test_pull_needs_a_resolver_and_a_destination(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "pull", "--dest", str(tmp_path)]) == 2
    assert "LVP_IGLU_RESOLVER" in capsys.readouterr().err
    resolver = tmp_path / "r.json"
    resolver.write_text(json.dumps(resolver_config([http_repo("r", "http://127.0.0.1:9")])))
    assert main(["schemas", "pull", "--resolver", str(resolver)]) == 2
    assert "--dest" in capsys.readouterr().err
