from __future__ import annotations

import re
from pathlib import Path

import pytest

from lvp.cli import build_parser, settings_from_args
from lvp.config import SETTINGS, ConfigError, Settings, kafka_passthrough

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_from_issue() -> None:
    s = Settings.from_env({})
    assert s.topic_good == "snowplow-enriched-good"
    assert s.topic_bad == "snowplow-bad-rows"
    assert s.topic_partitions == 4
    assert s.reorder_window_s == 10.0
    assert s.active_timeout_s == 75.0
    assert s.table_profiles == "viewer_profiles"
    assert s.table_history == "viewer_history"
    assert s.consumer_group == "lvp-profiles"


def test_env_is_typed_and_overrides_win() -> None:
    s = Settings.from_env({"LVP_TOPIC_PARTITIONS": "8", "LVP_DEV": "yes", "LVP_PUSH_INTERVAL_S": "0.5"})
    assert (s.topic_partitions, s.dev, s.push_interval_s) == (8, True, 0.5)
    s2 = Settings.from_env({"LVP_TOPIC_PARTITIONS": "8"}, topic_partitions=2, topic_good=None)
    assert s2.topic_partitions == 2 and s2.topic_good == "snowplow-enriched-good"


def test_bad_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="LVP_TOPIC_PARTITIONS"):
        Settings.from_env({"LVP_TOPIC_PARTITIONS": "four"})
    with pytest.raises(ConfigError, match="LVP_DEV"):
        Settings.from_env({"LVP_DEV": "maybe"})


def test_kafka_passthrough_maps_to_librdkafka_keys() -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "b:9092",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "OAUTHBEARER",
        "KAFKA_SSL_ENDPOINT_IDENTIFICATION__ALGORITHM": "https",
        "LVP_TOPIC_GOOD": "x",
    }
    assert kafka_passthrough(env) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "OAUTHBEARER",
        "ssl.endpoint.identification_algorithm": "https",
    }
    conf = Settings.from_env(env).kafka_config(acks="all")
    assert conf["bootstrap.servers"] == "b:9092" and conf["security.protocol"] == "SASL_SSL"
    assert conf["acks"] == "all"


def test_pseudonym_key_required_outside_dev(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LVP_PSEUDONYM_KEY"):
        Settings.from_env({}).require_pseudonym_key()
    s = Settings.from_env({"LVP_DEV": "1", "LVP_STATE_DIR": str(tmp_path)})
    key = s.require_pseudonym_key()
    assert len(key) == 64 and s.require_pseudonym_key() == key  # generated once, kept
    assert (tmp_path / "pseudonym.key").stat().st_mode & 0o077 == 0
    key32 = "k" * 32
    assert Settings.from_env({"LVP_PSEUDONYM_KEY": key32}).require_pseudonym_key() == key32.encode()


def test_short_pseudonym_key_refused_outside_dev(tmp_path: Path) -> None:
    """A key shorter than 32 bytes (the HMAC-SHA256 output) is refused at start with a clear
    error, unless in dev mode (issue #12)."""
    with pytest.raises(ConfigError, match=r"LVP_PSEUDONYM_KEY is 31 bytes.*shorter than 32 bytes"):
        Settings.from_env({"LVP_PSEUDONYM_KEY": "k" * 31}).require_pseudonym_key()
    # bytes, not characters: 11 three-byte characters are 33 bytes
    assert len(Settings.from_env({"LVP_PSEUDONYM_KEY": "€" * 11}).require_pseudonym_key()) == 33
    dev = Settings.from_env({"LVP_PSEUDONYM_KEY": "short", "LVP_DEV": "1", "LVP_STATE_DIR": str(tmp_path)})
    assert dev.require_pseudonym_key() == b"short"


def test_secrets_stay_out_of_the_settings_repr() -> None:
    secrets = {
        "LVP_PSEUDONYM_KEY": "pseudonym-key-4f1c2a9be7d3-0123456789",
        "LVP_JWT_SECRET": "jwt-secret-9a8b7c6d5e",
        "LVP_API_TOKENS": "token-one-1a2b3c,token-two-4d5e6f",
    }
    s = Settings.from_env(secrets)
    shown = repr(s) + str(s) + f"{s}" + repr(s.with_(topic_good="x"))
    assert "topic_good=" in shown and "kafka_bootstrap_servers=" in shown
    for value in [*secrets.values(), "token-one-1a2b3c", "token-two-4d5e6f"]:
        assert value not in shown
    secret_fields = {f.name for f in SETTINGS if f.metadata["secret"]}
    assert secret_fields == {"pseudonym_key", "api_tokens", "jwt_secret"}
    assert all(not f.repr for f in SETTINGS if f.metadata["secret"])


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LVP_TOPIC_PARTITIONS", "9")
    args = build_parser().parse_args(["topics", "create", "--partitions", "3"])
    assert settings_from_args(args).topic_partitions == 3
    args = build_parser().parse_args(["topics", "create"])
    assert settings_from_args(args).topic_partitions == 9


def test_readme_settings_table_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_<>]+)` \|", readme, flags=re.M))
    for f in SETTINGS:
        assert f.metadata["env"] in documented, f"{f.metadata['env']} missing from README"
    assert "KAFKA_<KEY>" in documented
