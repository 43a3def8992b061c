"""Amazon MSK IAM authentication for librdkafka (confluent-kafka) clients.

MSK (Serverless and provisioned) accepts SASL/OAUTHBEARER tokens that are SigV4-presigned
``kafka-cluster:Connect`` URLs, made by ``aws-msk-iam-sasl-signer-python`` from the process's AWS
credentials (the ECS task role in AWS). Turn it on with ``LVP_KAFKA_MSK_IAM=true``; the client
configs of :mod:`lvp.kafka` then carry ``oauth_cb`` and default ``security.protocol=SASL_SSL`` and
``sasl.mechanism=OAUTHBEARER`` (``KAFKA_SECURITY_PROTOCOL`` / ``KAFKA_SASL_MECHANISM`` may set
them explicitly; :class:`lvp.config.Settings` refuses any mechanism other than OAUTHBEARER, and
an empty ``AWS_REGION``, when MSK IAM is on).

confluent-kafka calls ``oauth_cb`` while the client is constructed and again before the token
expires (tokens live 15 minutes), on its background thread, so no extra ``poll()`` is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import botocore.session
from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
from botocore.credentials import CredentialProvider, Credentials

from lvp.config import ConfigError

log = logging.getLogger(__name__)

OAuthCallback = Callable[[Any], tuple[str, float]]


class _SessionCredentials(CredentialProvider):
    """Hands the signer the current (refreshed when needed) credentials of one botocore session."""

    METHOD = "lvp-session"

    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> Credentials:
        frozen = self._credentials.get_frozen_credentials()
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)


def resolve_credentials(session: botocore.session.Session | None = None) -> Credentials:
    """The default AWS credential chain (env, profile, ECS task role, instance role)."""
    session = session or botocore.session.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise ConfigError(
            "LVP_KAFKA_MSK_IAM is on but no AWS credentials were found (task role, AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
        )
    return credentials


def auth_token(region: str, credentials: Credentials) -> tuple[str, float]:
    """One MSK IAM token and its expiry (epoch seconds, as confluent-kafka wants it)."""
    token, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_credentials_provider(
        region, _SessionCredentials(credentials)
    )
    return token, expiry_ms / 1000.0


def make_oauth_cb(region: str, credentials: Credentials | None = None) -> OAuthCallback:
    """An ``oauth_cb`` for confluent-kafka signing tokens for ``region``. Credentials are resolved
    now, so a missing role fails at start-up with a clear message rather than inside librdkafka."""
    creds = credentials or resolve_credentials()

    def oauth_cb(_oauth_config: Any) -> tuple[str, float]:
        try:
            return auth_token(region, creds)
        except Exception as exc:  # librdkafka only reports "token not set"; say why here
            log.error("MSK IAM token could not be signed: %s", exc)
            raise

    return oauth_cb


def with_iam_auth(
    conf: dict[str, Any], region: str, credentials: Credentials | None = None
) -> dict[str, Any]:
    """``conf`` plus MSK IAM authentication (explicit protocol/mechanism settings are kept)."""
    out = dict(conf)
    out.setdefault("sasl.mechanism", "OAUTHBEARER")
    out.pop("sasl.mechanisms", None)  # alias of sasl.mechanism; keep one
    out.setdefault("security.protocol", "SASL_SSL")
    out["oauth_cb"] = make_oauth_cb(region, credentials)
    return out
