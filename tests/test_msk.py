"""lvp.msk: MSK IAM tokens for confluent-kafka's OAUTHBEARER callback (no network: tokens are
presigned URLs made locally from static fake credentials)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from botocore.credentials import Credentials
from confluent_kafka import Producer

from lvp.config import ConfigError, Settings
from lvp.kafka import client_config, consumer_config, producer_config
from lvp.local.broker import free_port
from lvp.msk import auth_token, make_oauth_cb, with_iam_auth

FAKE_KEY_ID = "AKIAFAKEKEYFORTESTS0"
FAKE_SECRET = "fake-secret-access-key-not-real"
OTHER_CREDENTIAL_SOURCES = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)


def decode(token: str) -> tuple[str, dict[str, list[str]]]:
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.netloc}{parsed.path}", parse_qs(parsed.query)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Fake static credentials in the environment and nothing else botocore could find."""
    for name in OTHER_CREDENTIAL_SOURCES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield


def test_token_is_a_presigned_connect_url_for_the_region() -> None:
    creds = Credentials(FAKE_KEY_ID, FAKE_SECRET, "session-token-x")
    before = time.time()
    token, expiry = auth_token("eu-west-1", creds)
    base, query = decode(token)
    assert base == "https://kafka.eu-west-1.amazonaws.com/"
    assert query["Action"] == ["kafka-cluster:Connect"]
    assert query["X-Amz-Credential"][0].startswith(f"{FAKE_KEY_ID}/")
    assert "/eu-west-1/kafka-cluster/aws4_request" in query["X-Amz-Credential"][0]
    assert query["X-Amz-Security-Token"] == ["session-token-x"]
    assert query["X-Amz-Expires"] == ["900"]
    assert "=" not in token  # base64url without padding, as MSK expects
    # expiry is in seconds (confluent-kafka), 15 minutes after signing
    signed = time.mktime(time.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")) - time.timezone
    assert expiry == pytest.approx(signed + 900)
    assert before - 5 <= signed <= time.time() + 5


@pytest.mark.usefixtures("aws_env")
def test_callback_uses_the_default_credential_chain() -> None:
    cb = make_oauth_cb("us-east-2")
    token, expiry = cb("ignored sasl.oauthbearer.config")
    _, query = decode(token)
    assert query["X-Amz-Credential"][0].startswith(f"{FAKE_KEY_ID}/")
    assert "X-Amz-Security-Token" not in query
    assert expiry > time.time()


def test_missing_credentials_fail_at_start_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", *OTHER_CREDENTIAL_SOURCES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConfigError, match="no AWS credentials"):
        make_oauth_cb("eu-west-1")
    # (an empty AWS_REGION is refused by Settings: tests/test_config.py)


def test_iam_auth_defaults_and_explicit_settings() -> None:
    creds = Credentials(FAKE_KEY_ID, FAKE_SECRET)
    conf = with_iam_auth({"bootstrap.servers": "b:9098"}, "eu-west-1", creds)
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "OAUTHBEARER"
    assert callable(conf["oauth_cb"])
    kept = with_iam_auth(
        {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "oauthbearer"}, "eu-west-1", creds
    )
    assert kept["security.protocol"] == "SASL_PLAINTEXT"
    # (another KAFKA_SASL_MECHANISM is refused by Settings: tests/test_config.py)


@pytest.mark.usefixtures("aws_env")
def test_client_configs_carry_the_callback_only_when_enabled() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "b-1.example:9098", "AWS_REGION": "eu-west-1"}
    off = Settings.from_env(env)
    assert "oauth_cb" not in client_config(off)
    assert "oauth_cb" not in producer_config(off)
    on = Settings.from_env({**env, "LVP_KAFKA_MSK_IAM": "true", "KAFKA_SASL_MECHANISM": "OAUTHBEARER"})
    for conf in (client_config(on), producer_config(on), consumer_config(on)):
        assert callable(conf["oauth_cb"])
        assert conf["security.protocol"] == "SASL_SSL"
        assert conf["sasl.mechanism"] == "OAUTHBEARER"
        assert conf["bootstrap.servers"] == "b-1.example:9098"
    assert consumer_config(on)["group.id"] == on.consumer_group
    with pytest.raises(ConfigError, match="OAUTHBEARER"):  # (by Settings, before any client)
        producer_config(
            Settings.from_env({**env, "LVP_KAFKA_MSK_IAM": "true", "KAFKA_SASL_MECHANISM": "PLAIN"})
        )


@pytest.mark.usefixtures("aws_env")
def test_librdkafka_calls_the_callback_when_the_client_starts() -> None:
    # Nothing listens on the port: the token is requested before any connection is made.
    settings = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "AWS_REGION": "eu-west-1",
            "LVP_KAFKA_MSK_IAM": "1",
            "KAFKA_LOG__LEVEL": "0",
        }
    )
    conf = producer_config(settings)
    signer = conf["oauth_cb"]
    tokens: list[tuple[str, float]] = []

    def recording(oauth_config: Any) -> tuple[str, float]:
        result = signer(oauth_config)
        tokens.append(result)
        return result

    conf["oauth_cb"] = recording
    producer = Producer(conf)
    try:
        assert tokens, "confluent-kafka did not ask for a token at start"
        base, query = decode(tokens[0][0])
        assert base == "https://kafka.eu-west-1.amazonaws.com/"
        assert query["Action"] == ["kafka-cluster:Connect"]
    finally:
        producer.purge()


@pytest.mark.usefixtures("aws_env")
def test_the_viewer_change_reader_authenticates_to_msk() -> None:
    # The viewer builds its own consumer config; on MSK it must carry the IAM callback too.
    changes = pytest.importorskip("viewer.changes")
    settings = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "b-1.example:9098",
            "AWS_REGION": "eu-west-1",
            "LVP_KAFKA_MSK_IAM": "true",
        }
    )
    conf = changes.reader_config(settings)
    assert callable(conf.get("oauth_cb")), "viewer/changes.py: build the config with lvp.kafka.client_config"
    assert conf["security.protocol"] == "SASL_SSL"
