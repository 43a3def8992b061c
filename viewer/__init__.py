"""The live viewer API and page (`lvp viewer`).

Design
======

Where the live view comes from
    ``lvp profiles`` publishes to the compacted topic ``LVP_TOPIC_CHANGES`` (:mod:`lvp.changes`):
    a profile message (key = viewer id, the profile JSON without ``active``) on each
    significant change, a tombstone for an erasure, and per partition and second one *touches*
    message carrying, for every viewer whose newest events changed only position, last_seen,
    events and times, those fields. The reader decodes all three with
    :func:`lvp.changes.parse_message` in its thread; the view applies a touch as a patch on the
    profile it holds (ignored for a viewer it does not hold). Touches are what keep a watching
    viewer active. A viewer that timed out (not ended) stays an hour as its encoded profile, so
    a touch brings it back: after a restart, a watching viewer's last profile message in the
    compacted topic can be older than the active timeout. Every ``lvp viewer`` process reads that topic *in
    full*: it assigns itself all partitions from the beginning, with no consumer group
    (:mod:`viewer.changes`). So any number of ``lvp profiles`` processes sharing the partitions
    of the events topic all feed every viewer process, and any number of viewer processes can
    run behind a load balancer, each with the complete live view. A new process rebuilds its
    view from the compacted topic (``/health`` reports ``loaded`` once it has caught up). No
    DynamoDB scan is ever needed. ``/api/profiles/{id}`` answers an active viewer from the view
    (the freshest: DynamoDB lags up to ``LVP_PROFILE_WRITE_INTERVAL_S`` for a viewer who only
    pinged), others from DynamoDB; ``/history`` from DynamoDB (:mod:`viewer.profiles_api`).

The in-memory view (:mod:`viewer.live`)
    A map viewer id -> profile of the *active* viewers only (``active`` is derived with the
    single rule :func:`lvp.profile.is_active`: status is not ``ended`` and the
    collector-clock ``last_seen`` is within ``LVP_ACTIVE_TIMEOUT_S``). Counts by status and media are kept
    incrementally; a heap of expiry times finds viewers that time out without a new message.
    Memory is bounded by the number of active viewers, not by the size of the topic (~1.3 KB
    per viewer, repeated strings interned; see BENCHMARKS.md). A sorted list of page-order keys
    (status, media title, viewer id) gives any window or REST page in O(limit); touches never
    move a viewer in it, so pages do not reshuffle every second.

One push loop, one encoding per window (:mod:`viewer.service`, :mod:`viewer.hub`)
    Each stream shows a *window*: the first ``limit`` viewers in page order, optionally of one
    ``status`` and/or matching a search ``q`` (id or title). Streams with the same window share
    a hub topic. A single asyncio task wakes when changes arrive (at most every
    ``LVP_PUSH_INTERVAL_S``) or when a viewer is due to time out, and builds per topic with
    something new ONE delta ``{seq, generated_at, counts, upsert: [...], remove: [ids],
    touch: [[id, ...touch fields]], touch_fields}`` — the counts of the whole audience (top 20
    titles, ``media_titles``, ``total`` matching the window), the window's rows that entered or
    changed, left, or were touched — encodes it once as an SSE frame (``id: <seq>``,
    ``event: delta``) and hands the same bytes to every client of that topic's bounded queue.
    A push thus carries at most a page of rows at any audience size, and its cost grows with
    changes and distinct windows, not with clients. A client whose queue is full is dropped
    (its stream ends and the browser reconnects), never buffered without bound. Each topic
    keeps a ring of recent frames (and lingers 60 s without clients) so a reconnect to the same
    window with ``Last-Event-ID`` (or ``?last_event_id=``) receives exactly the deltas it
    missed; when the id is older than the ring, or comes from another process, it gets a fresh
    snapshot. ``seq`` grows by one per push (a window's frames may skip ids: pushes with nothing
    for it) from a random 50-bit starting point per process, so an id from another process
    behind the load balancer (or from before a restart) is never mistaken for one of ours.

SSE protocol (``GET /api/viewers/stream``)
    ``?limit=`` (rows, default 200), ``?status=``, ``?q=``. ``retry: 2000``, then
    ``event: snapshot`` (the window's rows and the counts, ``seq``, ``total``, ``touch_fields``),
    then ``event: delta`` frames with increasing ids, and ``: ping`` comments every
    15 s.

Access control (:mod:`viewer.auth`)
    Every ``/api/*`` route needs ``Authorization: Bearer <token>`` (a static token from
    ``LVP_API_TOKENS`` or an HS256 JWT signed with ``LVP_JWT_SECRET``) or the session cookie
    that ``POST /api/login`` sets (HttpOnly, SameSite=Strict, a short-lived signed JWT, renewed
    while in use) — except ``/api/login`` and ``/api/public/*``. ``EventSource`` cannot send
    headers, so the page's stream authenticates by that cookie; other clients may use a
    short-lived ``?ticket=`` from ``POST /api/stream-ticket``. Query strings are never logged
    (uvicorn's access log is off; :mod:`viewer.app` logs method, path, status and duration).
    Concurrent streams are limited per token (``LVP_SSE_MAX_PER_TOKEN``, 429 above). With more
    than one process set ``LVP_JWT_SECRET`` so sessions and tickets are valid on all of them.

Public aggregates
    ``GET /api/public/stats`` (open) serves the active counts with discrete Laplace noise through
    :mod:`viewer.privacy` (OpenDP), cached per release interval, within a privacy budget.

Modules
    ``app`` (``create_app(settings)``), ``auth``, ``changes``, ``live``, ``hub``, ``service``
    (the push loop), ``stats``, ``privacy`` (the public aggregates), ``profiles_api``, ``metrics``
    and ``cli`` (``lvp viewer``); test helpers live in ``tests/support/``. The page is plain
    HTML/CSS/JS in ``viewer-frontend/`` (no build step, nothing loaded from elsewhere).

Stats (:mod:`viewer.stats`)
    Sampled by the push loop: active viewers every 10 s for 15 minutes; events per minute over
    1/5/15-minute windows from the increases of each profile's ``events`` counter; QoE and the
    ad funnel over the active viewers.
"""
