"""The collector's Starlette app: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette

from collector.identity import Identities
from collector.metrics import Metrics
from collector.routes import Collector
from collector.sink import KafkaSink
from lvp.config import Settings
from lvp.iglu import Registry

log = logging.getLogger(__name__)


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
            yield
        finally:
            await asyncio.to_thread(sink.close)

    app = Starlette(routes=collector.routes(), lifespan=lifespan)
    # no 307 to the path without a trailing slash: trackers never need it, and Starlette's
    # redirect fails (500) on a query string that is not UTF-8
    app.router.redirect_slashes = False
    app.state.collector = collector
    return app
