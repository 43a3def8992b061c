"""The collector's Starlette app: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from collector.identity import Identities
from collector.metrics import Metrics
from collector.micro import MicroStore, micro_routes
from collector.paths import parse_paths
from collector.routes import PIXEL_PATHS, TP2_PATH, Collector
from collector.sink import KafkaSink
from lvp.config import Settings
from lvp.gc_policy import service_gc
from lvp.iglu import Registry

log = logging.getLogger(__name__)


class CollectorApp(Starlette):
    """The Starlette app, with a shortcut for the event routes: ``POST`` tp2 and ``GET`` pixel
    requests go straight to their handler, past Starlette's error and exception middleware and
    its router (a few tens of microseconds a request, the collector's hottest path). Those
    handlers never let an exception escape and answer every request themselves (see
    :mod:`collector.routes`), which is all that middleware would add; every other request (HEAD,
    OPTIONS, operational routes, unknown paths, a ``root_path``) goes through the full app."""

    def __init__(
        self,
        collector: Collector,
        *,
        routes: list[Any] | None = None,
        paths: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(routes=routes if routes is not None else collector.routes(), **kwargs)
        self.shortcuts = {("POST", TP2_PATH): collector.tp2}
        self.shortcuts.update((("GET", path), collector.pixel) for path in PIXEL_PATHS)
        #: custom path -> the standard path it stands for (LVP_COLLECTOR_PATHS, collector.paths)
        self.rewrites = dict(paths or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.rewrites:
            target = self.rewrites.get(scope["path"])
            if target is not None:  # routed (and answered) as its standard path
                scope = {**scope, "path": target, "raw_path": target.encode()}
        if scope["type"] == "http" and not scope.get("root_path"):
            handler = self.shortcuts.get((scope["method"], scope["path"]))
            if handler is not None:
                scope["app"] = self
                response = await handler(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    registry: Registry | None = None,
    sink: KafkaSink | None = None,
    metrics: Metrics | None = None,
) -> Starlette:
    """The collector app. Refuses to build without a pseudonym key outside dev mode
    (:class:`~lvp.config.ConfigError`); every schema is compiled here, so a broken schema in
    ``LVP_SCHEMA_DIRS`` stops the start with a clear error. The Kafka producer starts with the app
    (lifespan) and is flushed when it stops."""
    key = settings.require_pseudonym_key()
    paths = parse_paths(settings.collector_paths)
    if settings.dev and not settings.pseudonym_key:
        log.warning(
            "dev mode: using the generated pseudonym key kept in %s/pseudonym.key", settings.state_dir
        )
    registry = registry if registry is not None else Registry.from_settings(settings)
    n = registry.compile_all()
    metrics = metrics if metrics is not None else Metrics()
    if sink is None:
        sink = KafkaSink(settings, on_delivery_latency=metrics.delivery.observe)
    metrics.bind_queue_depth(sink.queue_depth)
    identities = Identities.from_settings(key, settings)
    collector = Collector(settings, registry, identities, sink, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(sink.start)
        log.info(
            "collector ready: %d schemas, good topic %s, bad topic %s",
            n,
            settings.topic_good,
            settings.topic_bad,
        )
        try:
            with service_gc():  # (lvp.gc_policy: a few dozen short-lived containers per event)
                yield
        finally:
            await asyncio.to_thread(sink.close)

    routes = collector.routes()
    if settings.dev:  # Snowplow Micro's inspection API: dev mode only (else 404)
        micro = MicroStore(settings.micro_max_events, settings.topic_good, settings.topic_bad)
        collector.on_published = micro.record
        routes += micro_routes(micro, collector._allowed_origin)
        app_micro: MicroStore | None = micro
    else:
        app_micro = None
    app = CollectorApp(collector, routes=routes, paths=paths, lifespan=lifespan)
    # no 307 to the path without a trailing slash: trackers never need it, and Starlette's
    # redirect fails (500) on a query string that is not UTF-8
    app.router.redirect_slashes = False
    app.state.collector = collector
    app.state.micro = app_micro
    return app
