"""Enrichment CPU per event when raw identifiers sit in page URLs (issue #11, with issue #12's
URL scrubbing): the collector's enricher (:class:`collector.enrich.Enricher`, decoded media events
with entities, one request identity) in one process, CPU time per event, scenarios:

- ``plain``: a page URL without query string — the normal path, and the baseline of every ratio;
- ``campaign``: ``utm_*`` parameters (kept verbatim);
- ``email in query``: the viewer's raw user id (an e-mail) in the page URL's query string;
- ``IP in query``: the client's raw IP in the page URL's query string;
- ``IP in path``: the client's raw IP in the URL path (no parameter to scrub: the raw-value
  scrub of the enriched line still runs).

The *before* rows run the same events with ``LVP_URL_KEEP_PARAMS=*`` (every query value kept,
as before issue #12): a raw value left in the URL is found in the enriched line and the line is
scrubbed column by column — the ~3.3x path of issue #11. Every event has its own user id,
e-mail and URL (no cache hits), except ``plain``/``campaign`` whose URL is one page's. Each
scenario runs 3 times; the best run counts. Every enriched line is checked afterwards: no raw
e-mail or IP may be left in it (``leaks``), and every event must be enriched (``lost``).

    python -m bench.scrub_bench [--events 20000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from collector.enrich import Enricher
from collector.identity import Identities
from collector.protocol import DecodedEvent, decode_event
from lvp.events import CONTEXTS_SCHEMA, UNSTRUCT_SCHEMA
from lvp.iglu import Registry

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
KEY = b"scrub-bench-pseudonym-key-0123456789"
MEDIA = "com.snowplowanalytics.snowplow.media"
CLIENT_IP = "198.51.100.77"
COLLECTOR_MS = 1_796_000_000_000


def event_params(i: int, url: str) -> dict[str, str]:
    entities = [
        {"schema": "iglu:com.snowplowanalytics.snowplow/media_player/jsonschema/2-0-0",
         "data": {"currentTime": 12.5, "duration": 596.47, "ended": False, "paused": False, "label": "Film",
                  "mediaType": "video", "playerType": "html5", "muted": False, "playbackRate": 1, "volume": 80}},
        {"schema": f"iglu:{MEDIA}/session/jsonschema/1-0-0",
         "data": {"mediaSessionId": "e3a82b1d-e44e-4bbf-a797-672b4e879af3", "timePlayed": 12.0}},
        {"schema": "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0",
         "data": {"id": "b7272b85-472b-493a-91f1-734e138ef09a"}},
    ]  # fmt: skip
    ue = {
        "schema": UNSTRUCT_SCHEMA,
        "data": {"schema": f"iglu:{MEDIA}/ping_event/jsonschema/1-0-0", "data": {}},
    }
    return {
        "e": "ue", "tv": "js-4.6.6", "tna": "sp", "aid": "bench", "p": "web",
        "eid": f"00000000-0000-4000-8000-{i:012d}", "dtm": str(COLLECTOR_MS - 400), "stm": str(COLLECTOR_MS - 10),
        "uid": email(i), "duid": f"d{i:07d}-1f2a-4b3c-8d4e-5f6a7b8c9d0e", "vid": "3",
        "sid": "0f3d2c1b-aaaa-4bbb-8ccc-123456789abc", "url": url, "refr": "https://search.example/",
        "res": "1920x1080", "vp": "1280x720", "lang": "en-GB", "cs": "UTF-8", "cookie": "1",
        "ue_pr": orjson.dumps(ue).decode(), "co": orjson.dumps({"schema": CONTEXTS_SCHEMA, "data": entities}).decode(),
    }  # fmt: skip


def email(i: int) -> str:
    return f"viewer.{i}@example.com"


SCENARIOS: dict[str, Callable[[int], str]] = {
    "plain": lambda i: "https://tv.example/watch/film-42",
    "campaign": lambda i: (
        "https://tv.example/watch/film-42?utm_source=news&utm_medium=email&utm_campaign=dec"
    ),
    "email in query": lambda i: f"https://tv.example/watch/film-42?v=42&email={email(i)}&utm_source=news",
    "IP in query": lambda i: f"https://tv.example/watch/film-42?v={i}&client={CLIENT_IP}",
    "IP in path": lambda i: f"https://tv.example/geo/{CLIENT_IP}/watch/{i}",
}
#: scenarios also run with every query value kept (the behaviour before issue #12)
BEFORE = ("email in query", "IP in query")


def run(identities: Identities, events: list[DecodedEvent], raws: list[tuple[str, ...]]) -> dict[str, Any]:
    """Enrich every event (fresh copies each round); CPU µs per event of the best of 3 rounds."""
    registry_ident = identities.for_request(
        {}, {"sp": "5b4c3d2e-1f00-4a5b-8c7d-9e8f7a6b5c4d"}, CLIENT_IP, None
    )
    best = float("inf")
    lines: list[bytes] = []
    for _ in range(3):
        enricher = Enricher(identities)  # a cold URL cache each round
        batch = [_copy(ev) for ev in events]
        t0 = time.process_time()
        lines = [enricher.enrich(ev, registry_ident, COLLECTOR_MS, "Mozilla/5.0 (bench)")[1] for ev in batch]
        best = min(best, time.process_time() - t0)
    leaks = sum(1 for line, raw in zip(lines, raws, strict=True) if any(r.encode() in line for r in raw))
    return {
        "events": len(events),
        "enriched": len(lines),
        "lost": len(events) - len(lines),
        "leaks": leaks,
        "cpu_us_per_event": best / len(events) * 1e6,
    }


def _copy(ev: DecodedEvent) -> DecodedEvent:
    """A decoded event as the protocol step hands it over (its column list is filled in place)."""
    import copy

    out = copy.copy(ev)
    if ev.cols is not None:
        out.cols = list(ev.cols)
    if ev.entities:
        out.entities = copy.deepcopy(ev.entities)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20_000, help="events per scenario")
    ap.add_argument("--quick", action="store_true", help="1,000 events per scenario (CI)")
    args = ap.parse_args(argv)
    n = 1_000 if args.quick else args.events

    registry = Registry()
    now = Identities(KEY)  # the defaults: utm_* kept, every other query value removed
    before = Identities(KEY, url_keep=("*",))  # every query value kept, as before issue #12
    results: dict[str, dict[str, Any]] = {}
    for name, url_of in SCENARIOS.items():
        events = [decode_event(event_params(i, url_of(i)), registry) for i in range(n)]
        raws = [(email(i), CLIENT_IP) for i in range(n)]
        results[name] = run(now, events, raws)
        if name in BEFORE:
            results[f"{name}, before (all query values kept)"] = run(before, events, raws)
    base = results["plain"]["cpu_us_per_event"]
    for r in results.values():
        r["ratio_to_plain"] = r["cpu_us_per_event"] / base

    machine = f"{platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"scrub_bench: {n} events per scenario, {machine}, {time.strftime('%Y-%m-%d')}\n")
    print("| scenario | CPU µs/event | x plain | events | lost | leaks |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        print(
            f"| {name} | {r['cpu_us_per_event']:.1f} | {r['ratio_to_plain']:.2f} | {r['events']} | {r['lost']} "
            f"| {r['leaks']} |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scrub_bench.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
