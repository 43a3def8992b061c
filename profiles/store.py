"""DynamoDB persistence of profiles and their status history (layout: docs/contracts.md).

``viewer_profiles`` holds one item per viewer: every API field of the profile as a top-level
attribute (null values not stored), ``state`` (the engine's JSON state, for restarts and
rebalances), ``ttl`` (epoch s: ``last_seen`` + retention), ``last_seen_ms`` and — only while the
status is not ``ended`` — ``active_shard``, the hash key of the sparse ``active-index`` GSI
(``crc32(viewer_id) % LVP_ACTIVE_SHARDS``). ``viewer_history`` holds the status changes, keyed
``viewer_id`` + ``seq`` (time-ordered).

Writes are batched (BatchWriteItem, 25 requests) and several batches run concurrently on a small
thread pool; a flush writes the history changes before the profiles whose state assumes them.
BatchWriteItem goes over DynamoDB's JSON protocol directly (:class:`_BatchWriteRpc`: orjson +
botocore's SigV4 signer), everything else through boto3. Unprocessed items and throttling are
retried with exponential backoff and jitter; when DynamoDB stays throttled or unreachable a
:class:`StoreError` tells the caller, who keeps its state and tries again later. Every query the
API needs is a GetItem or a Query — never a table scan (:meth:`ProfileStore.clear`, used by
``--rebuild`` only, is the one scan).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from math import isfinite
from typing import Any, Final, Protocol

import boto3
import orjson
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError
from botocore.httpsession import get_cert_path

from lvp.config import Settings
from lvp.dynamo import client_kwargs
from lvp.enriched import EnrichedFormatError, parse_tstamp
from lvp.tables import ACTIVE_INDEX
from profiles.profile import PROFILE_FIELDS

log = logging.getLogger(__name__)

BATCH_WRITE_MAX: Final = 25
BATCH_GET_MAX: Final = 100
#: Attributes of a profile item that are storage details, not API fields.
INTERNAL_ATTRIBUTES: Final = frozenset(("state", "ttl", "last_seen_ms", "active_shard"))
_API_FIELDS: Final = tuple(f for f in PROFILE_FIELDS if f != "active")
_THROTTLE_CODES: Final = frozenset(
    (
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    )
)
_RETRYABLE_CODES: Final = frozenset(
    (
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
    )
)
# Retries are ours (counted in the metrics, backoff tuned for the flush loop), not botocore's.
_CLIENT_CONFIG = Config(
    connect_timeout=5, read_timeout=20, retries={"total_max_attempts": 1, "mode": "standard"}
)


class StoreError(RuntimeError):
    """DynamoDB refused or could not be reached after the retries: nothing is lost, try later."""


class StoreMetrics(Protocol):
    def dynamodb_retry(self) -> None: ...
    def dynamodb_throttle(self) -> None: ...


class _NoMetrics:
    def dynamodb_retry(self) -> None:
        pass

    def dynamodb_throttle(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class ProfileWrite:
    """One profile to write: the API dict (without ``active``) and the engine's state."""

    viewer_id: str
    profile: Mapping[str, Any]
    state: str


# --- attribute values -------------------------------------------------------------------------


def to_attr(v: Any) -> dict[str, Any] | None:
    """A Python/JSON value as a DynamoDB attribute value (``None`` -> not stored)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return {"BOOL": v}
    if isinstance(v, str):
        return {"S": v}
    if isinstance(v, int):
        return {"N": str(v)}
    if isinstance(v, float):
        if not isfinite(v):
            return None
        s = repr(v)
        return {"N": format(Decimal(s), "f") if "e" in s else s}
    if isinstance(v, Mapping):
        return {"M": {str(k): a for k, x in v.items() if (a := to_attr(x)) is not None}}
    if isinstance(v, (list, tuple)):
        return {"L": [to_attr(x) or {"NULL": True} for x in v]}
    raise TypeError(f"cannot store {type(v).__name__} in DynamoDB")


def from_attr(a: Mapping[str, Any]) -> Any:
    """A DynamoDB attribute value as a Python/JSON value (numbers: int when integral text)."""
    if "S" in a:
        return a["S"]
    if "N" in a:
        n = a["N"]
        return float(n) if any(c in n for c in ".eE") else int(n)
    if "BOOL" in a:
        return bool(a["BOOL"])
    if "NULL" in a:
        return None
    if "M" in a:
        return {k: from_attr(x) for k, x in a["M"].items()}
    if "L" in a:
        return [from_attr(x) for x in a["L"]]
    raise ValueError(f"unsupported attribute value {list(a)}")


def shard_of(viewer_id: str, shards: int) -> str:
    """Stable shard of the active-viewer index (same on every machine and Python run)."""
    return str(zlib.crc32(viewer_id.encode("utf-8")) % max(1, shards))


def _epoch(iso: Any, default: float) -> float:
    if isinstance(iso, str) and iso:
        try:
            return parse_tstamp(iso)
        except EnrichedFormatError:
            pass
    return default


def profile_item(write: ProfileWrite, *, retention_s: int, shards: int, now: float) -> dict[str, Any]:
    """The ``viewer_profiles`` item for one profile."""
    item: dict[str, Any] = {}
    for k, v in write.profile.items():
        if k == "active" or k in INTERNAL_ATTRIBUTES:
            continue
        a = to_attr(v)
        if a is not None:
            item[k] = a
    item["viewer_id"] = {"S": write.viewer_id}
    item["state"] = {"S": write.state}
    last_seen = _epoch(write.profile.get("last_seen"), now)
    item["last_seen_ms"] = {"N": str(round(last_seen * 1000))}
    item["ttl"] = {"N": str(int(last_seen) + retention_s)}
    if write.profile.get("status") != "ended":
        item["active_shard"] = {"S": shard_of(write.viewer_id, shards)}
    return item


def history_item(h: Any, *, retention_s: int, now: float) -> dict[str, Any]:
    """The ``viewer_history`` item for one status change (an engine ``HistoryEntry``)."""
    item = {
        "viewer_id": {"S": h.viewer_id},
        "seq": {"S": h.seq},
        "at": {"S": h.at},
        "status": {"S": h.status},
        "prev_status": {"S": h.prev_status},
        "event_name": {"S": h.event_name},
        "event_id": {"S": h.event_id},
        "ttl": {"N": str(int(_epoch(h.at, now)) + retention_s)},
    }
    return item


def item_to_profile(item: Mapping[str, Any]) -> dict[str, Any]:
    """The API dict (without ``active``) of a ``viewer_profiles`` item; absent fields are null."""
    out: dict[str, Any] = {f: None for f in _API_FIELDS}
    for k, a in item.items():
        if k not in INTERNAL_ATTRIBUTES:
            out[k] = from_attr(a)
    return out


def item_to_history(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: from_attr(a) for k, a in item.items() if k != "ttl"}


# --- the store --------------------------------------------------------------------------------


class RpcError(Exception):
    """An error answer of the DynamoDB JSON protocol (``__type`` code, HTTP status)."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code} ({status}): {message}")
        self.code = code
        self.status = status


_PROXY_VARS: Final = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


class _BatchWriteRpc:
    """BatchWriteItem over DynamoDB's JSON protocol without botocore's per-attribute serializer.

    A flush writes thousands of items; botocore walks its shape model for every attribute value
    (~200 µs of CPU per profile item). Here the body is encoded by orjson, signed with botocore's
    own SigV4 signer and credentials, and sent on a urllib3 keep-alive pool: several times less
    CPU per item. Every other call goes through the boto3 client.
    """

    def __init__(self, url: str, region: str, credentials: Any, pool_size: int) -> None:
        self.url = url
        self.region = region
        self.credentials = credentials
        self.pool = urllib3.PoolManager(
            maxsize=pool_size, block=False, cert_reqs="CERT_REQUIRED", ca_certs=get_cert_path(True)
        )
        self.timeout = urllib3.Timeout(connect=5.0, read=20.0)

    @classmethod
    def create(cls, client: Any, kwargs: Mapping[str, Any], pool_size: int) -> _BatchWriteRpc | None:
        """The fast path for ``client``'s endpoint and credentials, or None (proxies configured, no
        credentials): then the boto3 client does the writes."""
        if any(os.environ.get(v) for v in _PROXY_VARS):
            return None
        if kwargs.get("aws_access_key_id"):
            creds: Any = Credentials(kwargs["aws_access_key_id"], kwargs.get("aws_secret_access_key", ""))
        else:
            creds = boto3.Session(region_name=client.meta.region_name).get_credentials()
        if creds is None:
            return None
        return cls(client.meta.endpoint_url.rstrip("/") + "/", client.meta.region_name, creds, pool_size)

    def batch_write_item(self, request_items: Mapping[str, Any]) -> dict[str, Any]:
        body = orjson.dumps({"RequestItems": request_items})
        req = AWSRequest(
            method="POST",
            url=self.url,
            data=body,
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": "DynamoDB_20120810.BatchWriteItem",
            },
        )
        creds = self.credentials
        if hasattr(creds, "get_frozen_credentials"):
            creds = creds.get_frozen_credentials()
        SigV4Auth(creds, "dynamodb", self.region).add_auth(req)
        resp = self.pool.request(
            "POST",
            self.url,
            body=body,
            headers=dict(req.headers.items()),
            timeout=self.timeout,
            retries=False,
        )
        if resp.status == 200:
            return dict(orjson.loads(resp.data))
        try:
            err = orjson.loads(resp.data)
        except orjson.JSONDecodeError:
            err = {}
        code = str(err.get("__type", "")).rsplit("#", 1)[-1] or f"HTTP{resp.status}"
        raise RpcError(code, str(err.get("message") or err.get("Message") or ""), resp.status)


class ProfileStore:
    """Profiles and history in DynamoDB, for the consumer and the CLI."""

    def __init__(
        self,
        settings: Settings,
        *,
        client: Any = None,
        max_workers: int = 4,
        max_attempts: int = 6,
        base_delay_s: float = 0.05,
        max_delay_s: float = 2.0,
        metrics: StoreMetrics | None = None,
        clock: Callable[[], float] = time.time,
        fast_writes: bool = True,
    ) -> None:
        self.settings = settings
        self.profiles_table = settings.table_profiles
        self.history_table = settings.table_history
        self.retention_s = int(settings.retention_days * 86400)
        self.shards = max(1, settings.active_shards)
        self._rpc: _BatchWriteRpc | None = None
        if client is None:
            kw = client_kwargs(settings)
            kw["config"] = kw["config"].merge(_CLIENT_CONFIG) if "config" in kw else _CLIENT_CONFIG
            client = boto3.client("dynamodb", **kw)
            if fast_writes:
                self._rpc = _BatchWriteRpc.create(client, kw, pool_size=max_workers)
        self.client = client
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.metrics: StoreMetrics = metrics or _NoMetrics()
        self.clock = clock
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="lvp-dynamo")
        self._rng = random.Random()
        self._rng_lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def check_tables(self) -> None:
        """Raise :class:`StoreError` naming a table that does not exist (or DynamoDB is down)."""
        for table in (self.profiles_table, self.history_table):
            try:
                self._call("describe_table", TableName=table)
            except StoreError as exc:
                raise StoreError(f"table {table} is not usable: {exc}") from exc

    # --- writes -------------------------------------------------------------------------------

    def write(
        self,
        profiles: Iterable[ProfileWrite],
        history_puts: Iterable[Any] = (),
        history_deletes: Iterable[tuple[str, str]] = (),
    ) -> int:
        """Write history puts and deletes (``(viewer_id, seq)``), then the profiles, in concurrent
        batches. Returns the number of write requests; raises :class:`StoreError` if any batch
        could not be written (the others may have been: every write is idempotent).

        History goes first: a profile item carries the engine state that assumes its history
        changes are stored, so it is written only once they are. A crash in between leaves the
        previous state, which recomputes the same changes when its events are read again."""
        now = self.clock()
        history: list[tuple[str, dict[str, Any]]] = []
        for h in history_puts:
            item = history_item(h, retention_s=self.retention_s, now=now)
            history.append((self.history_table, {"PutRequest": {"Item": item}}))
        for vid, seq in history_deletes:
            key = {"viewer_id": {"S": vid}, "seq": {"S": seq}}
            history.append((self.history_table, {"DeleteRequest": {"Key": key}}))
        profile_reqs: list[tuple[str, dict[str, Any]]] = []
        for w in profiles:
            item = profile_item(w, retention_s=self.retention_s, shards=self.shards, now=now)
            profile_reqs.append((self.profiles_table, {"PutRequest": {"Item": item}}))
        self._run_batches(history)
        self._run_batches(profile_reqs)
        return len(history) + len(profile_reqs)

    def _run_batches(self, requests: list[tuple[str, dict[str, Any]]]) -> None:
        if not requests:
            return
        chunks = [requests[i : i + BATCH_WRITE_MAX] for i in range(0, len(requests), BATCH_WRITE_MAX)]
        if len(chunks) == 1:
            self._write_chunk(chunks[0])
            return
        futures = [self._pool.submit(self._write_chunk, c) for c in chunks]
        errors = [f.exception() for f in futures]
        failed = [e for e in errors if e is not None]
        if failed:
            raise StoreError(f"{len(failed)} of {len(chunks)} write batches failed: {failed[0]}") from failed[
                0
            ]

    def _write_chunk(self, chunk: list[tuple[str, dict[str, Any]]]) -> None:
        pending: dict[str, list[dict[str, Any]]] = {}
        for table, req in chunk:
            pending.setdefault(table, []).append(req)
        attempt = 0
        while True:
            try:
                if self._rpc is not None:
                    resp = self._rpc.batch_write_item(pending)
                else:
                    resp = self.client.batch_write_item(RequestItems=pending)
            except Exception as exc:
                self._failed_attempt(exc, attempt, "BatchWriteItem")
            else:
                unprocessed = resp.get("UnprocessedItems") or {}
                if not unprocessed:
                    return
                pending = unprocessed
                self.metrics.dynamodb_retry()
                if attempt + 1 >= self.max_attempts:
                    n = sum(len(v) for v in pending.values())
                    raise StoreError(
                        f"BatchWriteItem: {n} items still unprocessed after {attempt + 1} attempts"
                    )
            attempt += 1
            self._sleep(attempt)

    def _failed_attempt(self, exc: Exception, attempt: int, op: str) -> None:
        """Count and classify a failed call; raise StoreError when it must not be retried."""
        if isinstance(exc, (ClientError, RpcError)):
            code = exc.code if isinstance(exc, RpcError) else exc.response.get("Error", {}).get("Code", "")
            status = exc.status if isinstance(exc, RpcError) else 0
            if code in _THROTTLE_CODES:
                self.metrics.dynamodb_throttle()
            elif code not in _RETRYABLE_CODES and status < 500:
                raise StoreError(f"{op}: {code}: {exc}") from exc
        elif not isinstance(exc, (BotoCoreError, urllib3.exceptions.HTTPError)):
            raise exc
        self.metrics.dynamodb_retry()
        if attempt + 1 >= self.max_attempts:
            raise StoreError(f"{op} failed after {attempt + 1} attempts: {exc}") from exc
        log.debug("%s attempt %d failed: %s", op, attempt + 1, exc)

    def _sleep(self, attempt: int) -> None:
        with self._rng_lock:
            jitter = 0.5 + self._rng.random()
        time.sleep(min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1))) * jitter)

    # --- loads --------------------------------------------------------------------------------

    def load_states(self, viewer_ids: Iterable[str]) -> dict[str, str]:
        """The engine state of each viewer that has a profile (BatchGetItem, concurrent)."""
        ids = list(dict.fromkeys(viewer_ids))
        if not ids:
            return {}
        chunks = [ids[i : i + BATCH_GET_MAX] for i in range(0, len(ids), BATCH_GET_MAX)]
        if len(chunks) == 1:
            return self._get_chunk(chunks[0])
        out: dict[str, str] = {}
        futures = [self._pool.submit(self._get_chunk, c) for c in chunks]
        errors = []
        for f in futures:
            exc = f.exception()
            if exc is not None:
                errors.append(exc)
            else:
                out.update(f.result())
        if errors:
            raise StoreError(f"loading profiles failed: {errors[0]}") from errors[0]
        return out

    def _get_chunk(self, ids: list[str]) -> dict[str, str]:
        request: dict[str, Any] = {
            self.profiles_table: {
                "Keys": [{"viewer_id": {"S": v}} for v in ids],
                "ProjectionExpression": "viewer_id, #s",
                "ExpressionAttributeNames": {"#s": "state"},
                "ConsistentRead": True,
            }
        }
        out: dict[str, str] = {}
        attempt = 0
        while True:
            try:
                resp = self.client.batch_get_item(RequestItems=request)
            except Exception as exc:
                self._failed_attempt(exc, attempt, "BatchGetItem")
            else:
                for item in resp.get("Responses", {}).get(self.profiles_table, []):
                    if "state" in item:
                        out[item["viewer_id"]["S"]] = item["state"]["S"]
                unprocessed = resp.get("UnprocessedKeys") or {}
                if not unprocessed:
                    return out
                request = unprocessed
                self.metrics.dynamodb_retry()
                if attempt + 1 >= self.max_attempts:
                    raise StoreError("BatchGetItem: keys still unprocessed after retries")
            attempt += 1
            self._sleep(attempt)

    # --- queries (CLI and API) ----------------------------------------------------------------

    def _call(self, op: str, **kwargs: Any) -> Any:
        attempt = 0
        while True:
            try:
                return getattr(self.client, op)(**kwargs)
            except Exception as exc:
                self._failed_attempt(exc, attempt, op)
            attempt += 1
            self._sleep(attempt)

    def get_profile(self, viewer_id: str) -> dict[str, Any] | None:
        """The stored profile (API dict without ``active``), or None."""
        resp = self._call(
            "get_item",
            TableName=self.profiles_table,
            Key={"viewer_id": {"S": viewer_id}},
            ConsistentRead=True,
        )
        item = resp.get("Item")
        return item_to_profile(item) if item else None

    def history(self, viewer_id: str) -> Iterator[dict[str, Any]]:
        """The viewer's status changes, oldest first (Query, paginated)."""
        for item in self._query(
            TableName=self.history_table,
            KeyConditionExpression="viewer_id = :v",
            ExpressionAttributeValues={":v": {"S": viewer_id}},
            ScanIndexForward=True,
            ConsistentRead=True,
        ):
            yield item_to_history(item)

    def active_profiles(self, now: float, timeout_s: float) -> list[dict[str, Any]]:
        """Profiles of viewers not ``ended`` and last seen within ``timeout_s`` (one GSI Query
        per shard, run concurrently), most recently seen first."""
        since = str(int((now - timeout_s) * 1000))

        def shard(s: int) -> list[dict[str, Any]]:
            return [
                item_to_profile(item)
                for item in self._query(
                    TableName=self.profiles_table,
                    IndexName=ACTIVE_INDEX,
                    KeyConditionExpression="active_shard = :s AND last_seen_ms >= :t",
                    ExpressionAttributeValues={":s": {"S": str(s)}, ":t": {"N": since}},
                )
            ]

        out: list[dict[str, Any]] = []
        for part in self._pool.map(shard, range(self.shards)):
            out.extend(part)
        out.sort(key=lambda p: (p.get("last_seen") or "", p.get("viewer_id") or ""), reverse=True)
        return out

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        while True:
            resp = self._call("query", **kwargs)
            yield from resp.get("Items", [])
            last = resp.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def delete_viewer(self, viewer_id: str) -> tuple[bool, int]:
        """Erase a viewer: the profile item and every history item. Returns (profile existed,
        history items deleted)."""
        resp = self._call(
            "delete_item",
            TableName=self.profiles_table,
            Key={"viewer_id": {"S": viewer_id}},
            ReturnValues="ALL_OLD",
        )
        keys = [
            (self.history_table, {"DeleteRequest": {"Key": {"viewer_id": k["viewer_id"], "seq": k["seq"]}}})
            for k in self._query(
                TableName=self.history_table,
                KeyConditionExpression="viewer_id = :v",
                ExpressionAttributeValues={":v": {"S": viewer_id}},
                ProjectionExpression="viewer_id, seq",
                ConsistentRead=True,
            )
        ]
        self._run_batches(keys)
        return "Attributes" in resp, len(keys)

    def clear(self, progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
        """Delete every item of both tables (``lvp profiles --rebuild``). Returns table -> count."""
        counts: dict[str, int] = {}
        for table, key_names in (
            (self.profiles_table, ("viewer_id",)),
            (self.history_table, ("viewer_id", "seq")),
        ):
            n = 0
            kwargs: dict[str, Any] = {
                "TableName": table,
                "ProjectionExpression": ", ".join(f"#k{i}" for i in range(len(key_names))),
                "ExpressionAttributeNames": {f"#k{i}": k for i, k in enumerate(key_names)},
            }
            while True:
                resp = self._call("scan", **kwargs)
                reqs = [
                    (table, {"DeleteRequest": {"Key": {k: item[k] for k in key_names}}})
                    for item in resp.get("Items", [])
                ]
                self._run_batches(reqs)
                n += len(reqs)
                if progress is not None and reqs:
                    progress(table, n)
                last = resp.get("LastEvaluatedKey")
                if not last:
                    break
                kwargs["ExclusiveStartKey"] = last
            counts[table] = n
        return counts
