"""Which settings each deployed process reads — the contract that the docker compose file
(``localstack/docker-compose.yml``) and the Terraform ECS task definitions (``terraform/``) are
checked against: every variable listed here is set explicitly for that service, secrets come from
Secrets Manager on AWS, and :data:`LOCAL_ONLY` settings are never set on AWS.

Every :class:`~lvp.config.Settings` field is either read by some service here or listed in
:data:`LOCAL_ONLY`; a test fails when a new setting is added without deciding which services read
it (and so without setting it in both deployments).
"""

from __future__ import annotations

from lvp.config import SETTINGS

# Kafka connection: every Kafka client reads these (the region signs MSK IAM tokens); every
# process reads the log format (lvp.cli sets up logging).
_KAFKA = ("kafka_bootstrap_servers", "kafka_msk_iam", "aws_region", "log_format")

SERVICE_SETTINGS: dict[str, tuple[str, ...]] = {
    # `lvp collector`: HTTP in, enriched TSV / bad rows out.
    "collector": (
        *_KAFKA,
        "topic_good",
        "topic_bad",
        "pseudonym_key",
        "pseudonym_cache_size",
        "url_keep_params",
        "url_pseudonymize_params",
        "keep_page_title",
        "keep_transaction_fields",
        "collector_host",
        "collector_port",
        "cors_origins",
        "schema_dirs",
        "iglu_resolver",
        "iglu_timeout_s",
        "max_body_bytes",
        "max_events_per_request",
        "rate_limit_per_ip",
        "trusted_proxies",
        "cookie_name",
        "cookie_domain",
        "produce_timeout_s",
        "retry_after_s",
        "request_timeout_s",
        "collector_paths",
        "metrics_public",
    ),
    # `lvp profiles`: Kafka consumer -> DynamoDB + changes topic.
    "profiles": (
        *_KAFKA,
        "topic_good",
        "topic_bad",
        "topic_changes",
        "consumer_group",
        "produce_timeout_s",
        "table_profiles",
        "table_history",
        "reorder_window_s",
        "active_timeout_s",
        "retention_days",
        "flush_interval_s",
        "flush_max_dirty",
        "publish_interval_s",
        "touch_interval_s",
        "profile_write_interval_s",
        "status_write_delay_s",
        "freeze_after_s",
        "active_shards",
        "profiles_metrics_port",
        "dynamodb_client",
    ),
    # `lvp viewer`: API + SSE + live page, reads the changes topic and DynamoDB.
    "viewer": (
        *_KAFKA,
        "topic_changes",
        "table_profiles",
        "table_history",
        "table_viewer_state",
        "active_timeout_s",
        "status_write_delay_s",
        "active_shards",
        "viewer_host",
        "viewer_port",
        "viewer_cors_origins",
        "viewer_trusted_proxies",
        "request_timeout_s",
        "push_interval_s",
        "api_tokens",
        "jwt_secret",
        "sse_max_per_token",
        "metrics_public",
        "dp_epsilon",
        "dp_release_interval_s",
        "dp_budget",
        "dp_window_s",
        "dp_lifetime_budget",
        "dp_media_labels",
    ),
    # `lvp topics create`: the one-shot job that creates the topics (the changes topic's
    # retention.ms comes from retention_days).
    "topics": (
        *_KAFKA,
        "topic_good",
        "topic_bad",
        "topic_changes",
        "topic_partitions",
        "topic_replication",
        "retention_days",
    ),
}

# Settings for local stacks only; on AWS they stay unset (AWS_ENDPOINT_URL would send boto3 to
# a local endpoint, dev mode would generate secrets inside a container; the /micro/* buffer
# exists only in dev mode).
LOCAL_ONLY: tuple[str, ...] = ("aws_endpoint_url", "dev", "state_dir", "micro_max_events")

# Settings a service package reads only in modes the deployments do not run, so the deployments
# leave them unset (least privilege): the profiles consumer needs the pseudonym key only with
# --pseudonymize-input (raw, non-pseudonymized input; with its cache size) and for `lvp profile ...
# --user-id`.
NOT_DEPLOYED: dict[str, tuple[str, ...]] = {"profiles": ("pseudonym_key", "pseudonym_cache_size")}

# Local stacks additionally point the DynamoDB users at the local endpoint (LocalStack).
LOCAL_EXTRA: dict[str, tuple[str, ...]] = {"profiles": ("aws_endpoint_url",), "viewer": ("aws_endpoint_url",)}

_FIELDS = {f.name: f for f in SETTINGS}


def env_name(setting: str) -> str:
    return str(_FIELDS[setting].metadata["env"])


def is_secret(setting: str) -> bool:
    return bool(_FIELDS[setting].metadata.get("secret"))


def service_env(service: str, *, local: bool = False) -> list[str]:
    """Environment variables ``service`` reads (all of which a deployment must set)."""
    names = list(SERVICE_SETTINGS[service])
    if local:
        names += LOCAL_EXTRA.get(service, ())
    return [env_name(n) for n in names]


def secret_env(service: str) -> list[str]:
    """The subset of :func:`service_env` that holds secrets (Secrets Manager on AWS)."""
    return [env_name(n) for n in SERVICE_SETTINGS[service] if is_secret(n)]


def unclassified_settings() -> list[str]:
    """Settings no service reads and that are not local-only (should be empty)."""
    used = {n for names in SERVICE_SETTINGS.values() for n in names} | set(LOCAL_ONLY)
    return [name for name in _FIELDS if name not in used]


SERVICE_ENV: dict[str, list[str]] = {svc: service_env(svc) for svc in SERVICE_SETTINGS}
LOCAL_ONLY_ENV: list[str] = [env_name(n) for n in LOCAL_ONLY]
