"""Shared by the tests of the generated and typed Iglu checks: the entity schemas the media plugin
sends (:mod:`lvp.events`'s constants) and a registry with one more schema of the test's own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lvp.events import (
    MEDIA_AD_BREAK_SCHEMA,
    MEDIA_AD_SCHEMA,
    MEDIA_PLAYER_SCHEMA,
    MEDIA_SESSION_SCHEMA,
    WEB_PAGE_SCHEMA,
)
from lvp.iglu import Registry, SchemaKey

SP = "com.snowplowanalytics.snowplow"
#: The entity schemas of the media plugin's events (player, session, page, ad, ad break).
MEDIA_ENTITY_SCHEMAS = (
    MEDIA_PLAYER_SCHEMA,
    MEDIA_SESSION_SCHEMA,
    WEB_PAGE_SCHEMA,
    MEDIA_AD_SCHEMA,
    MEDIA_AD_BREAK_SCHEMA,
)
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
