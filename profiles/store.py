"""DynamoDB persistence of profiles and their status history: the writer (`lvp profiles`) and
the CLI's reader (`lvp profile`). The items' layout and their encoding and decoding are
:mod:`lvp.profile_codec` (docs/contracts.md), shared with the viewer's reader.

Writes are batched (BatchWriteItem, 25 requests) and several batches run concurrently on a small
thread pool; a flush writes the history changes before the profiles whose state assumes them.
BatchWriteItem and BatchGetItem go over DynamoDB's JSON protocol directly
(:mod:`profiles.dynamo_http`: orjson, our SigV4 signer, keep-alive sockets), everything else
through boto3 (``LVP_DYNAMODB_CLIENT=botocore`` sends the bulk calls through boto3 too: the
operator's way back if our client misbehaves against an endpoint). Unprocessed items and
throttling are retried with exponential backoff and jitter; when a batch still fails after its
retries, the write stops launching batches (batches retrying stop at their next attempt) and
raises :class:`WriteFailed`, naming exactly what was not written: everything else stays written,
and the caller keeps only the rest for its next try. Loads (BatchGetItem) run on their own small
thread pool, so they never wait behind a flush. Every query the API needs is a GetItem or a
Query — never a table scan (:meth:`ProfileStore.clear`, used by ``--rebuild`` only, is the one
scan).
"""

from __future__ import annotations

import heapq
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Final, Protocol

import boto3
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError

from lvp.config import ConfigError, Settings
from lvp.dynamo import client_kwargs
from lvp.profile_codec import erasure_marker, history_item, item_to_history, item_to_profile, profile_item
from lvp.tables import ACTIVE_INDEX, ERASED_AT_ATTRIBUTE, is_erasure_marker
from profiles.dynamo_http import DynamoError, DynamoHttp

log = logging.getLogger(__name__)

#: LVP_DYNAMODB_CLIENT: who makes BatchWriteItem / BatchGetItem (everything else is boto3).
DYNAMODB_CLIENTS: Final = ("http", "botocore")
BATCH_WRITE_MAX: Final = 25
BATCH_GET_MAX: Final = 100
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


class WriteFailed(StoreError):
    """:meth:`ProfileStore.write` could not write everything. Every request not named here was
    written; a profile is never written when a history change of its viewer was not."""

    def __init__(
        self,
        message: str,
        *,
        unwritten_profiles: frozenset[str],
        unwritten_history: frozenset[tuple[str, str]],
        written: int,
    ) -> None:
        super().__init__(message)
        #: viewer ids whose profile item was not written
        self.unwritten_profiles = unwritten_profiles
        #: ``(viewer_id, seq)`` of the history puts and deletes not written
        self.unwritten_history = unwritten_history
        #: write requests that were
        self.written = written


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
    erased_at_ms: int | None = None  # the viewer was erased before (its events up to then are dropped)


def _requests(pending: Mapping[str, list[dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [(table, req) for table, reqs in pending.items() for req in reqs]


def _request_key(req: Mapping[str, Any]) -> tuple[str, str]:
    """``(viewer_id, seq or "")`` of a BatchWriteItem put or delete request."""
    put = req.get("PutRequest")
    key = put["Item"] if put is not None else req["DeleteRequest"]["Key"]
    seq = key.get("seq")
    return key["viewer_id"]["S"], seq["S"] if seq is not None else ""


# --- the store --------------------------------------------------------------------------------


_PROXY_VARS: Final = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _fast_calls(client: Any, kwargs: Mapping[str, Any], pool_size: int) -> DynamoHttp | None:
    """BatchWriteItem / BatchGetItem straight over DynamoDB's JSON protocol
    (:mod:`profiles.dynamo_http`) for ``client``'s endpoint and credentials, or None (proxies
    configured, no credentials): then the boto3 client makes those calls too."""
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return None
    if kwargs.get("aws_access_key_id"):
        creds: Any = Credentials(kwargs["aws_access_key_id"], kwargs.get("aws_secret_access_key", ""))
    else:
        creds = boto3.Session(region_name=client.meta.region_name).get_credentials()
    if creds is None:
        return None
    try:
        return DynamoHttp(client.meta.endpoint_url, client.meta.region_name, creds, pool_size=pool_size)
    except ValueError:  # an endpoint URL only botocore knows how to address
        return None


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
        fast_calls: bool = True,
        load_workers: int = 2,
    ) -> None:
        self.settings = settings
        self.profiles_table = settings.table_profiles
        self.history_table = settings.table_history
        self.retention_s = int(settings.retention_days * 86400)
        self.shards = max(1, settings.active_shards)
        self._rpc: DynamoHttp | None = None
        bulk_client = settings.dynamodb_client.strip().lower()
        if bulk_client not in DYNAMODB_CLIENTS:
            raise ConfigError(
                f"LVP_DYNAMODB_CLIENT={settings.dynamodb_client!r} must be one of "
                f"{', '.join(DYNAMODB_CLIENTS)}"
            )
        if client is None:
            kw = client_kwargs(settings)
            kw["config"] = kw["config"].merge(_CLIENT_CONFIG) if "config" in kw else _CLIENT_CONFIG
            client = boto3.client("dynamodb", **kw)
            if fast_calls and bulk_client == "http":  # LVP_DYNAMODB_CLIENT=botocore: boto3 for all
                self._rpc = _fast_calls(client, kw, pool_size=max_workers + load_workers)
        self.client = client
        self.max_workers = max(1, max_workers)
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.metrics: StoreMetrics = metrics or _NoMetrics()
        self.clock = clock
        self._pool = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="lvp-dynamo")
        # loads of viewers first seen must not queue behind a flush's batches
        self._load_pool = ThreadPoolExecutor(
            max_workers=max(1, load_workers), thread_name_prefix="lvp-dynamo-load"
        )
        self._rng = random.Random()
        self._rng_lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._load_pool.shutdown(wait=True)
        if self._rpc is not None:
            self._rpc.close()

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
        """Write history puts and deletes (``(viewer_id, seq)``) and the profiles in concurrent
        batches. Returns the number of write requests.

        History goes first, per viewer: a profile item carries the engine state that assumes its
        history changes are stored, so a batch of profiles starts only once every batch holding
        a history change of one of its viewers is written. A crash in between leaves the
        previous state, which recomputes the same changes when its events are read again.
        Batches are started in the order of ``profiles`` (each viewer's history just before its
        profile), at most ``max_workers`` at a time.

        When a batch gives up (DynamoDB still throttled or unreachable after its retries), no
        further batch is started, batches still retrying stop at their next attempt, and
        :class:`WriteFailed` names what was not written; all the rest was (every write is
        idempotent: the caller writes the rest again later)."""
        now = self.clock()
        profile_reqs: list[tuple[str, dict[str, Any]]] = []
        rank: dict[str, int] = {}
        for w in profiles:
            item = profile_item(
                w.viewer_id,
                w.profile,
                w.state,
                erased_at_ms=w.erased_at_ms,
                retention_s=self.retention_s,
                shards=self.shards,
                now=now,
            )
            rank[w.viewer_id] = len(profile_reqs)
            profile_reqs.append((self.profiles_table, {"PutRequest": {"Item": item}}))
        ranked: list[tuple[int, tuple[str, dict[str, Any]]]] = []
        for h in history_puts:
            item = history_item(h, retention_s=self.retention_s, now=now)
            ranked.append((rank.get(h.viewer_id, -1), (self.history_table, {"PutRequest": {"Item": item}})))
        for vid, seq in history_deletes:
            key = {"viewer_id": {"S": vid}, "seq": {"S": seq}}
            ranked.append((rank.get(vid, -1), (self.history_table, {"DeleteRequest": {"Key": key}})))
        ranked.sort(key=lambda x: x[0])  # stable: a viewer's changes keep their order
        history = [r for _rank, r in ranked]
        total = len(history) + len(profile_reqs)
        left, left_profiles, error = self._write_ordered(history, profile_reqs)
        if error is not None:
            unwritten = len(left) + len(left_profiles)
            raise WriteFailed(
                f"{unwritten} of {total} write requests not written: {error}",
                unwritten_profiles=frozenset(_request_key(r)[0] for _t, r in left_profiles),
                unwritten_history=frozenset(_request_key(r) for _t, r in left),
                written=total - unwritten,
            ) from error
        return total

    def _run_batches(self, requests: list[tuple[str, dict[str, Any]]]) -> None:
        """Write ``requests`` (any tables); StoreError if any was not written."""
        left, _, error = self._write_ordered(requests, [])
        if error is not None:
            raise StoreError(f"{len(left)} of {len(requests)} write requests not written: {error}") from error

    def _write_ordered(
        self, first: list[tuple[str, dict[str, Any]]], then: list[tuple[str, dict[str, Any]]]
    ) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]], BaseException | None]:
        """Write ``first`` and ``then`` in batches, at most ``max_workers`` at a time. A batch of
        ``then`` starts once every batch of ``first`` holding one of its viewers is written, and
        before any further batch of ``first``. The first batch to give up sets ``abort``: no
        further batch starts, running ones stop at their next retry. Returns the requests of
        ``first`` and of ``then`` not written, and the first error (None: all written)."""
        firsts = [first[i : i + BATCH_WRITE_MAX] for i in range(0, len(first), BATCH_WRITE_MAX)]
        thens = [then[i : i + BATCH_WRITE_MAX] for i in range(0, len(then), BATCH_WRITE_MAX)]
        abort = threading.Event()
        if len(firsts) + len(thens) == 1:  # one batch: no threads
            only_left, only_error = self._write_chunk((firsts or thens)[0], abort)
            return (only_left, [], only_error) if firsts else ([], only_left, only_error)
        holders: dict[str, set[int]] = {}
        for i, chunk in enumerate(firsts):
            for _t, r in chunk:
                holders.setdefault(_request_key(r)[0], set()).add(i)
        blockers: list[set[int]] = []  # per batch of ``then``: the batches of ``first`` it waits for
        dependents: dict[int, list[int]] = {}
        ready: list[int] = []  # heap of batches of ``then`` free to start
        for j, chunk in enumerate(thens):
            deps = {i for _t, r in chunk for i in holders.get(_request_key(r)[0], ())}
            blockers.append(deps)
            for i in deps:
                dependents.setdefault(i, []).append(j)
            if not deps:
                ready.append(j)
        heapq.heapify(ready)
        left_first: list[tuple[str, dict[str, Any]]] = []
        left_then: list[tuple[str, dict[str, Any]]] = []
        error: BaseException | None = None
        running: dict[Future[tuple[list[tuple[str, dict[str, Any]]], BaseException | None]], int] = {}
        next_first = 0
        started_then: set[int] = set()
        while True:
            while len(running) < self.max_workers and not abort.is_set():
                if ready:
                    j = heapq.heappop(ready)
                    started_then.add(j)
                    running[self._pool.submit(self._write_chunk, thens[j], abort)] = -1 - j
                elif next_first < len(firsts):
                    running[self._pool.submit(self._write_chunk, firsts[next_first], abort)] = next_first
                    next_first += 1
                else:
                    break
            if not running:
                break
            done, _pending = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                index = running.pop(future)
                chunk_left, chunk_error = future.result()
                if error is None:
                    error = chunk_error
                if index < 0:
                    left_then.extend(chunk_left)
                    continue
                left_first.extend(chunk_left)
                if chunk_left:
                    continue
                for j in dependents.get(index, ()):
                    blockers[j].discard(index)
                    if not blockers[j]:
                        heapq.heappush(ready, j)
        for chunk in firsts[next_first:]:  # never started
            left_first.extend(chunk)
        for j, chunk in enumerate(thens):
            if j not in started_then:
                left_then.extend(chunk)
        return left_first, left_then, error

    def _write_chunk(
        self, chunk: list[tuple[str, dict[str, Any]]], abort: threading.Event
    ) -> tuple[list[tuple[str, dict[str, Any]]], BaseException | None]:
        """One BatchWriteItem with its retries. Returns the requests not written (empty: all
        were) and, when this batch gave up, why (then ``abort`` is set)."""
        if abort.is_set():
            return chunk, None
        pending: dict[str, list[dict[str, Any]]] = {}
        for table, req in chunk:
            pending.setdefault(table, []).append(req)
        attempt = 0
        try:
            while True:
                try:
                    if self._rpc is not None:
                        resp = self._rpc.call("BatchWriteItem", {"RequestItems": pending})
                    else:
                        resp = self.client.batch_write_item(RequestItems=pending)
                except Exception as exc:
                    self._failed_attempt(exc, attempt, "BatchWriteItem")
                else:
                    unprocessed = resp.get("UnprocessedItems") or {}
                    if not unprocessed:
                        return [], None
                    pending = unprocessed
                    self.metrics.dynamodb_retry()
                    if attempt + 1 >= self.max_attempts:
                        n = sum(len(v) for v in pending.values())
                        raise StoreError(
                            f"BatchWriteItem: {n} items still unprocessed after {attempt + 1} attempts"
                        )
                attempt += 1
                if abort.wait(self._delay(attempt)):  # another batch gave up: stop here
                    return _requests(pending), None
        except Exception as exc:
            abort.set()
            return _requests(pending), exc

    def _failed_attempt(self, exc: Exception, attempt: int, op: str) -> None:
        """Count and classify a failed call; raise StoreError when it must not be retried."""
        if isinstance(exc, (ClientError, DynamoError)):
            code = exc.code if isinstance(exc, DynamoError) else exc.response.get("Error", {}).get("Code", "")
            status = exc.status if isinstance(exc, DynamoError) else 0
            if code in _THROTTLE_CODES:
                self.metrics.dynamodb_throttle()
            elif code not in _RETRYABLE_CODES and status < 500:
                raise StoreError(f"{op}: {code}: {exc}") from exc
        elif not isinstance(exc, (BotoCoreError, OSError)):  # OSError: the connection (dynamo_http)
            raise exc
        self.metrics.dynamodb_retry()
        if attempt + 1 >= self.max_attempts:
            raise StoreError(f"{op} failed after {attempt + 1} attempts: {exc}") from exc
        log.debug("%s attempt %d failed: %s", op, attempt + 1, exc)

    def _delay(self, attempt: int) -> float:
        with self._rng_lock:
            jitter = 0.5 + self._rng.random()
        return float(min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1))) * jitter)

    def _sleep(self, attempt: int) -> None:
        time.sleep(self._delay(attempt))

    # --- loads --------------------------------------------------------------------------------

    def load_states(self, viewer_ids: Iterable[str]) -> dict[str, str]:
        """The engine state of each viewer that has a profile (BatchGetItem, concurrent)."""
        return self.load(viewer_ids)[0]

    def load(self, viewer_ids: Iterable[str]) -> tuple[dict[str, str], dict[str, int]]:
        """(engine state of each viewer that has a profile, erasure time in ms of each viewer
        erased before — a marker or a profile written since)."""
        ids = list(dict.fromkeys(viewer_ids))
        if not ids:
            return {}, {}
        chunks = [ids[i : i + BATCH_GET_MAX] for i in range(0, len(ids), BATCH_GET_MAX)]
        if len(chunks) == 1:
            return self._get_chunk(chunks[0])
        out: dict[str, str] = {}
        erased: dict[str, int] = {}
        futures = [self._load_pool.submit(self._get_chunk, c) for c in chunks]
        errors = []
        for f in futures:
            exc = f.exception()
            if exc is not None:
                errors.append(exc)
            else:
                states, marks = f.result()
                out.update(states)
                erased.update(marks)
        if errors:
            raise StoreError(f"loading profiles failed: {errors[0]}") from errors[0]
        return out, erased

    def _get_chunk(self, ids: list[str]) -> tuple[dict[str, str], dict[str, int]]:
        request: dict[str, Any] = {
            self.profiles_table: {
                "Keys": [{"viewer_id": {"S": v}} for v in ids],
                "ProjectionExpression": "viewer_id, #s, #e",
                "ExpressionAttributeNames": {"#s": "state", "#e": ERASED_AT_ATTRIBUTE},
                "ConsistentRead": True,
            }
        }
        out: dict[str, str] = {}
        erased: dict[str, int] = {}
        attempt = 0
        while True:
            try:
                if self._rpc is not None:
                    resp = self._rpc.call("BatchGetItem", {"RequestItems": request})
                else:
                    resp = self.client.batch_get_item(RequestItems=request)
            except Exception as exc:
                self._failed_attempt(exc, attempt, "BatchGetItem")
            else:
                for item in resp.get("Responses", {}).get(self.profiles_table, []):
                    if "state" in item:
                        out[item["viewer_id"]["S"]] = item["state"]["S"]
                    if ERASED_AT_ATTRIBUTE in item:
                        erased[item["viewer_id"]["S"]] = int(item[ERASED_AT_ATTRIBUTE]["N"])
                unprocessed = resp.get("UnprocessedKeys") or {}
                if not unprocessed:
                    return out, erased
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
        return item_to_profile(item) if item and not is_erasure_marker(item) else None

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

    def delete_viewer(self, viewer_id: str, erased_at_ms: int | None = None) -> tuple[bool, int]:
        """Erase a viewer: every history item, and the profile item — replaced by an erasure
        marker when ``erased_at_ms`` is given (what erasure does), deleted otherwise. Returns
        (a profile existed, history items deleted)."""
        if erased_at_ms is None:
            resp = self._call(
                "delete_item",
                TableName=self.profiles_table,
                Key={"viewer_id": {"S": viewer_id}},
                ReturnValues="ALL_OLD",
            )
        else:
            resp = self._call(
                "put_item",
                TableName=self.profiles_table,
                Item=erasure_marker(viewer_id, erased_at_ms, retention_s=self.retention_s),
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
        return "state" in resp.get("Attributes", {}), len(keys)

    def clear(self, progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
        """Delete every item of both tables (``lvp profiles --rebuild``) but the erasure records:
        markers stay, and a profile written after an erasure becomes its marker again, so the
        replay cannot bring the erased past back. Returns table -> items deleted."""
        counts: dict[str, int] = {}
        for table, key_names in (
            (self.profiles_table, ("viewer_id",)),
            (self.history_table, ("viewer_id", "seq")),
        ):
            n = 0
            names = [*key_names, ERASED_AT_ATTRIBUTE] if table == self.profiles_table else list(key_names)
            kwargs: dict[str, Any] = {
                "TableName": table,
                "ProjectionExpression": ", ".join(f"#k{i}" for i in range(len(names))),
                "ExpressionAttributeNames": {f"#k{i}": k for i, k in enumerate(names)},
            }
            while True:
                resp = self._call("scan", **kwargs)
                reqs: list[tuple[str, dict[str, Any]]] = []
                for item in resp.get("Items", []):
                    if ERASED_AT_ATTRIBUTE in item:  # (the projection has no state: rewrite it)
                        marker = erasure_marker(
                            item["viewer_id"]["S"],
                            int(item[ERASED_AT_ATTRIBUTE]["N"]),
                            retention_s=self.retention_s,
                        )
                        reqs.append((table, {"PutRequest": {"Item": marker}}))
                    else:
                        reqs.append((table, {"DeleteRequest": {"Key": {k: item[k] for k in key_names}}}))
                self._run_batches(reqs)
                n += sum(1 for _t, r in reqs if "DeleteRequest" in r)
                if progress is not None and reqs:
                    progress(table, n)
                last = resp.get("LastEvaluatedKey")
                if not last:
                    break
                kwargs["ExclusiveStartKey"] = last
            counts[table] = n
        return counts
