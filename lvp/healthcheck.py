"""Container health check without curl: ``python -m lvp.healthcheck [URL ...]``.

Exits 0 when one of the URLs answers 2xx within the timeout, else 1 (printing why). Without
URLs it probes this container's own endpoints from the settings — the collector's, the viewer's
and the profiles consumer's ``/health`` (the consumer's answers 503 when its poll loop stalls) —
so the image's single ``HEALTHCHECK`` works whichever service the container runs.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

from lvp.config import Settings


def default_urls(settings: Settings) -> list[str]:
    urls = [
        f"http://127.0.0.1:{settings.collector_port}/health",
        f"http://127.0.0.1:{settings.viewer_port}/health",
    ]
    if settings.profiles_metrics_port:
        urls.append(f"http://127.0.0.1:{settings.profiles_metrics_port}/health")
    return urls


def probe(url: str, timeout: float = 3.0) -> str | None:
    """``None`` when ``url`` answers 2xx, else the reason it is unhealthy."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        return f"{url}: HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{url}: {exc}"
    return None if 200 <= status < 300 else f"{url}: HTTP {status}"


def main(argv: Sequence[str] | None = None) -> int:
    urls = list(sys.argv[1:] if argv is None else argv) or default_urls(Settings.from_env())
    problems = []
    for url in urls:
        problem = probe(url)
        if problem is None:
            return 0
        problems.append(problem)
    print("unhealthy: " + "; ".join(problems), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
