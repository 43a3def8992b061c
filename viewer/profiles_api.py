"""``GET /api/profiles/{viewer_id}`` and ``GET /api/profiles/{viewer_id}/history`` from DynamoDB
(aioboto3). Items are decoded by :mod:`lvp.profile_codec`, as `lvp profile` decodes them. Only
API fields leave: never ``state``, ``ttl``, ``active_shard`` or the raw keys.

A profile is answered from the live view first when the viewer is active there (its last
profile message with the touches read since applied: what the live page shows), then from
DynamoDB, which lags for a watching viewer whose only changes were pings (written every
``LVP_PROFILE_WRITE_INTERVAL_S``). So the API never answers older than the live page. A viewer
who has just left the view — ended, or quiet past ``LVP_ACTIVE_TIMEOUT_S`` — is answered with the
newer (more events, then the later ``last_seen``) of DynamoDB's profile and the last one the view
held (kept a minute past ``LVP_STATUS_WRITE_DELAY_S`` after an end, an hour for a quiet viewer):
DynamoDB gets an end ``LVP_STATUS_WRITE_DELAY_S`` plus up to ``LVP_FLUSH_INTERVAL_S`` later (longer
under lag), and the page no longer shows what came before it.

History: newest first by default (``?order=asc`` for oldest first), ``?limit=`` (1..500, default
100) and ``?cursor=`` (the ``next_cursor`` of the previous page).
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from contextlib import AsyncExitStack
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lvp.config import Settings
from lvp.dynamo import client_kwargs
from lvp.enriched import epoch_of
from lvp.profile import api_profile, compare_versions, is_active
from lvp.profile_codec import item_to_history, item_to_profile
from lvp.tables import ERASED_AT_ATTRIBUTE, HISTORY_ATTRIBUTES, is_erasure_marker

VIEWER_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
HISTORY_FIELDS = HISTORY_ATTRIBUTES[2:]  # the path names the viewer; seq is the cursor
HISTORY_DEFAULT = 100
HISTORY_MAX = 500


def profile_view(item: dict[str, Any], timeout_s: float, now: float | None = None) -> dict[str, Any]:
    """A DynamoDB profile item -> the API dict (with the derived ``active``)."""
    raw = item_to_profile(item)
    return api_profile(raw, active=is_active(raw, time.time() if now is None else now, timeout_s))


def history_view(item: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB history item -> one entry of the API's history (no ``viewer_id``, ``seq``)."""
    raw = item_to_history(item)
    return {f: raw.get(f) for f in HISTORY_FIELDS}


class ProfileReader:
    """Reads profiles and history for the API (the writer is `lvp profiles`'
    :class:`profiles.store.ProfileStore`): the aioboto3 DynamoDB client for the lifetime of the
    app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stack = AsyncExitStack()
        self.client: Any = None

    async def open(self) -> None:
        kw = client_kwargs(self.settings)
        cfg = kw.pop("config", None)
        kw["config"] = AioConfig().merge(cfg) if cfg is not None else AioConfig()
        session = aioboto3.Session()
        self.client = await self._stack.enter_async_context(session.client("dynamodb", **kw))

    async def close(self) -> None:
        await self._stack.aclose()
        self.client = None

    async def get_profile(self, viewer_id: str) -> dict[str, Any] | None:
        return (await self.get_profile_and_erasure(viewer_id))[0]

    async def get_profile_and_erasure(self, viewer_id: str) -> tuple[dict[str, Any] | None, float | None]:
        """(the stored profile or None, when the viewer was last erased: epoch s, or None)."""
        resp = await self.client.get_item(
            TableName=self.settings.table_profiles, Key={"viewer_id": {"S": viewer_id}}
        )
        item = resp.get("Item")
        erased = item.get(ERASED_AT_ATTRIBUTE) if item else None
        erased_at = int(erased["N"]) / 1000 if erased and "N" in erased else None
        if not item or is_erasure_marker(item):  # an erased viewer: no profile
            return None, erased_at
        return profile_view(item, self.settings.active_timeout_s), erased_at

    async def exists(self, viewer_id: str) -> bool:
        resp = await self.client.get_item(
            TableName=self.settings.table_profiles,
            Key={"viewer_id": {"S": viewer_id}},
            ProjectionExpression="viewer_id, #s, #e",
            ExpressionAttributeNames={"#s": "state", "#e": ERASED_AT_ATTRIBUTE},
        )
        return "Item" in resp and not is_erasure_marker(resp["Item"])

    async def history(
        self, viewer_id: str, limit: int, cursor: str | None, ascending: bool
    ) -> tuple[list[dict[str, Any]], str | None]:
        params: dict[str, Any] = {
            "TableName": self.settings.table_history,
            "KeyConditionExpression": "viewer_id = :v",
            "ExpressionAttributeValues": {":v": {"S": viewer_id}},
            "ScanIndexForward": ascending,
            "Limit": limit,
        }
        if cursor:
            params["ExclusiveStartKey"] = {"viewer_id": {"S": viewer_id}, "seq": {"S": cursor}}
        resp = await self.client.query(**params)
        items = [history_view(i) for i in resp.get("Items", [])]
        last = resp.get("LastEvaluatedKey")
        nxt = last["seq"]["S"] if last and len(items) >= limit else None
        return items, nxt


def _reader(request: Request) -> ProfileReader:
    reader: ProfileReader = request.app.state.profiles
    return reader


def _not_found(viewer_id: str) -> Response:
    return JSONResponse({"error": "not found", "viewer_id": viewer_id}, status_code=404)


def _unavailable() -> Response:
    return JSONResponse({"error": "profile store unavailable"}, status_code=503, headers={"Retry-After": "2"})


def encode_history_cursor(seq: str) -> str:
    return base64.urlsafe_b64encode(seq.encode()).decode().rstrip("=")


def decode_history_cursor(cursor: str) -> str | None:
    try:
        seq = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return seq if 0 < len(seq) <= 200 and seq.isprintable() else None


def live_profile(request: Request, viewer_id: str) -> dict[str, Any] | None:
    """The profile the live view holds for an active viewer (API dict, ``active`` derived now)."""
    return _from_view(request, viewer_id, left=False)


def left_profile(request: Request, viewer_id: str) -> dict[str, Any] | None:
    """The last profile the live view held of a viewer who left it (API dict, ``active``
    derived now), or None."""
    return _from_view(request, viewer_id, left=True)


def _from_view(request: Request, viewer_id: str, *, left: bool) -> dict[str, Any] | None:
    service = getattr(request.app.state, "service", None)
    if service is None:
        return None
    view = service.view
    held = view.left_profile(viewer_id) if left else view.get(viewer_id)
    if held is None:
        return None
    active = is_active(held, service.clock(), service.settings.active_timeout_s)
    return api_profile(held, active=active)


async def get_profile(request: Request) -> Response:
    viewer_id = request.path_params["viewer_id"]
    if not VIEWER_ID.match(viewer_id):
        return _not_found(viewer_id[:128])
    live = live_profile(request, viewer_id)
    if live is not None:
        return JSONResponse(live)
    kept = left_profile(request, viewer_id)
    try:
        profile, erased_at = await _reader(request).get_profile_and_erasure(viewer_id)
    except (BotoCoreError, ClientError):
        return _unavailable()
    if kept is not None and erased_at is not None:
        seen = epoch_of(kept.get("last_seen"))
        if seen is None or seen <= erased_at:
            kept = None  # from before an erasure whose tombstone this view has not read
    if kept is not None and (profile is None or compare_versions(kept, profile) > 0):
        return JSONResponse(kept)  # DynamoDB has not got the viewer's last change yet
    if profile is None:
        return _not_found(viewer_id)
    return JSONResponse(profile)


async def get_history(request: Request) -> Response:
    viewer_id = request.path_params["viewer_id"]
    if not VIEWER_ID.match(viewer_id):
        return _not_found(viewer_id[:128])
    q = request.query_params
    try:
        limit = int(q.get("limit", HISTORY_DEFAULT))
    except ValueError:
        limit = -1
    if not 1 <= limit <= HISTORY_MAX:
        return JSONResponse({"error": f"limit must be 1..{HISTORY_MAX}"}, status_code=400)
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        return JSONResponse({"error": "order must be asc or desc"}, status_code=400)
    cursor = None
    if q.get("cursor"):
        cursor = decode_history_cursor(q["cursor"])
        if cursor is None:
            return JSONResponse({"error": "invalid cursor"}, status_code=400)
    reader = _reader(request)
    try:
        items, nxt = await reader.history(viewer_id, limit, cursor, order == "asc")
        if not items and cursor is None and not await reader.exists(viewer_id):
            return _not_found(viewer_id)
    except (BotoCoreError, ClientError):
        return _unavailable()
    return JSONResponse(
        {
            "viewer_id": viewer_id,
            "items": items,
            "next_cursor": encode_history_cursor(nxt) if nxt else None,
        }
    )
