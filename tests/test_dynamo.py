from __future__ import annotations

from lvp.config import Settings
from lvp.dynamo import create_tables, dynamodb_client
from lvp.tables import ACTIVE_INDEX, TTL_ATTRIBUTE


def test_create_tables_on_real_endpoint(dynamodb_endpoint: str, make_settings) -> None:  # type: ignore[no-untyped-def]
    s: Settings = make_settings(aws_endpoint_url=dynamodb_endpoint)
    assert set(create_tables(s).values()) == {"created"}
    assert set(create_tables(s).values()) == {"exists"}
    client = dynamodb_client(s)
    desc = client.describe_table(TableName=s.table_profiles)["Table"]
    assert desc["KeySchema"] == [{"AttributeName": "viewer_id", "KeyType": "HASH"}]
    assert [g["IndexName"] for g in desc["GlobalSecondaryIndexes"]] == [ACTIVE_INDEX]
    ttl = client.describe_time_to_live(TableName=s.table_history)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == TTL_ATTRIBUTE
