"""Issue #12 over HTTP against the real broker: personal data in page/referrer URLs (query strings,
fragments, in every encoding), page titles, e-commerce fields and inside base64 ``cx``/``ue_px``
of bad events never reaches Kafka, in any form (as is, URL-encoded, double-encoded, base64,
base64url)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from collector_server import TEST_KEY, RunningCollector, read_topic, serve_collector, unique
from leak_forms import leak_hits
from snowplow_analytics_sdk.event_transformer import transform

from collector.badrows import REDACTED
from collector.protocol import b64url_encode
from lvp.config import Settings
from lvp.events import CONTEXTS_SCHEMA, UNSTRUCT_SCHEMA
from lvp.kafka import create_topics
from lvp.pseudonym import pseudonymize

TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
KEY = TEST_KEY.encode()
EMAIL = "dana.privacy+tv@example.org"
TOKEN = "rst-7f3a9c2e1b5d"
IP = "198.51.100.231"
IP6 = "2002:c633:64e7::5"  # 6to4 of 198.51.100.231
ORDER = "order-5521-dana"
UID = "dana-user-8842"
RAW = (EMAIL, TOKEN, IP, ORDER, UID, IP6, "c633:64e7")


@pytest.fixture(scope="module")
def running(broker: str) -> Iterator[RunningCollector]:
    settings = Settings.from_env(
        {},
        kafka_bootstrap_servers=broker,
        topic_good=unique("good"),
        topic_bad=unique("bad"),
        topic_changes=unique("changes"),
        pseudonym_key=TEST_KEY,
        url_pseudonymize_params="email",
    )
    create_topics(settings)
    with serve_collector(settings) as running:
        yield running


def topic_bytes(running: RunningCollector) -> dict[str, bytes]:
    s = running.settings
    return {
        topic: b"\n".join((k or b"") + b"\t" + v for k, v in read_topic(s.kafka_bootstrap_servers, topic, 0))
        for topic in (s.topic_good, s.topic_bad)
    }


def personal_url(host: str) -> str:
    e1, e2 = quote(EMAIL, safe=""), quote(quote(EMAIL, safe=""), safe="")
    return (
        f"https://{host}/watch?utm_source=newsletter&email={EMAIL}&mail2={e1}&mail3={e2}&{EMAIL}"
        f"&token={TOKEN};ip={IP}&uid={UID}&next=https%3A%2F%2Fa.example%2F%3Fuser%3D{e1}"
        f"#access_token={TOKEN}&state={ORDER}"
    )


def test_personal_data_in_urls_titles_and_transactions_never_reaches_kafka(running: RunningCollector) -> None:
    marker = unique("priv")
    common = {"tv": "js-4.6.6", "p": "web", "aid": marker, "uid": UID, "url": personal_url("tv.example"),
              "refr": f"https://mail.example/inbox?user={quote(EMAIL)}#{EMAIL}", "page": f"Hi {EMAIL} ({ORDER})"}  # fmt: skip
    events = [
        {**common, "e": "pv"},
        {**common, "e": "tr", "tr_id": ORDER, "tr_af": EMAIL, "tr_tt": "9.99", "tr_ci": "Lisbon", "tr_cu": "EUR"},
        {**common, "e": "ti", "ti_id": ORDER, "ti_sk": "sku-1", "ti_nm": f"Gift for {EMAIL}", "ti_pr": "2.5",
         "ti_qu": "1"},
    ]  # fmt: skip
    with httpx.Client(base_url=running.url, timeout=15) as client:
        for params in events:
            r = client.get("/i", params=params, headers={"X-Forwarded-For": IP6})
            assert r.status_code == 200, r.text
        # bad events: identifiers, e-mails, IPs and URLs inside base64url ue_px / cx, and plain co
        ue = {"schema": UNSTRUCT_SCHEMA, "data": {"schema": "iglu:com.acme/not_there/jsonschema/1-0-0",
              "data": {"email": EMAIL, "note": f"write to {EMAIL} from {IP}", "link": f"https://x.example/r?t={TOKEN}"}}}  # fmt: skip
        co = {"schema": CONTEXTS_SCHEMA, "data": [{"schema": "iglu:com.acme/who/jsonschema/1-0-0",
              "data": {"userId": UID, "ip": IP, "ref": f"https://y.example/#t={TOKEN}"}}]}  # fmt: skip
        bad = {"e": "ue", "tv": "js-4.6.6", "p": "web", "aid": marker,
               "ue_px": b64url_encode(orjson.dumps(ue)), "cx": b64url_encode(orjson.dumps(co))}  # fmt: skip
        assert client.get("/i", params=bad).status_code == 400
        # not base64url at all (so nothing inside can be redacted): dropped whole
        unreadable = {
            **bad,
            "ue_px": "@" + b64url_encode(orjson.dumps(ue)),
            "cx": "!" + b64url_encode(orjson.dumps(co)),
        }
        assert client.get("/i", params=unreadable).status_code == 400
        # a tracker protocol violation whose co (plain JSON) and url carry personal data
        post = {"schema": PAYLOAD_DATA, "data": [{**common, "e": "bogus", "co": orjson.dumps(co).decode()}]}
        assert client.post(TP2, json=post).status_code == 400
        # a body that cannot be parsed at all
        body = (
            f'{{"schema":"{PAYLOAD_DATA}","data":[{{"aid":"{marker}","e":"pv","url":"{personal_url("b.example")}",'
            f'"cx":"{b64url_encode(orjson.dumps(co))}","page":"{EMAIL}","tr_id":"{ORDER}"'
        ).encode()
        assert client.post(TP2, content=body, headers={"Content-Type": "application/json"}).status_code == 400

    s = running.settings
    goods = read_topic(s.kafka_bootstrap_servers, s.topic_good, 3, lambda v: marker.encode() in v)
    rows = [
        orjson.loads(v)
        for _, v in read_topic(s.kafka_bootstrap_servers, s.topic_bad, 4, lambda v: marker.encode() in v)
    ]
    assert len(goods) == 3 and len(rows) == 4

    # what the good events keep: campaign parameters, names, pseudonyms; no title, no e-commerce
    p_email = pseudonymize(EMAIL, KEY)
    for _, line in goods:
        ev = transform(line.decode())
        assert ev["page_url"].startswith(
            f"https://tv.example/watch?utm_source=newsletter&email={p_email}&mail2=&"
        )
        assert (
            ev["page_urlquery"].endswith("&token=&ip=&uid=&next=")
            and ev["page_urlfragment"] == "access_token=&state="
        )
        assert ev["page_referrer"] == "https://mail.example/inbox?user=" and "refr_urlfragment" not in ev
        assert "page_title" not in ev and not any(k.startswith(("tr_", "ti_")) for k in ev)
        assert ev["user_ipaddress"] == "198.51.100.x" and ev["user_id"] == pseudonymize(UID, KEY)

    # what the bad rows keep: cx / ue_px decoded (as co / ue_pr) and redacted inside
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_kind.setdefault(row["schema"].split("/")[1], []).append(row)
    assert sorted(by_kind) == [
        "collector_payload_format_violation",
        "schema_violations",
        "tracker_protocol_violations",
    ]
    parsed = [
        {p["name"]: p["value"] for p in row["data"]["payload"]["raw"]["parameters"]}
        for row in rows
        if "raw" in row["data"]["payload"]
    ]
    [params] = [p for p in parsed if "ue_pr" in p]  # the schema violation
    assert "ue_px" not in params and "cx" not in params
    ue_doc, co_doc = orjson.loads(params["ue_pr"]), orjson.loads(params["co"])
    assert ue_doc["data"]["data"]["email"] == p_email
    assert ue_doc["data"]["data"]["note"] == f"write to {REDACTED} from 198.51.100.x"
    assert ue_doc["data"]["data"]["link"] == "https://x.example/r?t="
    assert co_doc["data"][0]["data"] == {"userId": pseudonymize(UID, KEY), "ip": "198.51.100.x",
                                         "ref": "https://y.example/#t="}  # fmt: skip
    # the unreadable base64 (a tracker protocol violation), redacted whole
    assert [p for p in parsed if p.get("ue_px") == REDACTED and p.get("cx") == REDACTED]

    hits = leak_hits(topic_bytes(running), RAW)
    assert hits == [], hits[:10]
