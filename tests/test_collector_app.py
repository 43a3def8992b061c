from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from collector.app import create_app
from lvp.cli import build_parser, settings_from_args
from lvp.config import ConfigError, Settings
from lvp.gc_policy import SERVICE_GC_THRESHOLDS
from lvp.iglu import IgluError


def test_refuses_to_start_without_a_pseudonym_key(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="LVP_PSEUDONYM_KEY"):
        create_app(make_settings(pseudonym_key=""))


def test_refuses_to_start_with_a_short_pseudonym_key(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="LVP_PSEUDONYM_KEY is 31 bytes"):
        create_app(make_settings(pseudonym_key="k" * 31))


def test_dev_mode_generates_and_keeps_a_key(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    create_app(make_settings(pseudonym_key="", dev=True, state_dir=str(tmp_path)))
    key = (tmp_path / "pseudonym.key").read_text().strip()
    assert len(key) == 64 and (tmp_path / "pseudonym.key").stat().st_mode & 0o077 == 0
    create_app(make_settings(pseudonym_key="", dev=True, state_dir=str(tmp_path)))
    assert (tmp_path / "pseudonym.key").read_text().strip() == key


def test_a_broken_user_schema_stops_the_start(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    bad = tmp_path / "schemas" / "com.acme" / "x" / "jsonschema" / "1-0-0"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    with pytest.raises(IgluError, match="not readable JSON"):
        create_app(make_settings(schema_dirs=str(tmp_path)))


def test_collector_command_flags() -> None:
    args = build_parser().parse_args(
        ["collector", "--host", "0.0.0.0", "--port", "9999", "--cors-origins", "*"]
    )
    settings = settings_from_args(args)
    assert (settings.collector_host, settings.collector_port, settings.cors_origins) == ("0.0.0.0", 9999, "*")
    assert args.func.__module__ == "collector.cli"


def test_the_garbage_collector_policy_holds_while_the_collector_serves(
    make_settings: Callable[..., Settings],
) -> None:
    """lvp.gc_policy: raised thresholds from the lifespan's start to its end, then what was there."""
    from collector_server import TEST_KEY, serve_collector

    before = gc.get_threshold()
    with serve_collector(make_settings(pseudonym_key=TEST_KEY)) as running:
        assert httpx.get(running.url + "/health", timeout=15).status_code == 200
        assert gc.get_threshold() == SERVICE_GC_THRESHOLDS
    assert gc.get_threshold() == before
