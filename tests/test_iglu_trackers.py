"""The Iglu Central schemas the web and mobile trackers send by default are bundled: each passes the
Iglu meta-schema, accepts what the trackers send (a realistic instance with every property, then
the smallest one) and refuses a wrong one, with both validators agreeing."""

from __future__ import annotations

from typing import Any

import pytest

from lvp.iglu import BUNDLED_ROOT, Registry, SchemaKey, check_schema_document, load_schema_file

SP = "com.snowplowanalytics.snowplow"
MOB = "com.snowplowanalytics.mobile"
EC = "com.snowplowanalytics.snowplow.ecommerce"
ID_A = "5f0a9c1e-3b7d-4c2a-9e8f-1a2b3c4d5e6f"
ID_B = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"

#: uri -> (instances that must validate, instances that must not)
CASES: dict[str, tuple[list[Any], list[Any]]] = {
    f"iglu:{MOB}/application/jsonschema/1-0-0": (
        [{"version": "5.2.1", "build": "5210"}],
        [{"version": "5.2.1"}, {"version": "5.2.1", "build": "1", "store": "play"}],
    ),
    f"iglu:{MOB}/screen/jsonschema/1-0-0": (
        [
            {
                "name": "Player",
                "id": ID_A,
                "type": "feed",
                "activity": "PlayerActivity",
                "fragment": "VideoFragment",
                "viewController": "PlayerVC",
                "topViewController": "RootVC",
            },
            {"name": "Home", "id": ID_B},
        ],
        [{"name": "Home"}, {"name": "Home", "id": ID_A, "title": "x"}],
    ),
    f"iglu:{MOB}/screen_view/jsonschema/1-0-0": (
        [
            {
                "name": "Player",
                "id": ID_A,
                "type": "detail",
                "previousName": "Home",
                "previousId": ID_B,
                "previousType": "feed",
                "transitionType": "push",
            },
            {"name": "Home", "id": ID_B},
        ],
        [{"id": ID_A}, {"name": 3, "id": ID_A}],
    ),
    f"iglu:{MOB}/application_install/jsonschema/1-0-0": ([{}], [{"first": True}]),
    f"iglu:{MOB}/application_lifecycle/jsonschema/1-0-0": (
        [{"isVisible": True, "index": 3}, {"isVisible": False}],
        [{"index": 1}, {"isVisible": True, "index": -1}],
    ),
    f"iglu:{SP}/application_foreground/jsonschema/1-0-0": (
        [{"foregroundIndex": 2}, {}],
        [{"foregroundIndex": "2"}],
    ),
    f"iglu:{SP}/application_background/jsonschema/1-0-0": (
        [{"backgroundIndex": 0}, {}],
        [{"backgroundIndex": -1}],
    ),
    f"iglu:{SP}/application_error/jsonschema/1-0-2": (
        [
            {
                "programmingLanguage": "KOTLIN",
                "message": "Division by zero",
                "threadName": "main",
                "threadId": 1,
                "stackTrace": "java.lang.ArithmeticException ...",
                "causeStackTrace": None,
                "lineNumber": 42,
                "className": "Player",
                "exceptionName": "ArithmeticException",
                "isFatal": True,
                "lineColumn": 7,
                "fileName": "Player.kt",
            },
            {"programmingLanguage": "SWIFT", "message": "oops"},
        ],
        [{"programmingLanguage": "COBOL", "message": "x"}, {"programmingLanguage": "SWIFT"}],
    ),
    f"iglu:{SP}/mobile_context/jsonschema/1-0-2": (
        [
            {
                "osType": "android",
                "osVersion": "14",
                "deviceManufacturer": "Google",
                "deviceModel": "Pixel 8",
                "carrier": "Acme",
                "networkType": "wifi",
                "networkTechnology": None,
                "androidIdfa": None,
                "physicalMemory": 8_000_000_000,
                "systemAvailableMemory": 2_000_000_000,
                "appAvailableMemory": 1_000,
                "batteryLevel": 80,
                "batteryState": "charging",
                "lowPowerMode": False,
                "availableStorage": 10_000_000,
                "totalStorage": 128_000_000_000,
            }
        ],
        [
            {"osType": "ios", "osVersion": "17"},
            {
                "osType": "ios",
                "osVersion": "17",
                "deviceManufacturer": "Apple",
                "deviceModel": "iPhone",
                "batteryLevel": 101,
            },
        ],
    ),
    f"iglu:{SP}/mobile_context/jsonschema/1-0-3": (
        [
            {
                "osType": "ios",
                "osVersion": "17.2",
                "deviceManufacturer": "Apple",
                "deviceModel": "iPhone15,2",
                "networkType": "mobile",
                "networkTechnology": "CTRadioAccessTechnologyLTE",
                "appleIdfv": ID_A.upper(),
                "batteryLevel": 55,
                "batteryState": "unplugged",
                "lowPowerMode": True,
                "isPortrait": True,
                "resolution": "1179x2556",
                "scale": 3,
                "language": "en",
                "appSetId": ID_B,
                "appSetIdScope": "app",
            }
        ],
        [
            {
                "osType": "ios",
                "osVersion": "17",
                "deviceManufacturer": "Apple",
                "deviceModel": "x",
                "networkType": "5g",
            }
        ],
    ),
    f"iglu:{SP}/geolocation_context/jsonschema/1-1-0": (
        [
            {
                "latitude": 51.5,
                "longitude": -0.12,
                "latitudeLongitudeAccuracy": 12.5,
                "altitude": None,
                "altitudeAccuracy": None,
                "bearing": 90,
                "speed": 1.2,
                "timestamp": 1_731_764_002_000,
            },
            {"latitude": 0, "longitude": 0},
        ],
        [{"latitude": 91, "longitude": 0}, {"latitude": 1}],
    ),
    f"iglu:{SP}/timing/jsonschema/1-0-0": (
        [{"category": "player", "variable": "startup", "timing": 812, "label": "hls"}],
        [{"category": "player", "variable": "startup"}],
    ),
    f"iglu:{SP}/link_click/jsonschema/1-0-1": (
        [
            {
                "targetUrl": "https://site.example/watch",
                "elementId": "cta",
                "elementClasses": ["btn", "big"],
                "elementTarget": "_blank",
                "elementContent": "Watch now",
            }
        ],
        [{"targetUrl": ""}, {"elementId": "cta"}],
    ),
    f"iglu:{SP}/submit_form/jsonschema/1-0-0": (
        [
            {
                "formId": "signup",
                "formClasses": ["form"],
                "elements": [
                    {"name": "email", "value": "x", "nodeName": "INPUT", "type": "email"},
                    {"name": "note", "value": None, "nodeName": "TEXTAREA"},
                ],
            }
        ],
        [{"formId": "f", "elements": [{"name": "a", "value": "b", "nodeName": "BUTTON"}]}],
    ),
    f"iglu:{SP}/change_form/jsonschema/1-0-0": (
        [
            {
                "formId": "signup",
                "elementId": "plan",
                "nodeName": "SELECT",
                "value": "premium",
                "elementClasses": ["plan"],
            },
            {"formId": "f", "elementId": "e", "nodeName": "INPUT", "type": "text", "value": None},
        ],
        [{"formId": "f", "elementId": "e", "nodeName": "INPUT"}],
    ),
    f"iglu:{SP}/focus_form/jsonschema/1-0-0": (
        [
            {
                "formId": "login",
                "elementId": "user",
                "nodeName": "INPUT",
                "elementType": "text",
                "elementClasses": None,
                "value": "",
            }
        ],
        [{"formId": "f", "elementId": "e", "nodeName": "INPUT", "value": "x", "type": "text"}],
    ),
    f"iglu:{SP}/site_search/jsonschema/1-0-0": (
        [
            {
                "terms": ["nature", "documentary"],
                "filters": {"hd": True, "lang": "en"},
                "totalResults": 40,
                "pageResults": 10,
            }
        ],
        [{"terms": []}, {"terms": ["a"], "filters": {"n": 3}}],
    ),
    f"iglu:{SP}/social_interaction/jsonschema/1-0-0": (
        [{"action": "like", "network": "facebook", "target": "film-42"}],
        [{"action": "like"}],
    ),
    f"iglu:{SP}/add_to_cart/jsonschema/1-0-0": (
        [
            {
                "sku": "pass-1m",
                "name": "Monthly pass",
                "category": "subscriptions",
                "unitPrice": 9.99,
                "quantity": 1,
                "currency": "EUR",
            }
        ],
        [{"sku": "pass-1m"}],
    ),
    f"iglu:{SP}/remove_from_cart/jsonschema/1-0-0": ([{"sku": "pass-1m", "quantity": 1}], [{"quantity": 1}]),
    "iglu:org.w3/PerformanceTiming/jsonschema/1-0-0": (
        [
            {
                "navigationStart": 1_731_764_000_000,
                "fetchStart": 1_731_764_000_005,
                "responseEnd": 1_731_764_000_120,
                "domComplete": 1_731_764_000_900,
                "loadEventEnd": 1_731_764_000_950,
                "chromeFirstPaint": 1_731_764_000_300,
            }
        ],
        [{"navigationStart": -1}, {"navigationStart": 1.5}],
    ),
    f"iglu:{EC}/snowplow_ecommerce_action/jsonschema/1-0-2": (
        [{"type": "add_to_cart", "name": None}, {"type": "trns_error"}],
        [{"type": "buy"}],
    ),
    f"iglu:{EC}/product/jsonschema/1-0-0": (
        [
            {
                "id": "pass-1m",
                "name": "Monthly pass",
                "category": "subscriptions",
                "price": 19.99,
                "list_price": 24.99,
                "quantity": 1,
                "size": None,
                "variant": "hd",
                "brand": "lvp",
                "inventory_status": "in stock",
                "position": 1,
                "currency": "EUR",
                "creative_id": None,
            }
        ],
        [{"id": "p", "category": "c", "price": 1, "currency": "EURO"}],
    ),
    f"iglu:{EC}/cart/jsonschema/1-0-0": (
        [{"cart_id": "c-1", "total_value": 39.98, "currency": "USD"}],
        [{"total_value": 1}],
    ),
    f"iglu:{EC}/transaction/jsonschema/1-0-0": (
        [
            {
                "transaction_id": "t-1",
                "revenue": 39.98,
                "currency": "GBP",
                "payment_method": "card",
                "total_quantity": 2,
                "tax": 6.66,
                "shipping": None,
                "discount_code": None,
                "discount_amount": 0,
                "credit_order": False,
            }
        ],
        [
            {
                "transaction_id": "t-1",
                "revenue": -1,
                "currency": "GBP",
                "payment_method": "card",
                "total_quantity": 2,
            }
        ],
    ),
    f"iglu:{EC}/page/jsonschema/1-0-0": ([{"type": "product", "language": "en-GB", "locale": None}], [{}]),
    f"iglu:{EC}/checkout_step/jsonschema/1-0-0": (
        [{"step": 2, "delivery_method": "digital", "marketing_opt_in": True, "coupon_code": None}],
        [{"step": 0}],
    ),
    f"iglu:{EC}/promotion/jsonschema/1-0-0": (
        [
            {
                "id": "winter",
                "name": "Winter sale",
                "product_ids": ["pass-1m"],
                "position": 0,
                "type": "banner",
                "slot": "top",
                "creative_id": None,
            }
        ],
        [{"name": "no id"}],
    ),
    f"iglu:{EC}/refund/jsonschema/1-0-0": (
        [{"transaction_id": "t-1", "currency": "GBP", "refund_amount": 19.99, "refund_reason": "duplicate"}],
        [{"transaction_id": "t-1", "currency": "GBP"}],
    ),
    f"iglu:{EC}/user/jsonschema/1-0-0": (
        [{"id": "u-1", "is_guest": False, "email": None}],
        [{"is_guest": True}],
    ),
}

WEB_DEFAULTS = [
    f"iglu:{SP}/web_page/jsonschema/1-0-0",
    f"iglu:{SP}/client_session/jsonschema/1-0-2",
    f"iglu:{SP}/browser_context/jsonschema/2-0-0",
]


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


def test_every_tracker_default_is_bundled(registry: Registry) -> None:
    for uri in [*CASES, *WEB_DEFAULTS]:
        assert uri in registry, uri


@pytest.mark.parametrize("uri", sorted(CASES))
def test_each_bundled_schema_passes_the_meta_schema(uri: str) -> None:
    key = SchemaKey.parse(uri)
    doc = load_schema_file(BUNDLED_ROOT / "schemas" / key.path, key)
    assert check_schema_document(doc, uri, key) is doc
    assert doc["additionalProperties"] is False  # like the public schemas: unknown fields are refused


@pytest.mark.parametrize("uri", sorted(CASES))
def test_realistic_instances_validate_and_wrong_ones_fail(registry: Registry, uri: str) -> None:
    good, bad = CASES[uri]
    validator = registry.validator(uri)
    for instance in good:
        assert validator.is_valid(instance), (uri, instance, validator.errors(instance))
        assert validator.errors(instance) == []
    for instance in bad:
        assert not validator.is_valid(instance), (uri, instance)
        assert validator.errors(instance), (uri, instance)
