from __future__ import annotations

import re
from pathlib import Path

import pytest

from lvp.cli import build_parser, settings_from_args
from lvp.config import DP_EPSILON_PRESETS, SETTINGS, ConfigError, Settings, kafka_passthrough

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


# --- values checked when Settings is built (one place for every service) ------------------------
INVALID = [
    # (environment, overrides, the error: it names the variable)
    ({"LVP_FREEZE_AFTER_S": "0"}, {}, "LVP_FREEZE_AFTER_S must be > 0 seconds, got 0.0"),
    ({"LVP_FREEZE_AFTER_S": "-1"}, {}, "LVP_FREEZE_AFTER_S must be > 0 seconds, got -1.0"),
    ({"LVP_FREEZE_AFTER_S": "nan"}, {}, "LVP_FREEZE_AFTER_S must be > 0 seconds, got nan"),
    ({}, {"freeze_after_s": 0.0}, "LVP_FREEZE_AFTER_S must be > 0 seconds, got 0.0"),
    ({"LVP_PROFILE_WRITE_INTERVAL_S": "0"}, {}, "LVP_PROFILE_WRITE_INTERVAL_S must be > 0 seconds, got 0.0"),
    ({}, {"profile_write_interval_s": -5.0}, "LVP_PROFILE_WRITE_INTERVAL_S must be > 0 seconds, got -5.0"),
    ({}, {"status_write_delay_s": -1.0}, "LVP_STATUS_WRITE_DELAY_S must be >= 0 seconds, got -1.0"),
    ({"LVP_STATUS_WRITE_DELAY_S": "nan"}, {}, "LVP_STATUS_WRITE_DELAY_S must be >= 0 seconds, got nan"),
    ({"LVP_PSEUDONYM_CACHE_SIZE": "0"}, {}, "LVP_PSEUDONYM_CACHE_SIZE must be >= 1, got 0"),
    ({}, {"pseudonym_cache_size": -1}, "LVP_PSEUDONYM_CACHE_SIZE must be >= 1, got -1"),
    ({"LVP_DP_EPSILON": "0"}, {}, "LVP_DP_EPSILON: ε must be positive; got 0.0"),
    ({"LVP_DP_EPSILON": "-1"}, {}, "LVP_DP_EPSILON: ε must be positive; got -1.0"),
    (
        {"LVP_DP_EPSILON": "lots"},
        {},
        "LVP_DP_EPSILON: ε must be a number or one of high_privacy, balanced, high_utility; got 'lots'",
    ),
    ({}, {"dp_epsilon": "Balanced"}, "LVP_DP_EPSILON: ε must be a number or one of"),
    ({"LVP_KAFKA_MSK_IAM": "true"}, {"aws_region": ""}, "LVP_KAFKA_MSK_IAM is on but AWS_REGION is empty"),
    (
        {"LVP_KAFKA_MSK_IAM": "true", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
        {},
        "LVP_KAFKA_MSK_IAM needs KAFKA_SASL_MECHANISM=OAUTHBEARER, not 'SCRAM-SHA-512'",
    ),
    (
        {"LVP_KAFKA_MSK_IAM": "true", "KAFKA_SASL_MECHANISM": "PLAIN"},
        {},
        "LVP_KAFKA_MSK_IAM needs KAFKA_SASL_MECHANISM=OAUTHBEARER, not 'PLAIN'",
    ),
]


@pytest.mark.parametrize(("env", "overrides", "message"), INVALID)
def test_invalid_value_is_refused_naming_the_variable(
    env: dict[str, str], overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.from_env(env, **overrides)
    if overrides:  # a copy is checked too
        with pytest.raises(ConfigError, match=re.escape(message)):
            Settings.from_env(env, **{k: None for k in overrides}).with_(**overrides)


@pytest.mark.parametrize(("env", "overrides", "message"), [row for row in INVALID if not row[1]])
def test_cli_reports_an_invalid_value_as_a_configuration_error(
    env: dict[str, str],
    overrides: dict[str, object],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lvp.cli import main

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["topics", "create"]) == 2  # refused before any client is made
    assert capsys.readouterr().err == f"lvp: configuration error: {message}\n"


def test_valid_values_are_accepted() -> None:
    presets = [Settings.from_env({"LVP_DP_EPSILON": p}).dp_epsilon_value for p in DP_EPSILON_PRESETS]
    assert presets == [0.1, 1.0, 10.0]
    assert set(DP_EPSILON_PRESETS) == {"high_privacy", "balanced", "high_utility"}
    assert Settings.from_env({}).dp_epsilon_value == 1.0  # balanced
    assert Settings.from_env({"LVP_DP_EPSILON": "2.5"}).dp_epsilon_value == 2.5
    assert Settings.from_env({"LVP_FREEZE_AFTER_S": "0.1"}).freeze_after_s == 0.1
    msk = {"LVP_KAFKA_MSK_IAM": "true", "AWS_REGION": "eu-west-1"}
    assert Settings.from_env(msk).kafka_msk_iam
    assert Settings.from_env({**msk, "KAFKA_SASL_MECHANISM": "oauthbearer"}).kafka_msk_iam
    # without MSK IAM the mechanism is librdkafka's business
    assert Settings.from_env({"KAFKA_SASL_MECHANISM": "PLAIN"}).kafka_config()["sasl.mechanism"] == "PLAIN"


def test_kafka_passthrough_is_a_field_kept_by_copies_and_out_of_the_repr() -> None:
    env = {"KAFKA_SASL_USERNAME": "alice", "KAFKA_SASL_PASSWORD": "kafka-password-5e6f7a8b"}
    s = Settings.from_env(env)
    assert s.kafka_env_properties == {"sasl.username": "alice", "sasl.password": "kafka-password-5e6f7a8b"}
    copy = s.with_(topic_good="x")
    assert copy.kafka_config()["sasl.password"] == "kafka-password-5e6f7a8b"
    assert "kafka-password-5e6f7a8b" not in repr(s) + repr(copy)
    assert s == Settings.from_env({})  # not a setting: not compared
    assert "kafka_env_properties" not in {f.name for f in SETTINGS}
    assert Settings().kafka_config() == {"bootstrap.servers": "127.0.0.1:9092"}


def test_setting_flags_have_the_settings_types() -> None:
    args = build_parser().parse_args(["collector", "--port", "9999", "--request-timeout", "2.5", "--dev"])
    s = settings_from_args(args)
    assert (s.collector_port, s.request_timeout_s, s.dev) == (9999, 2.5, True)
    assert settings_from_args(build_parser().parse_args(["collector", "--no-dev"])).dev is False
    with pytest.raises(SystemExit):
        build_parser().parse_args(["collector", "--port", "many"])
