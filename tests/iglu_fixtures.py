"""Shared by the tests of the generated and typed Iglu checks: a registry with one more schema
of the test's own (the media schemas' URIs are :mod:`lvp.events`'s ``*_SCHEMA`` constants)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lvp.iglu import Registry, SchemaKey

SP = "com.snowplowanalytics.snowplow"
SELF_DESCRIBING = "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#"


def registry_with(root: Path, uri: str, body: dict[str, Any]) -> Registry:
    """The bundled registry plus ``uri`` (its ``self`` block and ``$schema`` added to ``body``)
    in a repository under ``root``; every schema compiled."""
    key = SchemaKey.parse(uri)
    path = root / "schemas" / key.vendor / key.name / key.format / key.version
    path.parent.mkdir(parents=True)
    self_block = {"vendor": key.vendor, "name": key.name, "format": key.format, "version": key.version}
    path.write_text(json.dumps({"$schema": SELF_DESCRIBING, "self": self_block, **body}))
    registry = Registry([root])
    registry.compile_all()
    return registry
