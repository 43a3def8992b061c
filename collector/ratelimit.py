"""Per-client request rate limit (``LVP_RATE_LIMIT_PER_IP``): a token bucket per client, keyed
by a keyed hash of the IP so that no raw IP is kept, logged or exported."""

from __future__ import annotations

import hashlib
import math
import time

MAX_CLIENTS = 100_000


class RateLimiter:
    def __init__(self, rate: float, key: bytes, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._key = hashlib.sha256(b"lvp-rate-limit\0" + key).digest()[:32]
        self._buckets: dict[bytes, list[float]] = {}

    def _client(self, ip: str) -> bytes:
        return hashlib.blake2b(ip.encode(), key=self._key, digest_size=16).digest()

    def check(self, ip: str, now: float | None = None) -> float:
        """0 when the request may pass (a token is taken), else seconds until one is available."""
        now = time.monotonic() if now is None else now
        client = self._client(ip)
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= MAX_CLIENTS:
                self._evict(now)
            self._buckets[client] = [self.burst - 1.0, now]
            return 0.0
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def retry_after(self, wait_s: float) -> int:
        return max(1, math.ceil(wait_s))

    def _evict(self, now: float) -> None:
        full_after = self.burst / self.rate
        stale = [k for k, (_, last) in self._buckets.items() if now - last >= full_after]
        for k in stale:
            del self._buckets[k]
        if len(self._buckets) >= MAX_CLIENTS:  # still full: forget everyone (fail open, not closed)
            self._buckets.clear()
