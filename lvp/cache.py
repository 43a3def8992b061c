"""A dict bounded in size, for the caches of the hot paths (pseudonyms, URLs, scrub targets).

When full it drops its oldest quarter (insertion order), not everything: clearing all of it made
every active viewer's next events miss at once, each time an audience outgrew a cache. Lookups
are plain ``dict.get`` (no bookkeeping on a hit); only :meth:`BoundedCache.put` counts.
"""

from __future__ import annotations

import itertools
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(dict[K, V]):
    """``get`` as any dict; store with :meth:`put`, which keeps at most ``limit`` entries."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = max(1, limit)

    def put(self, key: K, value: V) -> V:
        """Store ``value`` under ``key`` and return it; a full cache first drops its oldest
        quarter (at least one entry)."""
        if len(self) >= self.limit and key not in self:
            for old in list(itertools.islice(self, max(1, self.limit // 4))):
                del self[old]
        self[key] = value
        return value
