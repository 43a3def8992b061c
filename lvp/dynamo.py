"""DynamoDB clients and table creation, for every component that talks to DynamoDB."""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from lvp.config import Settings
from lvp.errors import Unavailable
from lvp.tables import TTL_ATTRIBUTE, table_definitions

_BOTO_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=32)


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Arguments for boto3/aioboto3 clients. Local endpoints get dummy credentials when none
    are configured, as LocalStack users do."""
    kw: dict[str, Any] = {"region_name": settings.aws_region, "config": _BOTO_CONFIG}
    if settings.aws_endpoint_url:
        kw["endpoint_url"] = settings.aws_endpoint_url
        if not os.environ.get("AWS_ACCESS_KEY_ID") and not os.environ.get("AWS_PROFILE"):
            kw["aws_access_key_id"] = "local"
            kw["aws_secret_access_key"] = "local"
    return kw


def dynamodb_client(settings: Settings) -> Any:
    return boto3.client("dynamodb", **client_kwargs(settings))


def create_tables(settings: Settings) -> dict[str, str]:
    """Create every table of :func:`~lvp.tables.table_definitions` and enable TTL; existing
    tables are left alone. Returns name -> outcome; raises :class:`~lvp.errors.Unavailable`
    when DynamoDB cannot be reached or refuses."""
    try:
        return _create_tables(settings)
    except (BotoCoreError, ClientError) as exc:
        where = settings.aws_endpoint_url or f"AWS {settings.aws_region}"
        raise Unavailable(f"DynamoDB at {where} (AWS_ENDPOINT_URL): {exc}") from None


def _create_tables(settings: Settings) -> dict[str, str]:
    client = dynamodb_client(settings)
    outcome: dict[str, str] = {}
    for definition in table_definitions(
        settings.table_profiles, settings.table_history, settings.table_viewer_state
    ):
        name = definition["TableName"]
        try:
            client.create_table(**definition)
            outcome[name] = "created"
        except client.exceptions.ResourceInUseException:
            outcome[name] = "exists"
        client.get_waiter("table_exists").wait(
            TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
        )
        ttl = client.describe_time_to_live(TableName=name).get("TimeToLiveDescription", {})
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            client.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
            )
    return outcome
